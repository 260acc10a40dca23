"""Django's tasks framework on the durable backend: the framework's behaviours, run by drain()."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core import checks
from django.db import transaction
from django.test import Client, override_settings

import django_inngest as inngest
from django_inngest import store
from django_inngest.core.clock import FrozenClock
from django_inngest.core.clock import now as clock_now
from django_inngest.models import Event, FunctionRun, RunStatus, RunStep
from django_inngest.registry import registry
from django_inngest.runtime.claimed import route
from django_inngest.tasks import DurableBackend, TaskCancelled, option_problems
from django_inngest.testing import drain
from tests.tasks_framework import (
    InvalidTaskError,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from tests.testapp import tasks
from tests.testapp.models import WorkLog

pytestmark = pytest.mark.django_db


def run_of(result_id: str) -> FunctionRun:
    return FunctionRun.objects.get(event_id=result_id)


def test_enqueued_task_runs_as_its_function_and_its_result_is_successful() -> None:
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY

    summary = drain()

    assert summary.completed == 1
    assert run_of(result.id).function_id == "tasks.tests.testapp.tasks.add"
    fetched = tasks.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 5
    assert fetched.args == [2, 3]
    assert fetched.attempts == 1
    assert fetched.started_at is not None and fetched.finished_at is not None
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5


def test_enqueue_in_a_transaction_that_rolls_back_enqueues_nothing() -> None:
    enqueued = []

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            enqueued.append(tasks.add.enqueue(1, 1))
            raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()

    [result] = enqueued
    assert not Event.objects.filter(id=result.id).exists()
    assert drain().invocations == 0
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result.id)


def test_enqueue_in_a_transaction_that_commits_is_run() -> None:
    with transaction.atomic():
        result = tasks.add.enqueue(1, 1)
    drain()
    assert tasks.add.get_result(result.id).return_value == 2


def test_higher_priority_tasks_run_first_whatever_the_order_of_enqueueing() -> None:
    tasks.record.using(priority=-20).enqueue("low")
    tasks.record.enqueue("normal")
    tasks.record.using(priority=90).enqueue("urgent")
    tasks.record.using(priority=10).enqueue("high")

    drain()

    order = list(WorkLog.objects.order_by("id").values_list("key", flat=True))
    assert order == ["urgent", "high", "normal", "low"]


def test_run_after_delays_the_task_until_that_time(clock: FrozenClock) -> None:
    result = tasks.add.using(run_after=clock.now() + timedelta(hours=1)).enqueue(4, 4)

    drain()
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY
    clock.advance(timedelta(minutes=59))
    assert drain().completed == 0

    clock.advance(timedelta(minutes=1))
    drain()
    fetched = tasks.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 8
    assert fetched.task.run_after == result.task.run_after


def test_a_failed_task_has_the_exception_class_path_and_traceback() -> None:
    result = tasks.failing.enqueue("it broke")
    drain()

    fetched = tasks.failing.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    [error] = fetched.errors
    assert error.exception_class_path == "tests.testapp.tasks.TaskBoom"
    assert error.exception_class is tasks.TaskBoom
    assert "TaskBoom: it broke" in error.traceback
    assert "raise TaskBoom(message)" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        _ = fetched.return_value


def test_a_builtin_exception_is_named_by_its_builtins_path() -> None:
    result = tasks.add.enqueue(1, "x")  # int + str: TypeError
    drain()
    [error] = tasks.add.get_result(result.id).errors
    assert error.exception_class is TypeError


def test_a_failing_task_is_retried_with_its_own_retries_then_succeeds() -> None:
    result = tasks.flaky.enqueue(2, "flaky")
    summary = drain()

    assert summary.retried == 2
    fetched = tasks.flaky.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 3
    assert fetched.attempts == 3


def test_a_task_that_fails_every_attempt_fails_after_its_retries() -> None:
    result = tasks.flaky.enqueue(5, "hopeless")
    drain()
    fetched = tasks.flaky.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert WorkLog.objects.filter(key="hopeless").count() == 3
    assert "attempt 3" in fetched.errors[0].traceback


def test_the_backends_retries_apply_to_tasks_without_their_own() -> None:
    backend = task_backends["default"]
    with override_settings(
        TASKS={
            "default": {
                "BACKEND": "django_inngest.tasks.DurableBackend",
                "QUEUES": [],
                "OPTIONS": {"RETRIES": 3},
            }
        }
    ):
        assert task_backends["default"] is not backend
        from django_inngest.tasks import TaskFunction

        assert TaskFunction(tasks.failing).retries == 3
    assert TaskFunction(tasks.failing).retries == 0


def test_takes_context_gives_the_attempt_number_and_the_result_id() -> None:
    result = tasks.with_context.enqueue(True)
    drain()
    fetched = tasks.with_context.get_result(result.id)
    assert fetched.return_value == {"attempt": 2, "id": result.id}


def test_a_task_can_checkpoint_with_steps_of_its_context() -> None:
    result = tasks.checkpointed.enqueue("parts", 3, 0)
    drain()
    fetched = tasks.checkpointed.get_result(result.id)
    assert fetched.return_value == 0 + 1 + 2
    steps = RunStep.objects.filter(run__event_id=result.id).order_by("id")
    assert [step.step_id for step in steps] == ["part-0", "part-1", "part-2"]


def test_an_async_task_runs_and_aenqueue_and_aget_result_work() -> None:
    result = async_to_sync(tasks.async_add.aenqueue)(20, 22)
    drain()
    fetched = async_to_sync(tasks.async_add.aget_result)(result.id)
    assert fetched.return_value == 42
    async_to_sync(result.arefresh)()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_the_frameworks_signals_are_sent_on_enqueue_start_and_finish() -> None:
    seen: list[tuple[str, str, str]] = []

    def receiver(name: str) -> Any:
        def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
            assert sender is DurableBackend
            seen.append((name, task_result.id, task_result.status))

        return receive

    handlers = {
        task_enqueued: receiver("enqueued"),
        task_started: receiver("started"),
        task_finished: receiver("finished"),
    }
    for signal, handler in handlers.items():
        signal.connect(handler)
    try:
        ok = tasks.add.enqueue(1, 2)
        bad = tasks.failing.enqueue("no")
        drain()
    finally:
        for signal, handler in handlers.items():
            signal.disconnect(handler)

    assert [s for s in seen if s[1] == ok.id] == [
        ("enqueued", ok.id, TaskResultStatus.READY),
        ("started", ok.id, TaskResultStatus.RUNNING),
        ("finished", ok.id, TaskResultStatus.SUCCESSFUL),
    ]
    assert [s for s in seen if s[1] == bad.id][-1] == ("finished", bad.id, TaskResultStatus.FAILED)


def test_a_task_retried_sends_finished_only_after_its_last_attempt() -> None:
    finished: list[str] = []

    def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
        finished.append(task_result.status)

    task_finished.connect(receive)
    try:
        tasks.flaky.enqueue(1, "once")
        drain()
    finally:
        task_finished.disconnect(receive)
    assert finished == [TaskResultStatus.SUCCESSFUL]


def test_a_cancelled_task_is_failed_with_a_task_cancelled_error(clock: FrozenClock) -> None:
    result = tasks.add.using(run_after=clock.now() + timedelta(hours=1)).enqueue(1, 1)
    drain()  # the run exists, due in an hour

    inngest.Inngest(app_id="any").cancel(run_of(result.id).id)

    fetched = tasks.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert fetched.errors[0].exception_class is TaskCancelled
    clock.advance(timedelta(hours=2))
    assert drain().invocations == 0


def test_a_rerun_from_the_admin_is_the_result_the_task_reports() -> None:
    result = tasks.failing.enqueue("first")
    drain()
    original = run_of(result.id)

    rerun_id = inngest.Inngest(app_id="any").rerun(original.id)
    assert tasks.failing.get_result(result.id).status == TaskResultStatus.READY
    drain()
    assert FunctionRun.objects.get(id=rerun_id).status == RunStatus.FAILED
    assert tasks.failing.get_result(result.id).status == TaskResultStatus.FAILED


def test_a_queue_not_in_queues_is_refused_with_its_name() -> None:
    with pytest.raises(InvalidTaskError, match="nowhere"):
        tasks.add.using(queue_name="nowhere").enqueue(1, 1)


def test_arguments_that_are_not_json_are_refused_and_nothing_is_stored() -> None:
    with pytest.raises(TypeError):
        tasks.add.enqueue(object(), 1)
    assert not Event.objects.exists()


def test_an_unknown_result_id_does_not_exist() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result("01J00000000000000000000000")


def test_a_worker_imports_a_task_it_has_not_met_by_its_event() -> None:
    result = tasks.add.enqueue(5, 5)
    with registry.isolated():
        assert registry.get("tasks.tests.testapp.tasks.add", resolve=False) is None
        drain()
        assert tasks.add.get_result(result.id).return_value == 10


def test_a_task_whose_module_cannot_be_imported_fails_with_the_reason() -> None:
    with registry.isolated():
        inngest.Inngest(app_id="any").send_sync(
            inngest.Event(name="tasks/tests.testapp.missing.nothing", data={})
        )
        drain()
        run = FunctionRun.objects.get(function_id="tasks.tests.testapp.missing.nothing")
    assert run.status == RunStatus.FAILED
    assert "cannot import task 'tests.testapp.missing.nothing'" in run.output["message"]


def test_the_frameworks_system_checks_pass_and_bad_options_are_reported() -> None:
    assert [m for m in checks.run_checks() if m.level >= checks.ERROR] == []
    problems = option_problems(
        {"RETRIES": 99, "CONCURRENCY": {"elsewhere": 0}, "SPEED": 1}, ["default"]
    )
    assert any("OPTIONS['SPEED'] is not a known option" in p for p in problems)
    assert any("RETRIES']=99" in p for p in problems)
    assert any("queue 'elsewhere', which is not in QUEUES" in p for p in problems)
    assert any("['elsewhere']=0 must be an int of 1 or more" in p for p in problems)


def test_backend_check_reports_its_options_with_a_stable_id() -> None:
    backend = DurableBackend("broken", {"QUEUES": ["default"], "OPTIONS": {"RETRIES": -1}})
    [message] = list(backend.check())
    assert message.id == "django_inngest.E101"
    assert "TASKS['broken']" in message.msg


def test_supports_flags_tell_the_truth() -> None:
    backend = task_backends["default"]
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


ADMIN_RUNS = "/admin/django_inngest/functionrun/"


def test_a_task_is_a_run_in_the_admin_that_can_be_cancelled_there(
    admin_client: Client, clock: FrozenClock
) -> None:
    result = tasks.add.using(run_after=clock.now() + timedelta(hours=1)).enqueue(1, 1)
    drain()
    run = FunctionRun.objects.get(event_id=result.id)

    listed = admin_client.get(ADMIN_RUNS, {"q": run.id}).content.decode()
    assert "tasks.tests.testapp.tasks.add" in listed
    page = admin_client.get(f"{ADMIN_RUNS}{run.id}/change/")
    assert page.status_code == 200
    admin_client.post(f"{ADMIN_RUNS}{run.id}/cancel/", follow=True)

    assert tasks.add.get_result(result.id).errors[0].exception_class is TaskCancelled


def test_a_failed_task_rerun_from_the_admin_runs_again_and_reports_the_new_outcome(
    admin_client: Client,
) -> None:
    result = tasks.flaky.enqueue(3, "rerun")  # three failures: fails after its two retries
    drain()
    assert tasks.flaky.get_result(result.id).status == TaskResultStatus.FAILED

    admin_client.post(f"{ADMIN_RUNS}{run_of(result.id).id}/rerun/")
    drain()

    fetched = tasks.flaky.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 4


def test_durable_above_task_is_refused_with_where_it_goes() -> None:
    from django_inngest.tasks import durable

    with pytest.raises(TypeError, match="under @task"):
        durable(retries=1)(tasks.add)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retries=99"):
        durable(retries=99)


def test_a_task_sleeping_in_a_step_is_running_and_ends_after_the_sleep(
    clock: FrozenClock,
) -> None:
    result = tasks.napper.enqueue(30)
    drain()
    assert run_of(result.id).status == RunStatus.SLEEPING
    assert tasks.napper.get_result(result.id).status == TaskResultStatus.RUNNING

    clock.advance(timedelta(minutes=30))
    drain()
    assert tasks.napper.get_result(result.id).return_value == "before and after"


def test_a_task_over_its_time_limit_is_failed_as_cancelled(clock: FrozenClock) -> None:
    result = tasks.overdue.enqueue()
    drain()
    clock.advance(timedelta(minutes=1, seconds=1))
    drain()

    fetched = tasks.overdue.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert fetched.errors[0].exception_class is TaskCancelled
    clock.advance(timedelta(minutes=5))
    drain()
    assert tasks.overdue.get_result(result.id).status == TaskResultStatus.FAILED


def test_an_async_task_checkpoints_with_async_steps() -> None:
    result = tasks.async_steps.enqueue(3)
    drain()
    assert tasks.async_steps.get_result(result.id).return_value == [0, 1, 4]
    assert RunStep.objects.filter(run__event_id=result.id).count() == 3


def test_a_worker_limited_to_queues_claims_only_their_tasks_and_every_function(
    inngest_client: inngest.Inngest,
) -> None:
    @inngest_client.create_function(fn_id="plain", trigger=inngest.TriggerEvent(event="t/plain"))
    def plain(ctx: inngest.ContextSync) -> None:
        return None

    tasks.add.enqueue(1, 1)
    emails = tasks.add.using(queue_name="emails").enqueue(2, 2)
    inngest_client.send_sync(inngest.Event(name="t/plain"))
    store.fan_out(route, now=clock_now(), pending=registry.listens_to)

    claimed = store.claim(
        "emails-worker", limit=10, now=clock_now(), lease_seconds=30, queues=frozenset({"emails"})
    )

    assert sorted(run.function_id for run in claimed) == [
        "tasks.tests.testapp.tasks.add",
        "tests-plain",
    ]
    assert [run.run_id for run in claimed if run.function_id.startswith("tasks.")] == [
        run_of(emails.id).id
    ]
    store.release("emails-worker")
    assert drain().completed == 3


def test_a_tasks_stored_definition_rebuilds_with_its_dotted_id() -> None:
    """A worker without a task's code still routes its events from the app sync (issue 16),
    so a task's run is created whichever worker fans its event out."""
    from django_inngest.core.definition import definition, function_from_definition
    from django_inngest.registry import Registry
    from django_inngest.runtime.fleet import plans_for

    own = registry.get("tasks.tests.testapp.tasks.add")
    assert own is not None
    rebuilt = function_from_definition(definition(own))
    assert rebuilt.id == own.id == "tasks.tests.testapp.tasks.add"
    elsewhere = Registry()
    elsewhere.register(rebuilt)
    event = {"name": own.triggers[0].event, "data": {"args": [1, 2], "kwargs": {}}}  # type: ignore[union-attr]
    assert [plan.function_id for plan in plans_for(elsewhere, event, "e1")] == [own.id]
