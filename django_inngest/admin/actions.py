"""What the admin's buttons and bulk actions do, each through the `client` functions only.

Every function returns an `ActionReport` the views turn into admin messages; none of them
writes a model, so a cancel from the admin and one from code or the API cannot diverge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django_inngest.client import default_client
from django_inngest.core.errors import InngestError, RunEndedError, RunNotFoundError
from django_inngest.core.events import Event as EventValue
from django_inngest.models import ENDED_STATUSES, Event, FunctionRun, RunStatus, RunStep
from django_inngest.store import alias

logger = logging.getLogger(__name__)


@dataclass
class ActionReport:
    """Runs or events an action went through for, the new ones it created, and refusals."""

    done: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """One reason per run or event that was left alone."""


def cancel(run_ids: Iterable[str]) -> ActionReport:
    """Cancel each run of `run_ids` as `Inngest.cancel` does; a run that ended or does not exist is
    refused with the reason, the others go on."""
    report = ActionReport()
    client = default_client()
    for run_id in run_ids:
        try:
            client.cancel(run_id)
        except (RunEndedError, RunNotFoundError) as error:
            report.refused.append(str(error))
            continue
        logger.info("run cancelled from the admin run_id=%s", run_id)
        report.done.append(run_id)
    return report


def rerun(runs: Iterable[FunctionRun]) -> ActionReport:
    """A new run of each ended run, with the same events, linked to the original."""
    report = ActionReport()
    client = default_client()
    for run in runs:
        if run.status not in ENDED_STATUSES:
            report.refused.append(f"run {run.id} has not ended ({run.status})")
            continue
        new_id = client.rerun(run.id)
        logger.info("run rerun from the admin run_id=%s new_run_id=%s", run.id, new_id)
        report.done.append(run.id)
        report.created.append(new_id)
    return report


def failed_step(run: FunctionRun) -> RunStep | None:
    """The step a retry of a failed run starts from (see `step_to_retry`)."""
    return step_to_retry(run, RunStep.objects.using(alias()).filter(run_id=run.id))


def step_to_retry(run: FunctionRun, steps: Iterable[RunStep]) -> RunStep | None:
    """The step a retry of a failed run starts from: the step it failed on; for a run whose
    worker was lost (`WorkerLostError`), the last step it completed, which runs again before
    the code that kept losing the worker. None: a retry would be a rerun."""
    ordered = sorted(steps, key=lambda step: step.pk)
    failed = next((step for step in ordered if step.status == "FAILED"), None)
    output = run.output if isinstance(run.output, dict) else {}
    if failed is not None or output.get("name") != "WorkerLostError":
        return failed
    completed = [step for step in ordered if step.status == "COMPLETED"]
    return completed[-1] if completed else None


def retry_from_failed_step(runs: Iterable[FunctionRun]) -> ActionReport:
    """A new run of each failed run that keeps the results of the steps before the failed one."""
    report = ActionReport()
    client = default_client()
    for run in runs:
        step = failed_step(run) if run.status == RunStatus.FAILED else None
        if step is None:
            report.refused.append(f"run {run.id} did not fail in a step")
            continue
        new_id = client.rerun(run.id, from_step=step.hashed_id)
        logger.info(
            "run retried from its failed step run_id=%s step=%s new_run_id=%s",
            run.id,
            step.step_id,
            new_id,
        )
        report.done.append(run.id)
        report.created.append(new_id)
    return report


def send_again(events: Iterable[Event]) -> ActionReport:
    """Send a copy of each event under a new id (a sender's id would be de-duplicated)."""
    report = ActionReport()
    client = default_client()
    for event in events:
        try:
            [new_id] = client.send_sync(EventValue(name=event.name, data=event.data))
        except InngestError as error:
            report.refused.append(f"event {event.id}: {error}")
            continue
        logger.info("event sent again from the admin event_id=%s new_event_id=%s", event.id, new_id)
        report.done.append(event.id)
        report.created.append(new_id)
    return report
