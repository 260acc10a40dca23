"""What an invocation ended with, decided and recorded in one place for the worker and
`testing.drain()` (`Outcomes`), and giving back runs whose worker was lost (ending those lost
MAX_LEASE_LOSSES times without progress).
"""

from __future__ import annotations

import logging

from django.db import DatabaseError

from django_inngest import conf, store
from django_inngest.core import clock
from django_inngest.core.backoff import clamp_retry_after, retry_delay
from django_inngest.core.engine import Completed, Failed, Outcome, Retry, Suspended
from django_inngest.core.errors import (
    InvalidEventError,
    OutputUnserializableError,
    WorkerLostError,
    error_data,
)
from django_inngest.core.events import FUNCTION_FINISHED, PreparedEvent, run_ended_events
from django_inngest.core.function import Function
from django_inngest.models import RunStatus
from django_inngest.registry import registry
from django_inngest.runtime import fleet
from django_inngest.runtime.claimed import run_fields
from django_inngest.runtime.threads import Outage, ensure_usable_connections

logger = logging.getLogger("django_inngest.worker")  # run outcomes are logged as the worker's

#: How the burst summary names what an invocation ended with (None: not recorded).
TALLIES: dict[str | None, str] = {
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.QUEUED: "retried",
    RunStatus.SLEEPING: "sleeping",
    RunStatus.WAITING: "waiting",
    None: "dropped",
}


class Outcomes:
    """Decides and records what the invocations of one worker (or of `drain()`) ended with:
    the one place that switches on an `Outcome`.

    `record` writes any outcome, on a thread that may query. A worker writes the ends of runs
    that completed or failed itself, grouped with its other runs' ends: it asks `end_of` for
    the end and gives what was written to `ended`. Failures of the engine's own writes are
    reported to `outage` when there is one (a worker's)."""

    def __init__(self, worker_id: str, outage: Outage | None = None) -> None:
        self.worker_id = worker_id
        self.outage = outage

    def end_of(
        self, claimed: store.ClaimedRun, outcome: Outcome, function: Function | None
    ) -> store.RunEnd | None:
        """The end of a run that completed or failed; None for any other outcome."""
        if isinstance(outcome, Completed | Failed):
            return run_end(claimed, outcome, self.worker_id, function)
        return None

    def record(
        self, claimed: store.ClaimedRun, outcome: Outcome, function: Function | None
    ) -> str | None:
        """Write what an invocation ended with; returns the run's new status, or None when the
        run was dropped or was no longer this worker's."""
        if isinstance(outcome, Completed | Failed):
            end = run_end(claimed, outcome, self.worker_id, function)
            return self.ended(end, claimed.function_id, store.end_runs([end])[0])
        if isinstance(outcome, Retry):
            return self._retry(claimed, outcome)
        if isinstance(outcome, Suspended):
            return self._suspend(claimed, outcome)
        if outcome.store_failed:
            self.drop(claimed, outcome.reason)
        else:
            log_dropped(claimed, outcome.reason)
        return None

    @staticmethod
    def ended(end: store.RunEnd, function_id: str, written: bool) -> str | None:
        """Log the end of a run once written; returns its status, or None when the run was no
        longer this worker's."""
        if not written:
            return None
        fields = run_fields(end.run_id, function_id)
        if end.status == RunStatus.FAILED:
            error = end.output if isinstance(end.output, dict) else {}
            logger.warning(
                "run failed run_id=%s fn=%s error=%s: %s",
                end.run_id,
                function_id,
                error.get("name", "Error"),
                error.get("message", ""),
                extra={**fields, "error_name": error.get("name"), "error": error.get("message")},
            )
        else:
            logger.info(
                "run %s run_id=%s fn=%s", end.status.lower(), end.run_id, function_id, extra=fields
            )
        return end.status

    def drop(
        self, claimed: store.ClaimedRun, reason: str, error: DatabaseError | None = None
    ) -> None:
        """The engine's own writes for a run failed: give the run back to the queue (it goes
        on from its last checkpoint, here or on another worker, with no attempt used). The
        loss counts like a lost lease: a run lost MAX_LEASE_LOSSES times without progress ends
        FAILED (`WorkerLostError`). When giving it back fails too, its lease expires and a
        sweep gives it back."""
        if self.outage is not None:
            self.outage.failed(f"run_id={claimed.run_id}: {reason}", error, dropped=True)
        for _ in range(2):  # a second try on a fresh connection: the failure closed the first
            try:
                self._give_back(claimed, reason)
                return
            except DatabaseError:
                continue
        logger.debug("could not give back run_id=%s; its lease will expire", claimed.run_id)

    def _give_back(self, claimed: store.ClaimedRun, reason: str) -> None:
        settings = conf.get()
        ensure_usable_connections()  # the failure may have left this thread's connection broken
        losses = store.lose_lease(
            claimed.run_id,
            self.worker_id,
            max_losses=settings.MAX_LEASE_LOSSES,
            lease_seconds=settings.LEASE_SECONDS,
        )
        log_dropped(claimed, reason, losses=losses)
        if losses is not None and losses >= settings.MAX_LEASE_LOSSES:
            end_lost_runs(self.worker_id)

    def _retry(self, claimed: store.ClaimedRun, outcome: Retry) -> str | None:
        settings = conf.get()
        now = clock.now()
        if outcome.retry_at is not None:
            available_at = clamp_retry_after(outcome.retry_at, now)
        else:
            available_at = now + retry_delay(
                outcome.attempt - 1, settings.RETRY_BACKOFF, settings.RETRY_JITTER
            )
        failed_steps = [record.step_id for record in outcome.records]
        logger.info(
            "run retrying run_id=%s fn=%s attempt=%s at=%s step=%s error=%s: %s",
            claimed.run_id,
            claimed.function_id,
            outcome.attempt,
            available_at.isoformat(),
            ",".join(failed_steps) or "-",
            outcome.error.get("name", "Error"),
            outcome.error.get("message", ""),
            extra={
                **run_fields(claimed.run_id, claimed.function_id),
                "attempt": outcome.attempt,
                "error_name": outcome.error.get("name"),
                "error": outcome.error.get("message"),
            },
        )
        written = store.retry_run(
            claimed.run_id,
            self.worker_id,
            attempt=outcome.attempt,
            available_at=available_at,
            records=outcome.records,
            priority=claimed.priority,
        )
        return RunStatus.QUEUED if written else None

    def _suspend(self, claimed: store.ClaimedRun, outcome: Suspended) -> str | None:
        written = store.suspend_run(
            claimed.run_id,
            self.worker_id,
            wake_at=outcome.wake_at,
            records=outcome.records,
            pauses=outcome.pauses,
            events=outcome.events,
            waiting=outcome.waiting,
            now=clock.now(),
            priority=claimed.priority,
        )
        if not written:
            return None
        fields = run_fields(claimed.run_id, claimed.function_id)
        if outcome.waiting:
            logger.debug(
                "run waiting run_id=%s fn=%s for=%s until=%s",
                claimed.run_id,
                claimed.function_id,
                ",".join(sorted({pause.event_name for pause in outcome.pauses})) or "-",
                outcome.wake_at.isoformat(),
                extra=fields,
            )
            return RunStatus.WAITING
        logger.debug(
            "run sleeping run_id=%s fn=%s until=%s",
            claimed.run_id,
            claimed.function_id,
            outcome.wake_at.isoformat(),
            extra=fields,
        )
        return RunStatus.SLEEPING


