"""`manage.py check` reports configuration mistakes; the worker refuses to start on them."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

import django_inngest as inngest
from django_inngest.runtime import Worker, WorkerConfigError


def messages() -> list[tuple[str, str]]:
    return [(m.id or "", m.msg) for m in run_checks(tags=["django_inngest"])]


def test_a_valid_project_has_no_messages(inngest_client: inngest.Inngest) -> None:
    inngest_client.create_function(fn_id="ok", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: None
    )
    assert messages() == []


def test_bad_function_options_are_errors_naming_function_field_and_value(
    inngest_client: inngest.Inngest,
) -> None:
    inngest_client.create_function(
        fn_id="greedy", trigger=inngest.TriggerEvent(event="t"), retries=25
    )(lambda ctx: None)
    inngest_client.create_function(fn_id="cron", trigger=inngest.TriggerCron(cron="61 * * * *"))(
        lambda ctx: None
    )
    found = messages()
    assert (
        "django_inngest.E003",
        "function 'tests-greedy': retries=25: must be between 0 and 20",
    ) in found
    assert any(
        id_ == "django_inngest.E003"
        and "tests-cron" in msg
        and "'61 * * * *' isn't a valid cron schedule" in msg
        for id_, msg in found
    )


def test_two_handlers_with_one_id_are_reported_naming_both(inngest_client: inngest.Inngest) -> None:
    def first(ctx: Any) -> None: ...

    def second(ctx: Any) -> None: ...

    inngest_client.create_function(fn_id="same", trigger=inngest.TriggerEvent(event="t"))(first)
    inngest_client.create_function(fn_id="same", trigger=inngest.TriggerEvent(event="t"))(second)
    [(_, msg)] = [m for m in messages() if m[0] == "django_inngest.E002"]
    assert "'tests-same' is declared twice" in msg
    assert "first" in msg and "second" in msg


def test_settings_mistakes_name_the_key(inngest_client: inngest.Inngest) -> None:
    with override_settings(
        INNGEST={"RETRY_BACKOF": [1], "LEASE_SECONDS": "30", "RETRY_BACKOFF": []}
    ):
        found = [msg for id_, msg in messages() if id_ == "django_inngest.E001"]
    assert any("INNGEST['RETRY_BACKOF'] is not a known setting" in m for m in found)
    assert any("INNGEST['LEASE_SECONDS']='30' has the wrong type" in m for m in found)
    assert any("RETRY_BACKOFF']=[] must be a non-empty list" in m for m in found)


def test_the_listen_database_must_be_a_database_alias(inngest_client: inngest.Inngest) -> None:
    with override_settings(INNGEST={"LISTEN_DATABASE": "direct"}):
        found = [msg for id_, msg in messages() if id_ == "django_inngest.E001"]
    assert found == ["INNGEST['LISTEN_DATABASE']='direct' is not a database alias in DATABASES"]


def test_heartbeats_must_come_before_the_lease_expires(inngest_client: inngest.Inngest) -> None:
    with override_settings(INNGEST={"LEASE_SECONDS": 5, "HEARTBEAT_SECONDS": 5}):
        assert any("HEARTBEAT_SECONDS" in msg for _, msg in messages())


def test_sqlite_without_immediate_transactions_gets_a_warning(
    inngest_client: inngest.Inngest, settings: Any
) -> None:
    from django.db import connections

    db = connections["default"].settings_dict
    if db["ENGINE"] != "django.db.backends.sqlite3":
        assert "django_inngest.W001" not in dict(messages())
        return
    options = db.setdefault("OPTIONS", {})
    saved = options.pop("transaction_mode")
    try:
        assert "django_inngest.W001" in dict(messages())
    finally:
        options["transaction_mode"] = saved


@pytest.mark.django_db  # from Django 6.0, `check` runs the database checks of every alias
def test_manage_py_check_fails_and_the_worker_refuses_to_start(
    inngest_client: inngest.Inngest,
) -> None:
    inngest_client.create_function(
        fn_id="bad", trigger=inngest.TriggerEvent(event="t"), retries=-1
    )(lambda ctx: None)
    with pytest.raises(SystemCheckError, match="retries=-1"):
        call_command("check")
    with pytest.raises(WorkerConfigError, match="retries=-1"):
        Worker(burst=True).run()


def test_api_settings_mistakes_are_errors_naming_the_key(inngest_client: inngest.Inngest) -> None:
    with override_settings(
        INNGEST={
            "EVENT_KEYS": "one-key",
            "SIGNING_KEYS": ["ok", "", "a/b", 5],
            "ACCEPT_ANY_EVENT_KEY": 1,
            "MAX_EVENT_BYTES": 2000,
            "MAX_REQUEST_BYTES": 1000,
        }
    ):
        found = [msg for id_, msg in messages() if id_ == "django_inngest.E001"]
    assert "INNGEST['EVENT_KEYS']='one-key' has the wrong type" in found
    assert "INNGEST['SIGNING_KEYS'] holds ''; every key must be a non-empty string" in found
    assert "INNGEST['SIGNING_KEYS'] holds 5; every key must be a non-empty string" in found
    assert any("holds 'a/b'...; a key cannot contain '/'" in m for m in found)
    assert "INNGEST['ACCEPT_ANY_EVENT_KEY']=1 has the wrong type" in found
    assert any("MAX_REQUEST_BYTES']=1000 is smaller than MAX_EVENT_BYTES=2000" in m for m in found)


def test_accepting_any_event_key_outside_debug_is_a_warning(
    inngest_client: inngest.Inngest,
) -> None:
    with override_settings(INNGEST={"ACCEPT_ANY_EVENT_KEY": True}, DEBUG=False):
        assert "django_inngest.W002" in dict(messages())
    with override_settings(INNGEST={"ACCEPT_ANY_EVENT_KEY": True}, DEBUG=True):
        assert "django_inngest.W002" not in dict(messages())
    with override_settings(INNGEST={"EVENT_KEYS": ["k"]}, DEBUG=False):
        assert messages() == []
