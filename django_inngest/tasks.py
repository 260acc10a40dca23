"""A backend for Django's tasks framework: each `@task` runs as a durable function.

`TASKS = {"default": {"BACKEND": "django_inngest.tasks.DurableBackend"}}`. Enqueueing stores
one event in the caller's transaction (as `send_sync` does); the worker that matches it starts
the run of the task's function, ``tasks.<module>.<name>``, registered the first time a process
meets the task. The result id is that event's id. Works with `django.tasks` (Django 6) and
with the `django-tasks` backport (Django 5.2) through the same code.
"""

from __future__ import annotations

import builtins
import inspect
import json
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from django.core import checks
from django.utils.module_loading import import_string

from django_inngest import conf, store
from django_inngest.core import clock
from django_inngest.core.config import Concurrency, Priority, Timeouts, TriggerEvent
from django_inngest.core.definition import TASKS_APP_ID
from django_inngest.core.engine import Interrupt
from django_inngest.core.errors import InngestError, NonRetriableError, StepError
from django_inngest.core.events import Event, prepare
from django_inngest.core.function import MAX_RETRIES, Function
from django_inngest.models import Event as EventRow
from django_inngest.models import FunctionRun, QueueItem, RunStatus
from django_inngest.registry import registry

if TYPE_CHECKING:
    from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json
else:
    try:  # Django 6 ships the framework; on Django 5.2 the `django-tasks` backport provides it
        from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import Task, TaskError
        from django.tasks.exceptions import TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started

        try:
            from django.utils.json import normalize_json
        except ImportError:
            from django.tasks.base import normalize_json
    except ImportError:
        from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskError
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json

__all__ = ["DurableBackend", "DurableTaskContext", "TaskCancelled", "durable"]

T = TypeVar("T")

#: Function ids of tasks start with this; their events' names with `EVENT_PREFIX`.
FUNCTION_PREFIX = "tasks."
EVENT_PREFIX = "tasks/"
#: Django's priorities run from -100 to 100; ours are seconds within ±PRIORITY_RANGE.
DJANGO_PRIORITY_RANGE = 100

_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "RETRIES": (int,),
    "CONCURRENCY": (dict,),
    "TIMEOUT": (int, float, timedelta, type(None)),
}

_STATUSES = {
    RunStatus.QUEUED: TaskResultStatus.READY,  # waiting for its start, or for a retry
    RunStatus.RUNNING: TaskResultStatus.RUNNING,
    RunStatus.SLEEPING: TaskResultStatus.RUNNING,  # in a step.sleep of the task
    RunStatus.WAITING: TaskResultStatus.RUNNING,
    RunStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    RunStatus.FAILED: TaskResultStatus.FAILED,
    RunStatus.CANCELLED: TaskResultStatus.FAILED,  # the framework has no cancelled status
    RunStatus.SKIPPED: TaskResultStatus.FAILED,
}


class TaskCancelled(InngestError):
    """The error a cancelled task's result carries: it was cancelled (admin, API) before it
    ended. The framework has no cancelled status, so such a task is FAILED with this error."""


@dataclass(frozen=True, kw_only=True)
class DurableTaskContext(TaskContext):
    """The `context` of a task declared with ``takes_context=True``, with durable steps."""

    step: Any
    """`django_inngest`'s `StepSync` (plain tasks) or `Step` (async tasks): each
    ``context.step.run("id", fn, ...)`` is checkpointed, and a retry or a new worker after a
    crash resumes after the last completed step."""


