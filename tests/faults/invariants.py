"""The invariants every fault test checks after breaking something (DESIGN §9).

`check(...)` reads the database and returns the list of broken invariants, each a sentence
naming the rows at fault; `assert_invariants(...)` fails a test with all of them. The checks:

1. every acknowledged event (a row in the event table) was matched, and started one run of
   each function it triggers (`registry.matching`), or joined one batch run;
2. exactly one recorded result per (run, step), and every step whose body ran in a completed
   run has its final result;
3. no run that has not ended is without its queue item, or held by a lease that expired more
   than lease + sweep ago, or due and untaken for longer than that;
4. every ended run has `ended_at`, no queue item left, an explained status (a failure's error,
   a skip's reason, a cancellation's event), and at most one `inngest/function.finished`;
5. the side-effect ledger (`tests.testapp.models.SideEffect`) counts each step's body at most
   1 + the run's lease losses (the `lease_losses` column when the engine has one, otherwise
   the number of workers the test killed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Count

from django_inngest import store
from django_inngest.core import clock
from django_inngest.models import (
    ENDED_STATUSES,
    Event,
    FunctionRun,
    QueueItem,
    RunStatus,
    RunStep,
)
from django_inngest.registry import registry
from tests.testapp.models import SideEffect

SYSTEM_PREFIX = "inngest/"
FINAL_STEP = ("COMPLETED", "FAILED")


def check(
    *,
    lease_seconds: float,
    sweep_seconds: float,
    kills: int = 0,
    batched: Iterable[str] = ("e2e-faults-batch",),
    unrouted: Iterable[str] = ("e2e-faults-debounce",),
    now: datetime | None = None,
    settle: bool = True,
) -> list[str]:
    """The broken invariants (empty when all hold).

    `batched` functions are checked per event (each event in exactly one of its runs);
    `unrouted` functions (debounce, which starts fewer runs than events) are left to the test.
    With `settle` false, pending events and due runs are allowed (a check while work flows).
    """
    now = now or clock.now()
    stale = now - timedelta(seconds=lease_seconds + sweep_seconds)
    broken: list[str] = []
    broken += _events_started_their_runs(set(batched), set(unrouted), settle)
    broken += _one_result_per_step()
    broken += _no_stuck_run(stale, settle)
    broken += _ended_runs_explained()
    broken += _ledger_within_lease_losses(kills)
    return broken


def assert_invariants(**options: object) -> None:
    broken = check(**options)  # type: ignore[arg-type]
    assert not broken, "invariants broken:\n" + "\n".join(f"  - {line}" for line in broken)


def _events_started_their_runs(batched: set[str], unrouted: set[str], settle: bool) -> list[str]:
    broken: list[str] = []
    events = list(
        Event.objects.exclude(name__startswith=SYSTEM_PREFIX).values(
            "id", "user_id", "name", "data", "ts", "pending"
        )
    )
    runs_by_event = Counter(
        FunctionRun.objects.filter(event_id__in=[event["id"] for event in events]).values_list(
            "event_id", "function_id"
        )
    )
    in_batches: Counter[tuple[str, str]] = Counter()
    for function_id, event_ids in FunctionRun.objects.filter(function_id__in=batched).values_list(
        "function_id", "event_ids"
    ):
        for event_id in event_ids:
            in_batches[(event_id, function_id)] += 1
    for event in events:
        if event["pending"]:
            if settle:
                broken.append(f"event {event['id']} ({event['name']}) was never matched")
            continue
        for function in registry.matching(store.event_map(event)):
            if function.id in unrouted:
                continue
            if function.id in batched:
                found = in_batches[(event["id"], function.id)]
                what = "batch runs"
            else:
                found = runs_by_event[(event["id"], function.id)]
                what = "runs"
            if found != 1:
                broken.append(
                    f"event {event['id']} ({event['name']}) is in {found} {what} of "
                    f"{function.id}, not 1"
                )
    return broken


def _one_result_per_step() -> list[str]:
    broken = [
        f"run {row['run_id']} has {row['n']} results for step {row['hashed_id']}"
        for row in RunStep.objects.values("run_id", "hashed_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    ]
    completed = set(FunctionRun.objects.filter(status=RunStatus.COMPLETED).values_list("id"))
    results = set(RunStep.objects.filter(status__in=FINAL_STEP).values_list("run_id", "step_id"))
    for run_id, step in set(SideEffect.objects.values_list("run_id", "step")):
        if (run_id,) in completed and (run_id, step) not in results:
            broken.append(f"run {run_id} completed without a result for step {step!r}")
    return broken


def _no_stuck_run(stale: datetime, settle: bool) -> list[str]:
    broken: list[str] = []
    items = {
        run_id: (owner, expires, available, parked)
        for run_id, owner, expires, available, parked in QueueItem.objects.filter(
            kind=QueueItem.Kind.RUN
        ).values_list("run_id", "lease_owner", "lease_expires_at", "available_at", "parked_on")
    }
    for run_id, status in FunctionRun.objects.active().values_list("id", "status"):
        item = items.get(run_id)
        if item is None:
            broken.append(f"run {run_id} ({status}) has not ended and has no queue item: lost")
            continue
        owner, expires, available, parked = item
        if owner is not None and expires is not None and expires < stale:
            broken.append(
                f"run {run_id} ({status}) is held by {owner} whose lease expired at "
                f"{expires.isoformat()}, longer than lease + sweep ago"
            )
        elif settle and owner is None and parked is None and available < stale:
            broken.append(
                f"run {run_id} ({status}) has been due since {available.isoformat()} "
                "and no worker took it"
            )
    return broken


def _ended_runs_explained() -> list[str]:
    broken: list[str] = []
    ended = list(
        FunctionRun.objects.filter(status__in=ENDED_STATUSES).values(
            "id", "status", "ended_at", "output"
        )
    )
    leftover = set(
        QueueItem.objects.filter(
            kind=QueueItem.Kind.RUN, run_id__in=[run["id"] for run in ended]
        ).values_list("run_id", flat=True)
    )
    finished = Counter(
        Event.objects.filter(name="inngest/function.finished").values_list(
            "data__run_id", flat=True
        )
    )
    cancelled = set(
        Event.objects.filter(name="inngest/function.cancelled").values_list("user_id", flat=True)
    )
    for run in ended:
        run_id, status, output = run["id"], run["status"], run["output"]
        if run["ended_at"] is None:
            broken.append(f"run {run_id} is {status} without ended_at")
        if run_id in leftover:
            broken.append(f"run {run_id} is {status} but its queue item is still there")
        if finished[run_id] > 1:
            broken.append(f"run {run_id} emitted {finished[run_id]} inngest/function.finished")
        if status == RunStatus.FAILED and not (isinstance(output, dict) and output.get("message")):
            broken.append(f"run {run_id} failed without an error message: {output!r}")
        if status == RunStatus.SKIPPED and not (isinstance(output, dict) and output.get("reason")):
            broken.append(f"run {run_id} was skipped without a reason: {output!r}")
        if status == RunStatus.CANCELLED and run_id not in cancelled:
            broken.append(f"run {run_id} was cancelled without inngest/function.cancelled")
    return broken


def _ledger_within_lease_losses(kills: int) -> list[str]:
    has_losses = any(field.name == "lease_losses" for field in FunctionRun._meta.get_fields())
    losses: dict[str, int] = {}
    if has_losses:
        losses = dict(FunctionRun.objects.values_list("id", "lease_losses"))
    broken: list[str] = []
    for row in SideEffect.objects.values("run_id", "step").annotate(n=Count("id")):
        bound = 1 + (losses.get(row["run_id"], 0) if has_losses else kills)
        if row["n"] > bound:
            broken.append(
                f"step {row['step']!r} of run {row['run_id']} ran {row['n']} times "
                f"(at most {bound} allowed)"
            )
    return broken


def duplicates() -> tuple[int, int]:
    """(bodies run more than once, step bodies counted): the soak's duplicate figures."""
    counts = list(
        SideEffect.objects.values("run_id", "step")
        .annotate(n=Count("id"))
        .values_list("n", flat=True)
    )
    return sum(n - 1 for n in counts if n > 1), len(counts)
