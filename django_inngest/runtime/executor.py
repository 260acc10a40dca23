"""How a worker executes a claimed run: an async handler on the worker's loop, a sync one on
its runner pool, checkpoints and ends written together with those of its other runs (group
commit), and what the invocation ended with recorded by `outcomes.Outcomes`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DatabaseError

from django_inngest import conf, killpoints, store
from django_inngest.core.engine import Outcome, Runtime
from django_inngest.core.steps import invoke_async, invoke_sync
from django_inngest.registry import registry
from django_inngest.runtime.claimed import execution_for, function_exists
from django_inngest.runtime.fleet import Membership
from django_inngest.runtime.outcomes import TALLIES, Outcomes
from django_inngest.runtime.threads import GroupWriter, IoCall, hygienic, run_branches_in_threads

logger = logging.getLogger("django_inngest.worker")
T = TypeVar("T")


class RunExecutor:
    """Executes the runs one worker claimed, on its loop, and counts what they ended with in
    `tally` (`TALLIES`' names)."""

    def __init__(
        self,
        *,
        worker_id: str,
        fleet: Membership,
        outcomes: Outcomes,
        loop: asyncio.AbstractEventLoop,
        io: ThreadPoolExecutor,
        runners: ThreadPoolExecutor,
        io_call: IoCall,
        tally: Counter[str],
    ) -> None:
        self.worker_id = worker_id
        self.fleet = fleet
        self.tally = tally
        self._outcomes = outcomes
        self._loop = loop
        self._io = io
        self._runners = runners
        self._io_call = io_call
        self._steps = GroupWriter(store.save_steps, io)
        self._ends = GroupWriter(store.end_runs, io)

    async def execute(self, claimed: store.ClaimedRun) -> None:
        """Invoke `claimed` and record what it ended with; never raises."""
        killpoints.park("after-claim")
        function = registry.get(claimed.function_id)
        try:
            if function is None:
                await self._io_call(self.fleet.give_back, claimed.run_id, claimed.function_id)
                return
            if function.is_async:
                runtime = self._async_runtime()
                outcome: Outcome = await invoke_async(
                    execution_for(claimed, function, self.worker_id, runtime, self._steps)
                )
            else:
                runtime = self._sync_runtime()
                execution = execution_for(claimed, function, self.worker_id, runtime, self._steps)
                outcome = await self._in_runner(invoke_sync, execution)
            end = self._outcomes.end_of(claimed, outcome, function)
            if end is not None:  # grouped with the ends of the worker's other runs
                written = await asyncio.wrap_future(self._ends.submit(end))
                status = self._outcomes.ended(end, claimed.function_id, written)
            else:
                status = await self._io_call(self._outcomes.record, claimed, outcome, function)
            self.tally[TALLIES.get(status, "dropped")] += 1
        except DatabaseError as error:
            self.tally["dropped"] += 1
            await self._io_call(self._outcomes.drop, claimed, "could not record its outcome", error)
        except Exception:
            self.tally["dropped"] += 1
            logger.exception("worker error on run_id=%s", claimed.run_id)

    def _async_runtime(self) -> Runtime:
        loop = self._loop

        async def offload(fn: Callable[[], Any]) -> Any:
            return await loop.run_in_executor(self._io, hygienic, fn)

        async def offload_user(fn: Callable[[], Any]) -> Any:
            return await loop.run_in_executor(self._runners, fn)

        return Runtime(
            offload=offload,
            offload_user=offload_user,
            max_event_bytes=conf.get().MAX_EVENT_BYTES,
            function_exists=function_exists,
        )

    def _sync_runtime(self) -> Runtime:
        return Runtime(
            run_branches=run_branches_in_threads,
            concurrent=True,
            max_event_bytes=conf.get().MAX_EVENT_BYTES,
            function_exists=function_exists,
        )

    async def _in_runner(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(
            self._runners, hygienic, functools.partial(fn, *args)
        )