def log_dropped(claimed: store.ClaimedRun, reason: str, *, losses: int | None = None) -> None:
    """The one "run dropped" line: at INFO when the run was no longer this worker's (cancelled,
    or taken over), at DEBUG with its losses when the engine gave it back (an outage already
    says why, once)."""
    logger.log(
        logging.INFO if losses is None else logging.DEBUG,
        "run dropped run_id=%s fn=%s reason=%s%s",
        claimed.run_id,
        claimed.function_id,
        reason,
        "" if losses is None else f" losses={losses}",
        extra={**run_fields(claimed.run_id, claimed.function_id), "losses": losses},
    )


def run_end(
    claimed: store.ClaimedRun,
    outcome: Completed | Failed,
    worker_id: str,
    function: Function | None,
) -> store.RunEnd:
    """How a run that completed or failed is ended (`function`: the run's, when this process
    has it, for its cancel listeners)."""
    status = RunStatus.COMPLETED if isinstance(outcome, Completed) else RunStatus.FAILED
    output = outcome.output if isinstance(outcome, Completed) else outcome.error
    trigger_events = [store.event_map(row) for row in claimed.event_rows]

    def ended_events() -> list[PreparedEvent]:
        return run_ended_events(
            function_id=claimed.function_id,
            run_id=claimed.run_id,
            trigger_events=trigger_events,
            status=status,
            output=output,
            now_ms=clock.now_ms(),
        )

    try:
        emitted = ended_events()
    except InvalidEventError as error:
        # The output is stored, but the events that carry it cannot be (too large): the run
        # fails saying so, rather than being run again after every lease.
        status = RunStatus.FAILED
        output = error_data(
            OutputUnserializableError(
                f'function "{claimed.function_id}" ended with data that cannot be sent in '
                f"its {FUNCTION_FINISHED} event: {error}"
            )
        )
        try:
            emitted = ended_events()
        except InvalidEventError:
            emitted = []
    return store.RunEnd(
        run_id=claimed.run_id,
        worker_id=worker_id,
        status=status,
        output=output,
        now=clock.now(),
        emitted=emitted,
        pending=store.ended_pending(fleet.listens_to, trigger_events),
        drop_pauses=bool(function and function.cancel),
    )


def sweep_leases(worker_id: str) -> int:
    """Return the runs whose lease expired to the queue (their worker died or stopped
    renewing it) and end those lost MAX_LEASE_LOSSES times without progress; returns how
    many leases had expired."""
    settings = conf.get()
    expired = store.return_expired_leases(
        worker_id, max_losses=settings.MAX_LEASE_LOSSES, lease_seconds=settings.LEASE_SECONDS
    )
    if expired:
        end_lost_runs(worker_id)
    return expired


def end_lost_runs(worker_id: str) -> int:
    """End FAILED, with a `WorkerLostError`, the runs `worker_id` holds because they were lost
    too often; their `on_failure` handlers start as for any failure. Returns how many."""
    lost = store.lost_runs(worker_id, conf.get().MAX_LEASE_LOSSES)
    if not lost:
        return 0
    ends = [
        run_end(
            run.claimed,
            Failed(error=error_data(WorkerLostError(run.losses, run.last_step))),
            worker_id,
            registry.get(run.claimed.function_id),
        )
        for run in lost
    ]
    written = store.end_runs(ends)
    for run, ended in zip(lost, written, strict=True):
        if ended:
            logger.warning(
                "run failed: its worker was lost %s times without progress run_id=%s fn=%s "
                "last_step=%s",
                run.losses,
                run.claimed.run_id,
                run.claimed.function_id,
                run.last_step,
            )
    return sum(written)
