"""Function configuration: types at decoration, ranges reported as problems (SPEC §1.3)."""

from __future__ import annotations

from datetime import timedelta

import pytest

import django_inngest as inngest
from django_inngest.core.errors import FunctionDefinitionError
from django_inngest.core.function import Function


def fn(**options: object) -> Function:
    options.setdefault("trigger", inngest.TriggerEvent(event="t"))
    return Function(
        app_id="app", fn_id=str(options.pop("fn_id", "f")), handler=lambda ctx: None, **options
    )  # type: ignore[arg-type]


def test_the_full_id_joins_app_and_function_ids() -> None:
    function = fn(fn_id="send email/daily ✉")
    assert (function.id, function.local_id, function.name) == (
        "app-send email/daily ✉",
        "send email/daily ✉",
        "send email/daily ✉",
    )


def test_retries_default_to_four_and_must_be_within_0_and_20() -> None:
    assert fn().retries == 4 and fn().problems() == []
    assert fn(retries=0).problems() == [] and fn(retries=20).problems() == []
    assert fn(retries=25).problems() == ["retries=25: must be between 0 and 20"]
    assert fn(retries=-1).problems() == ["retries=-1: must be between 0 and 20"]


def test_wrong_types_raise_type_errors_at_decoration() -> None:
    with pytest.raises(TypeError, match=r"retries must be an int, not '3'"):
        fn(retries="3")
    with pytest.raises(TypeError, match=r"trigger must be TriggerEvent or TriggerCron"):
        fn(trigger="t")
    with pytest.raises(TypeError, match=r"TriggerEvent\.event must be str"):
        inngest.TriggerEvent(event=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Throttle\.period"):
        inngest.Throttle(limit=1, period="1m")  # type: ignore[arg-type]
    with pytest.raises(FunctionDefinitionError, match=r"throttle must be Throttle"):
        fn(throttle=inngest.RateLimit(limit=1, period=1000))


def test_trigger_rules_are_reported() -> None:
    assert fn(trigger=[]).problems() == ["trigger=[]: a function needs at least one trigger"]
    many = [inngest.TriggerEvent(event=f"e{i}") for i in range(11)]
    assert "trigger: 11 triggers, more than 10" in fn(trigger=many).problems()
    twice = [inngest.TriggerEvent(event="a"), inngest.TriggerEvent(event="a")]
    assert "trigger: the same trigger is listed twice" in fn(trigger=twice).problems()
    assert fn(trigger=inngest.TriggerEvent(event="")).problems() == [
        "TriggerEvent.event='': the event name is empty"
    ]


def test_invalid_trigger_expressions_are_reported_with_the_expression() -> None:
    problems = fn(trigger=inngest.TriggerEvent(event="t", expression="event.data.x >")).problems()
    assert len(problems) == 1
    assert "invalid expression 'event.data.x >'" in problems[0]


def test_invalid_cron_strings_are_reported_naming_the_string() -> None:
    """K6 (validation): out-of-range fields and descriptors are refused."""
    for bad in ("61 * * * *", "@hourly", "0 0 * * * *", "TZ=Mars/Base 0 * * * *"):
        problems = fn(trigger=inngest.TriggerCron(cron=bad)).problems()
        assert any(f"{bad!r} isn't a valid cron schedule" in p for p in problems), problems


def test_cron_jitter_must_be_between_one_second_and_five_minutes() -> None:
    """K7 (validation)."""

    def jitter_problems(value: str) -> list[str]:
        return [
            p
            for p in fn(trigger=inngest.TriggerCron(cron="*/5 * * * *", jitter=value)).problems()
            if "jitter" in p
        ]

    assert jitter_problems("30s") == []
    assert jitter_problems("0.5s") and jitter_problems("10m")


def test_options_that_cannot_go_with_batching_are_reported() -> None:
    """V2: batching excludes cancel, debounce, singleton, priority, idempotency and rate limit."""
    batch = inngest.Batch(max_size=10, timeout=timedelta(seconds=5))
    assert fn(batch_events=batch, cancel=[inngest.Cancel(event="x")]).problems() == [
        "batch_events and cancel cannot be used together"
    ]
    assert fn(batch_events=batch, priority=inngest.Priority(run="1")).problems() == [
        "batch_events and priority cannot be used together"
    ]
    assert fn(batch_events=batch, singleton=inngest.Singleton(mode="skip")).problems() == [
        "batch_events and singleton cannot be used together"
    ]
    assert fn(batch_events=batch, debounce=inngest.Debounce(period=1000)).problems() == [
        "batch_events and debounce cannot be used together"
    ]


def test_limits_on_the_number_of_concurrency_limits_and_cancels() -> None:
    """V2: at most 2 concurrency limits and 5 cancels."""
    three = [inngest.Concurrency(limit=1, key=f"event.data.k{i}") for i in range(3)]
    assert fn(concurrency=three).problems() == ["concurrency: 3 limits, more than 2"]
    six = [inngest.Cancel(event=f"c{i}") for i in range(6)]
    assert fn(cancel=six).problems() == ["cancel: 6 entries, more than 5"]


def test_flow_control_values_out_of_range_are_reported() -> None:
    assert fn(throttle=inngest.Throttle(limit=1, period=500)).problems() == [
        "Throttle.period=500: duration must be at least 1s"
    ]
    assert fn(idempotency="event.data.id ==").problems()[0].startswith("idempotency: invalid")


def test_duration_rules_follow_the_sdk() -> None:
    """V1 / V2 fragments: at least a second, whole seconds, within maxima."""
    assert inngest.Debounce(period=timedelta(days=8)).problems() == [
        "Debounce.period=datetime.timedelta(days=8): duration must be at most 7d"
    ]
    assert inngest.RateLimit(limit=1, period=timedelta(hours=25)).problems()
    assert inngest.Timeouts(start=500).problems() == [
        "Timeouts.start=500: duration must be at least 1s"
    ]
    assert inngest.Timeouts(start=1500).problems() == [
        "Timeouts.start=1500: duration must be a whole number of seconds"
    ]
    assert inngest.Batch(max_size=1, timeout=1000).problems() == [
        "Batch.max_size=1: batch size cannot be smaller than 2"
    ]
    assert inngest.Concurrency(limit=1, scope="env").problems() == [
        "Concurrency.scope='env': a concurrency key must be specified for env scoped limits"
    ]


def test_on_failure_becomes_a_companion_function_triggered_by_failures() -> None:
    function = fn(fn_id="charge", name="Charge", on_failure=lambda ctx: None)
    companion = function.on_failure
    assert companion is not None
    assert (companion.id, companion.name, companion.retries) == (
        "app-charge-failure",
        "Charge (failure)",
        0,
    )
    trigger = companion.triggers[0]
    assert isinstance(trigger, inngest.TriggerEvent)
    assert trigger.event == "inngest/function.failed"
    assert trigger.expression == 'event.data.function_id == "app-charge"'


def test_a_zero_cron_jitter_means_no_jitter() -> None:
    """K7: jitter is 0 or between 1 s and 5 m."""
    assert fn(trigger=inngest.TriggerCron(cron="*/5 * * * *", jitter="0s")).problems() == []


def test_a_cron_expression_listed_twice_in_one_function_is_reported() -> None:
    twice = [
        inngest.TriggerCron(cron="0 * * * *"),
        inngest.TriggerCron(cron="0 * * * *", jitter="10s"),
    ]
    assert fn(trigger=twice).problems() == [
        "TriggerCron(cron='0 * * * *'): the same cron expression is listed twice"
    ]