def durable(
    *, retries: int | None = None, timeout: timedelta | None = None
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Options of one task, under its `@task` decorator (they override the backend's OPTIONS):
    ``@task()`` then ``@durable(retries=5, timeout=timedelta(minutes=10))`` above the function.
    """
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES
    ):
        raise ValueError(f"durable(retries={retries!r}): must be an int from 0 to {MAX_RETRIES}")
    if timeout is not None and (not isinstance(timeout, timedelta) or timeout.total_seconds() < 1):
        raise ValueError(f"durable(timeout={timeout!r}): must be a timedelta of 1 second or more")

    def mark(func: Callable[..., T]) -> Callable[..., T]:
        if isinstance(func, Task) or not callable(func):
            raise TypeError(
                f"durable(...) goes under @task, on the function itself, not on {func!r}"
            )
        func.__django_inngest_task__ = {"retries": retries, "timeout": timeout}  # type: ignore[attr-defined]
        return func

    return mark


class DurableBackend(BaseTaskBackend):
    """Runs tasks on the durable engine: retries with backoff, leases and crash recovery,
    per-queue concurrency limits, the admin's cancel and rerun, and durable steps."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.options = dict(self.options or {})

    # -- the framework's API ---------------------------------------------------------------

    def validate_task(self, task: Task[Any, Any]) -> None:
        """Check `task` as Django does, and make its durable function known to this process."""
        super().validate_task(task)
        task_function(task)  # known to this process from now on

    def enqueue(
        self, task: Task[Any, T], args: Iterable[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult[T]:
        """Store the task's event in the caller's transaction (on INNGEST["DATABASE"]): when
        the transaction rolls back, nothing was enqueued."""
        self.validate_task(task)
        arguments, keywords = normalize_json(list(args)), normalize_json(dict(kwargs))
        settings = conf.get()
        seconds = round(task.priority * settings.PRIORITY_RANGE / DJANGO_PRIORITY_RANGE)
        data = {
            "task": task.module_path,
            "args": arguments,
            "kwargs": keywords,
            "backend": self.alias,
            "queue": task.queue_name,
            "priority": task.priority,
            "priority_seconds": seconds,
            "run_after": task.run_after.isoformat() if task.run_after else None,
        }
        ts = int(task.run_after.timestamp() * 1000) if task.run_after else 0
        now = clock.now()
        prepared = prepare(
            Event(name=event_name(task.module_path), data=data, ts=ts),
            now_ms=clock.now_ms(),
            max_bytes=settings.MAX_EVENT_BYTES,
        )
        store.insert_events(prepared, received_at=now)
        result: TaskResult[T] = TaskResult(
            task=task,
            id=prepared[0].id,
            status=TaskResultStatus.READY,
            enqueued_at=now,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=arguments,
            kwargs=keywords,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The result of the task run whose event id is `result_id`, built from the event and its
        run; `TaskResultDoesNotExist` for an unknown id."""
        db = store.alias()
        event = (
            EventRow.objects.using(db)
            .filter(id=result_id, name__startswith=EVENT_PREFIX)
            .values("id", "data", "received_at")
            .first()
        )
        if event is None:
            raise TaskResultDoesNotExist(result_id)
        # A rerun from the admin is a newer run of the same event: the newest one counts.
        run = (
            FunctionRun.objects.using(db)
            .filter(event_id=result_id)
            .order_by("-id")
            .values("id", "status", "output", "attempt", "started_at", "ended_at")
            .first()
        )
        owner = None
        if run is not None and run["status"] == RunStatus.RUNNING:
            owner = (
                QueueItem.objects.using(db)
                .filter(run_id=run["id"], kind=QueueItem.Kind.RUN)
                .values_list("lease_owner", flat=True)
                .first()
            )
        return stored_result(event, run, owner)

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        """Django's checks of the backend, and E101 for each wrong entry of its OPTIONS."""
        yield from super().check(**kwargs)
        for problem in option_problems(self.options, self.queues):
            yield checks.Error(
                f"TASKS[{self.alias!r}]: {problem}",
                hint="See docs/tasks.md.",
                id="django_inngest.E101",
            )


def event_name(task_path: str) -> str:
    """The name of the event that enqueues the task at `task_path`."""
    return f"{EVENT_PREFIX}{task_path}"


def function_id(task_path: str) -> str:
    """The full id of the function that runs the task at `task_path`."""
    return f"{FUNCTION_PREFIX}{task_path}"


def option_problems(options: Mapping[str, Any], queues: Iterable[str]) -> list[str]:
    """Mistakes in a backend's OPTIONS, each naming the key and the value."""
    found = []
    for key, value in options.items():
        types = _OPTION_TYPES.get(key)
        if types is None:
            found.append(
                f"OPTIONS[{key!r}] is not a known option (known: {', '.join(_OPTION_TYPES)})"
            )
        elif isinstance(value, bool) or not isinstance(value, types):
            found.append(f"OPTIONS[{key!r}]={value!r} has the wrong type")
    retries = options.get("RETRIES", 0)
    if isinstance(retries, int) and not 0 <= retries <= MAX_RETRIES:
        found.append(f"OPTIONS['RETRIES']={retries!r} must be between 0 and {MAX_RETRIES}")
    timeout = options.get("TIMEOUT")
    if isinstance(timeout, int | float | timedelta) and _seconds(timeout) < 1:
        found.append(f"OPTIONS['TIMEOUT']={timeout!r} must be at least 1 second")
    limits = options.get("CONCURRENCY", {})
    known = set(queues)
    for queue, limit in limits.items() if isinstance(limits, dict) else ():
        if known and queue not in known:
            found.append(f"OPTIONS['CONCURRENCY'] names queue {queue!r}, which is not in QUEUES")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            found.append(f"OPTIONS['CONCURRENCY'][{queue!r}]={limit!r} must be an int of 1 or more")
    return found


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# --- the function of a task ------------------------------------------------------------------


class TaskFunction(Function):
    """The durable function of one task: started by the task's events, calls the task."""

    def __init__(self, task: Task[Any, Any]) -> None:
        self.task = task
        options = _backend_options(task.backend)
        own = getattr(task.func, "__django_inngest_task__", {})
        retries = own.get("retries")
        if retries is None:
            retries = options.get("RETRIES", 0)
        timeout = own.get("timeout") or options.get("TIMEOUT")
        is_async = _is_async(task.func)
        handler = self._run_async if is_async else self._run_sync
        limits = options.get("CONCURRENCY", {})
        super().__init__(
            app_id=TASKS_APP_ID,
            full_id=function_id(task.module_path),
            source=task.module_path,
            fn_id=task.module_path,
            name=task.module_path,
            handler=handler,
            trigger=TriggerEvent(event=event_name(task.module_path)),
            retries=retries if isinstance(retries, int) else 0,
            concurrency=[
                # Applies only to the queue it names (a key of false is no key); "env" scope
                # makes the limit shared by every task of that queue.
                Concurrency(
                    limit=limit,
                    key=f"event.data.queue == {json.dumps(queue)} ? "
                    f"{json.dumps('django-tasks-queue:' + queue)} : false",
                    scope="env",
                )
                for queue, limit in sorted(limits.items() if isinstance(limits, dict) else ())
            ],
            priority=Priority(run="event.data.priority_seconds"),
            timeouts=Timeouts(finish=_as_timedelta(timeout)) if timeout else None,
        )

    def queue_of(self, event: Mapping[str, Any]) -> str | None:
        """The queue the task was enqueued on (the event's `queue`); only workers of that queue run
        it."""
        queue = event.get("data", {}).get("queue")
        return queue if isinstance(queue, str) else None

    def problems(self) -> list[str]:
        """The problems of the function, less the count of concurrency limits: a task has one per
        limited queue, of which one applies to each run."""
        # One concurrency entry per limited queue, of which one applies to each run.
        return [p for p in super().problems() if not p.startswith("concurrency: ")]

    def _task_for(self, data: Mapping[str, Any]) -> Task[Any, Any]:
        return self.task.using(
            priority=data.get("priority"),
            queue_name=data.get("queue"),
            backend=data.get("backend"),
            run_after=_parse_time(data.get("run_after")),
        )

    def _started(self, ctx: Any) -> tuple[Task[Any, Any], TaskResult[Any], BaseTaskBackend]:
        data = ctx.event.data
        task = self._task_for(data)
        now = clock.now()
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=ctx.event.id,
            status=TaskResultStatus.RUNNING,
            enqueued_at=None,
            started_at=now,
            finished_at=None,
            last_attempted_at=now,
            args=data.get("args", []),
            kwargs=data.get("kwargs", {}),
            backend=task.backend,
            errors=[],
            # One per attempt, as the framework counts attempts; the engine does not keep
            # which worker ran each one.
            worker_ids=[""] * (ctx.attempt + 1),
        )
        return task, result, task.get_backend()

    def _arguments(self, task: Task[Any, Any], result: TaskResult[Any], ctx: Any) -> list[Any]:
        if task.takes_context:
            return [DurableTaskContext(task_result=result, step=ctx.step), *result.args]
        return list(result.args)

    def _ended(self, result: TaskResult[Any], error: BaseException | None, value: Any) -> bool:
        """Fill `result` with how the attempt ended; whether the task has finished."""
        object.__setattr__(result, "finished_at", clock.now())
        if error is None:
            object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
            object.__setattr__(result, "_return_value", value)
            return True
        final = isinstance(error, StepError | NonRetriableError) or (
            result.attempts >= self.max_attempts
        )
        if final:
            object.__setattr__(result, "status", TaskResultStatus.FAILED)
            result.errors.append(
                TaskError(
                    exception_class_path=_class_path(type(error)),
                    traceback=_traceback(error),
                )
            )
        return final

    def _run_sync(self, ctx: Any) -> Any:
        task, result, backend = self._started(ctx)
        task_started.send(type(backend), task_result=result)
        try:
            value = task.func(*self._arguments(task, result, ctx), **result.kwargs)
        except Interrupt:
            raise  # a step checkpointed, slept or waits: the task goes on later
        except Exception as error:
            if self._ended(result, error, None):
                task_finished.send(type(backend), task_result=result)
            raise
        self._ended(result, None, value)
        task_finished.send(type(backend), task_result=result)
        return value

    async def _run_async(self, ctx: Any) -> Any:
        task, result, backend = self._started(ctx)
        await task_started.asend(type(backend), task_result=result)
        try:
            value = await task.func(*self._arguments(task, result, ctx), **result.kwargs)
        except Interrupt:
            raise
        except Exception as error:
            if self._ended(result, error, None):
                await task_finished.asend(type(backend), task_result=result)
            raise
        self._ended(result, None, value)
        await task_finished.asend(type(backend), task_result=result)
        return value


class _UnimportableTask(Function):
    """Stands for a task whose module cannot be imported here: its runs fail at once with the
    reason, instead of its events being dropped unmatched."""

    def __init__(self, task_path: str, reason: str) -> None:
        self.reason = reason
        super().__init__(
            app_id=TASKS_APP_ID,
            full_id=function_id(task_path),
            source=task_path,
            fn_id=task_path,
            handler=self._fail,
            trigger=TriggerEvent(event=event_name(task_path)),
            retries=0,
        )

    def _fail(self, ctx: Any) -> None:
        raise NonRetriableError(self.reason)


def task_function(task: Task[Any, Any]) -> Function:
    """The function of `task`, registered the first time this process meets the task."""
    known = registry.get(function_id(task.module_path), resolve=False)
    if isinstance(known, TaskFunction) and known.task.func is task.func:
        return known
    function = TaskFunction(task)
    registry.register(function)
    return function


def resolve(name: str) -> Function | None:
    """The function of a task named by a function id or an event name, importing the task
    (a worker meets a task first this way); None for names of neither form."""
    for prefix in (FUNCTION_PREFIX, EVENT_PREFIX):
        if name.startswith(prefix):
            path = name[len(prefix) :]
            break
    else:
        return None
    try:
        task = import_string(path)
    except ImportError as error:
        return _stand_in(path, f"cannot import task {path!r}: {error}")
    if not isinstance(task, Task):
        return _stand_in(path, f"{path!r} is not a task (found {type(task).__name__})")
    return task_function(task)


def _stand_in(path: str, reason: str) -> Function:
    function = _UnimportableTask(path, reason)
    registry.register(function)
    return function


# --- results ---------------------------------------------------------------------------------


def stored_result(
    event: Mapping[str, Any], run: Mapping[str, Any] | None, owner: str | None
) -> TaskResult[Any]:
    """The `TaskResult` of a stored task event and its newest run (None before it starts)."""
    data = event["data"]
    task = import_string(data["task"])
    if not isinstance(task, Task):
        raise TaskResultDoesNotExist(f"{event['id']}: {data['task']!r} is not a task")
    task = task.using(
        priority=data.get("priority"),
        queue_name=data.get("queue"),
        backend=data.get("backend"),
        run_after=_parse_time(data.get("run_after")),
    )
    status = TaskResultStatus.READY if run is None else _STATUSES[RunStatus(run["status"])]
    started = run is not None and run["started_at"] is not None
    attempts = run["attempt"] + 1 if run is not None and started else 0
    errors = []
    if run is not None and run["status"] == RunStatus.CANCELLED:
        errors.append(
            TaskError(
                exception_class_path=_class_path(TaskCancelled),
                traceback=f"{_class_path(TaskCancelled)}: the task was cancelled\n",
            )
        )
    elif run is not None and status == TaskResultStatus.FAILED:
        errors.append(_stored_error(run["output"] or {}))
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=event["id"],
        status=status,
        enqueued_at=event["received_at"],
        started_at=run["started_at"] if run else None,
        finished_at=run["ended_at"] if run else None,
        # The engine keeps a run's first start, not each attempt's.
        last_attempted_at=run["started_at"] if run else None,
        args=data.get("args", []),
        kwargs=data.get("kwargs", {}),
        backend=data.get("backend", task.backend),
        errors=errors,
        worker_ids=[owner or ""] * attempts,
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", run["output"] if run else None)
    return result


def _stored_error(error: Mapping[str, Any]) -> TaskError:
    """A run's stored error as the framework's `TaskError`: the exception's class path is read
    from the last line of its traceback, where Python writes ``module.Class: message``."""
    stack = error.get("stack") or ""
    name = str(error.get("name") or "Exception")
    path = _path_from_stack(stack, name)
    text = stack or f"{path}: {error.get('message', '')}\n"
    return TaskError(exception_class_path=path, traceback=text)


def _path_from_stack(stack: str, name: str) -> str:
    header = "Traceback (most recent call last):\n"
    tail = stack[stack.rfind(header) + len(header) :] if header in stack else stack
    for line in tail.splitlines():
        if line and not line[0].isspace():
            qualified = line.split(":", 1)[0].strip()
            if qualified.rsplit(".", 1)[-1] == name:
                return qualified if "." in qualified else _builtin_path(name)
            break
    return _builtin_path(name)


def _builtin_path(name: str) -> str:
    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return f"builtins.{name}"
    return _class_path(InngestError)


def _class_path(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _as_timedelta(value: float | timedelta) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func)


def _backend_options(alias: str) -> dict[str, Any]:
    options = getattr(task_backends[alias], "options", None)
    return dict(options) if isinstance(options, dict) else {}
