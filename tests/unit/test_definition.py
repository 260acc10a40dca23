"""Stored function definitions: what an app sync keeps of a function, and the `Function` a
worker without its code rebuilds from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import django_inngest as inngest
from django_inngest.core import clock
from django_inngest.core.definition import (
    definition,
    definition_hash,
    function_from_definition,
    version_of,
)
from django_inngest.core.errors import FunctionDefinitionError
from django_inngest.core.flow import plan_run
from django_inngest.core.function import Function


def _handler(ctx: inngest.ContextSync) -> None:
    return None


def _every_option() -> Function:
    return Function(
        app_id="shop",
        fn_id="sync",
        name="Sync the shop",
        handler=_handler,
        on_failure=_handler,
        trigger=[
            inngest.TriggerEvent(event="shop/order.*", expression="event.data.total > 10"),
            inngest.TriggerCron(cron="TZ=Europe/Paris 0 6 * * *", jitter="30s"),
        ],
        retries=7,
        cancel=[
            inngest.Cancel(
                event="shop/order.cancelled",
                if_exp="event.data.id == async.data.id",
                timeout=timedelta(hours=1),
            )
        ],
        concurrency=[inngest.Concurrency(limit=2, key="event.data.customer")],
        throttle=inngest.Throttle(limit=10, period=timedelta(minutes=1), key="event.data.customer"),
        debounce=inngest.Debounce(period=5000, key="event.data.customer"),
        priority=inngest.Priority(run="event.data.vip ? 120 : 0"),
        idempotency="event.data.order_id",
        singleton=inngest.Singleton(mode="skip", key="event.data.customer"),
        timeouts=inngest.Timeouts(start=timedelta(minutes=5), finish=60_000),
    )


def test_a_function_rebuilt_from_its_definition_has_the_same_definition_and_hash() -> None:
    stored = definition(_every_option())
    rebuilt = function_from_definition(stored)
    assert definition(rebuilt) == stored
    assert definition_hash(definition(rebuilt)) == definition_hash(stored)
    assert rebuilt.id == "shop-sync" and rebuilt.name == "Sync the shop"


def test_a_rebuilt_function_plans_a_run_exactly_as_the_original() -> None:
    """Flow control at fan-out (keys, limits, priority, timers) comes from the definition."""
    original = _every_option()
    rebuilt = function_from_definition(definition(original))
    event = {"name": "shop/order.created", "data": {"customer": "c7", "vip": True, "total": 50}}
    previous = clock.install(clock.FrozenClock(datetime(2026, 1, 1, tzinfo=UTC)))
    try:
        assert plan_run(rebuilt, event, "E1", priority_bound=600) == plan_run(
            original, event, "E1", priority_bound=600
        )
    finally:
        clock.install(previous)


def test_the_on_failure_companion_is_a_function_of_its_own() -> None:
    companion = _every_option().on_failure
    assert companion is not None
    stored = definition(companion)
    assert stored["id"] == "shop-sync-failure"
    assert definition(function_from_definition(stored)) == stored


def test_a_rebuilt_function_refuses_to_run_its_handler() -> None:
    with pytest.raises(RuntimeError, match="code is elsewhere"):
        function_from_definition(definition(_every_option())).handler(None)


def test_the_hash_ignores_key_order_and_the_version_ignores_function_order() -> None:
    stored = definition(_every_option())
    assert definition_hash(dict(reversed(list(stored.items())))) == definition_hash(stored)
    assert version_of(["b", "a"]) == version_of(["a", "b"]) != version_of(["a"])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"options": {"fn_id": "sync", "throttle": {"limit": "ten"}}}, "Throttle"),
        ({"options": {"fn_id": "sync", "surprise": 1}}, "surprise"),
        ({"triggers": [{"event": "a", "colour": "red"}]}, "colour"),
        ({"app_id": "other"}, "rebuilds as 'other-sync'"),
    ],
)
def test_a_definition_that_cannot_be_read_back_is_an_error_naming_the_function(
    change: dict[str, object], named: str
) -> None:
    stored = {**definition(_every_option()), **change}
    with pytest.raises(FunctionDefinitionError, match="shop-sync") as raised:
        function_from_definition(stored)
    assert named in str(raised.value)
