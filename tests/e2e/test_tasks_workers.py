"""Django tasks in real worker processes: a SIGKILLed worker's task completes on another from
its last checkpoint, results outlive the workers, a queue's concurrency limit holds."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable
from subprocess import Popen

import pytest
from django.conf import settings
from django.test import override_settings

from django_inngest.models import FunctionRun, RunStep
from django_inngest.registry import registry
from tests.e2e.conftest import wait_until
from tests.tasks_framework import TaskResultStatus, task_backends
from tests.testapp import tasks
from tests.testapp.models import WorkLog

pytestmark = [pytest.mark.e2e]
StartWorker = Callable[..., "Popen[bytes]"]

FAST_LEASES = {
    "INNGEST_LEASE_SECONDS": "3",
    "INNGEST_HEARTBEAT_SECONDS": "1",
    "INNGEST_SWEEP_SECONDS": "1",
}


def test_a_task_whose_worker_is_killed_completes_on_another_from_its_last_step(
    start_worker: StartWorker,
) -> None:
    result = tasks.checkpointed.enqueue("kill", 6, 400)
    first = start_worker("--worker-id", "first", **FAST_LEASES)
    steps = RunStep.objects.filter(run__event_id=result.id, status="COMPLETED")
    wait_until(lambda: steps.filter(step_id="part-1").exists(), timeout=60)
    assert tasks.checkpointed.get_result(result.id).status == TaskResultStatus.RUNNING
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    done_before = set(steps.values_list("step_id", flat=True))
    assert "part-5" not in done_before, "it finished before the kill"
    assert tasks.checkpointed.get_result(result.id).status == TaskResultStatus.RUNNING

    second = start_worker("--worker-id", "second", **FAST_LEASES)
    wait_until(lambda: tasks.checkpointed.get_result(result.id).is_finished, timeout=90)

    fetched = tasks.checkpointed.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == sum(range(6))
    # Steps checkpointed before the kill did not run again; the one in flight may have.
    for step_id in done_before:
        assert WorkLog.objects.filter(key=f"kill-{step_id.removeprefix('part-')}").count() == 1
    assert all(WorkLog.objects.filter(key=f"kill-{i}").exists() for i in range(6))
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0


def test_results_survive_the_workers_and_a_restart_does_not_run_tasks_again(
    start_worker: StartWorker,
) -> None:
    backend = task_backends["default"]
    done = tasks.record.enqueue("kept")
    failed = tasks.failing.enqueue("kept error")
    worker = start_worker()
    wait_until(
        lambda: FunctionRun.objects.filter(status__in=["COMPLETED", "FAILED"]).count() == 2, 60
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0

    again = start_worker("--burst")
    assert again.wait(60) == 0
    assert WorkLog.objects.filter(key="kept").count() == 1

    # A fresh backend, in a process whose registry knows no task, reads the stored results.
    with override_settings(TASKS=dict(settings.TASKS)), registry.isolated():
        assert task_backends["default"] is not backend
        assert tasks.record.get_result(done.id).return_value == "kept"
        error = tasks.failing.get_result(failed.id).errors[0]
    assert error.exception_class is tasks.TaskBoom
    assert "kept error" in error.traceback


def test_a_queues_concurrency_limit_holds_across_a_worker_with_free_slots(
    start_worker: StartWorker,
) -> None:
    """The test settings limit the "reports" queue to one task at a time."""
    results = [tasks.report.enqueue(f"report-{n}", 300) for n in range(3)]
    worker = start_worker("--concurrency", "4")
    wait_until(lambda: all(tasks.report.get_result(r.id).is_finished for r in results), timeout=90)
    spans = sorted(
        WorkLog.objects.filter(key__startswith="report-").values_list("started", "ended")
    )
    assert len(spans) == 3
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert started >= ended - 0.01, f"two reports overlapped: {spans}"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_a_worker_started_for_a_queue_leaves_the_other_queues_to_other_workers(
    start_worker: StartWorker,
) -> None:
    elsewhere = tasks.record.enqueue("default queue")  # enqueued first: due first
    report = tasks.report.enqueue("reports queue", 0)
    reports_only = start_worker("--queue", "reports")
    wait_until(lambda: tasks.report.get_result(report.id).is_finished, timeout=60)
    assert tasks.record.get_result(elsewhere.id).status == TaskResultStatus.READY

    any_queue = start_worker()
    wait_until(lambda: tasks.record.get_result(elsewhere.id).is_finished, timeout=60)
    assert tasks.record.get_result(elsewhere.id).return_value == "default queue"
    for worker in (reports_only, any_queue):
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
