"""REST v1 (SPEC §6.3): events, runs with their steps, cancelling, rerunning, bulk
cancellation and functions, with Inngest's field names and status strings, behind DRF
authentication and Django permissions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import Cancellation, FunctionRun
from django_inngest.testing import drain

SIGNING_KEY = "signkey-test-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {SIGNING_KEY}"}


def get(client: Client, path: str, **headers: str) -> Any:
    return client.get(f"/inngest/v1/{path}", headers=headers or BEARER)


def user_with(*codenames: str) -> User:
    user = User.objects.create_user(f"user-{'-'.join(codenames) or 'none'}")
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_inngest", codename__in=codenames)
    )
    return user


@pytest.fixture
def two_steps(inngest_client: inngest.Inngest) -> inngest.Function:
    @inngest_client.create_function(fn_id="two-steps", trigger=inngest.TriggerEvent(event="t"))
    def two_steps(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
        first = step.run("first", lambda: 1)
        second = step.run("second", lambda: 2)
        return first + second

    return two_steps


@pytest.fixture
def sleeper(inngest_client: inngest.Inngest) -> inngest.Function:
    @inngest_client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="nap"))
    def sleeper(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.sleep("nap", timedelta(hours=1))
        return "rested"

    return sleeper


# --- reading ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_event_is_read_by_the_id_send_returned(client: Client) -> None:
    [event_id] = inngest.Inngest(app_id="tests").send_sync(
        inngest.Event(name="shop/paid", data={"amount": 5}, id="pay-1", ts=1_790_000_000_000)
    )
    response = get(client, f"events/{event_id}")
    assert response.status_code == 200
    data = response.json()["data"]
    assert {key: data[key] for key in ("internal_id", "id", "name", "data", "ts")} == {
        "internal_id": event_id,
        "id": "pay-1",
        "name": "shop/paid",
        "data": {"amount": 5},
        "ts": 1_790_000_000_000,
    }
    assert get(client, "events/nope").json() == {"error": "no event with id 'nope'", "status": 404}


@pytest.mark.django_db
def test_the_runs_of_an_event_show_inngest_status_strings_and_output(
    client: Client, two_steps: inngest.Function
) -> None:
    """L2."""
    [event_id] = inngest.Inngest(app_id="tests").send_sync(inngest.Event(name="t"))
    assert get(client, f"events/{event_id}/runs").json()["data"] == []  # not matched yet
    drain()
    [run] = get(client, f"events/{event_id}/runs").json()["data"]
    assert run["function_id"] == "tests-two-steps"
    assert (run["status"], run["output"], run["event_id"]) == ("Completed", 3, event_id)
    assert run["run_started_at"] and run["ended_at"]
    assert get(client, "events/nope/runs").status_code == 404


@pytest.mark.django_db
def test_every_event_of_a_batch_lists_the_batch_run(
    client: Client, inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    @inngest_client.create_function(
        fn_id="batch",
        trigger=inngest.TriggerEvent(event="b"),
        batch_events=inngest.Batch(max_size=2, timeout=timedelta(seconds=10)),
    )
    def batch(ctx: inngest.ContextSync) -> int:
        return len(ctx.events)

    ids = inngest.Inngest(app_id="tests").send_sync([inngest.Event(name="b")] * 2)
    drain()
    [run] = FunctionRun.objects.filter(function_id="tests-batch")
    for event_id in ids:
        [listed] = get(client, f"events/{event_id}/runs").json()["data"]
        assert (listed["run_id"], listed["output"]) == (run.id, 2)


@pytest.mark.django_db
def test_a_run_is_read_with_its_steps(client: Client, two_steps: inngest.Function) -> None:
    inngest.Inngest(app_id="tests").send_sync(inngest.Event(name="t"))
    drain()
    run = FunctionRun.objects.get()
    data = get(client, f"runs/{run.id}").json()["data"]
    assert (data["run_id"], data["status"], data["output"]) == (run.id, "Completed", 3)
    assert [(s["step_id"], s["status"], s["output"], s["op"]) for s in data["steps"]] == [
        ("first", "Completed", 1, "run"),
        ("second", "Completed", 2, "run"),
    ]
    assert get(client, "runs/nope").json() == {"error": "no run with id 'nope'", "status": 404}


@pytest.mark.django_db
def test_run_statuses_are_spelled_as_inngest_spells_them(
    client: Client, sleeper: inngest.Function, clock: FrozenClock
) -> None:
    """SPEC §6.1: queued is Scheduled; sleeping counts as Running."""
    inngest.Inngest(app_id="tests").send_sync(inngest.Event(name="nap"))
    drain()
    run = FunctionRun.objects.get()
    assert run.status == "SLEEPING"
    assert get(client, f"runs/{run.id}").json()["data"]["status"] == "Running"
    FunctionRun.objects.filter(id=run.id).update(status="QUEUED")
    assert get(client, f"runs/{run.id}").json()["data"]["status"] == "Scheduled"


@pytest.mark.django_db
def test_functions_are_listed_with_their_triggers(
    client: Client, inngest_client: inngest.Inngest
) -> None:
    inngest_client.create_function(
        fn_id="on-order",
        name="On order",
        trigger=[
            inngest.TriggerEvent(event="shop/order.*", expression="event.data.total > 10"),
            inngest.TriggerCron(cron="0 * * * *"),
        ],
        retries=2,
    )(lambda ctx: None)
    other = inngest.Inngest(app_id="other")
    other.create_function(fn_id="x", trigger=inngest.TriggerEvent(event="x"))(lambda ctx: None)
    [function] = [f for f in get(client, "functions").json()["data"] if f["fn_id"] == "on-order"]
    assert function == {
        "id": "tests-on-order",
        "slug": "tests-on-order",
        "app_id": "tests",
        "fn_id": "on-order",
        "name": "On order",
        "retries": 2,
        "triggers": [
            {"event": "shop/order.*", "expression": "event.data.total > 10"},
            {"cron": "0 * * * *", "jitter": None},
        ],
        "on_failure_id": None,
    }
    assert [f["id"] for f in get(client, "apps/other/functions").json()["data"]] == ["other-x"]


# --- cancelling and rerunning -------------------------------------------------------------------


@pytest.mark.django_db
def test_deleting_a_run_cancels_it_and_an_ended_run_gives_409(
    client: Client, sleeper: inngest.Function, clock: FrozenClock
) -> None:
    """C6 over HTTP."""
    inngest.Inngest(app_id="tests").send_sync(inngest.Event(name="nap"))
    drain()
    run = FunctionRun.objects.get()
    response = client.delete(f"/inngest/v1/runs/{run.id}", headers=BEARER)
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "Cancelled"
    clock.advance(timedelta(hours=2))
    drain()
    run.refresh_from_db()
    assert run.status == "CANCELLED"
    again = client.delete(f"/inngest/v1/runs/{run.id}", headers=BEARER)
    assert again.status_code == 409
    assert again.json() == {
        "error": f"cannot cancel run '{run.id}': it has already ended (CANCELLED)",
        "status": 409,
    }
    assert client.delete("/inngest/v1/runs/nope", headers=BEARER).status_code == 404


@pytest.mark.django_db
def test_rerun_starts_a_linked_run_and_can_keep_earlier_steps(
    client: Client, inngest_client: inngest.Inngest
) -> None:
    """L3 over HTTP."""
    calls: list[str] = []

    @inngest_client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="t"))
    def steps(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
        step.run("a", lambda: calls.append("a"))
        step.run("b", lambda: calls.append("b"))
        return len(calls)

    inngest.Inngest(app_id="tests").send_sync(inngest.Event(name="t"))
    drain()
    original = FunctionRun.objects.get()
    response = client.post(
        f"/inngest/v1/runs/{original.id}/rerun",
        data={"from_step": "b"},
        content_type="application/json",
        headers=BEARER,
    )
    assert response.status_code == 201
    data = response.json()["data"]
    assert (data["original_run_id"], data["status"]) == (original.id, "Scheduled")
    drain()
    assert calls == ["a", "b", "b"]
    plain = client.post(
        f"/inngest/v1/runs/{original.id}/rerun", content_type="application/json", headers=BEARER
    )
    assert plain.status_code == 201
    missing = client.post(
        f"/inngest/v1/runs/{original.id}/rerun",
        data={"from_step": "zz"},
        content_type="application/json",
        headers=BEARER,
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == f"from_step: run '{original.id}' has no step 'zz'"
    nope = client.post(
        "/inngest/v1/runs/nope/rerun", content_type="application/json", headers=BEARER
    )
    assert nope.status_code == 404


@pytest.mark.django_db
def test_bulk_cancellation_cancels_matching_runs_and_is_listed(
    client: Client, inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C7 over HTTP."""

    @inngest_client.create_function(fn_id="long", trigger=inngest.TriggerEvent(event="t"))
    def long(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("wait", timedelta(hours=1))

    sender = inngest.Inngest(app_id="tests")
    sender.send_sync([inngest.Event(name="t", data={"user": u}) for u in ("a", "b", "a")])
    drain()
    clock.advance(timedelta(seconds=1))  # started_before defaults to now; runs began before
    response = client.post(
        "/inngest/v1/cancellations",
        data={"app_id": "tests", "function_id": "long", "if": "event.data.user == 'a'"},
        content_type="application/json",
        headers=BEARER,
    )
    assert response.status_code == 201, response.content
    created = response.json()["data"]
    assert (created["function_id"], created["cancelled_runs"], created["if"]) == (
        "tests-long",
        2,
        "event.data.user == 'a'",
    )
    assert sorted(FunctionRun.objects.values_list("status", flat=True)) == [
        "CANCELLED",
        "CANCELLED",
        "SLEEPING",
    ]
    listed = get(client, "cancellations").json()["data"]
    assert [item["id"] for item in listed] == [created["id"]]
    assert listed[0]["requested_by"] == "signing-key"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "app_id: This field is required.; function_id: This field is required."),
        ({"app_id": "tests", "function_id": "nope"}, 404, "no function 'nope' in app 'tests'"),
        (
            {"app_id": "tests", "function_id": "long", "if": "event.data.("},
            400,
            "if: invalid expression",
        ),
        (
            {
                "app_id": "tests",
                "function_id": "long",
                "started_after": "2030-01-02T00:00:00Z",
                "started_before": "2030-01-01T00:00:00Z",
            },
            400,
            "started_after: 2030-01-02T00:00:00+00:00 is not before 2030-01-01T00:00:00+00:00",
        ),
        (
            {"app_id": "tests", "function_id": "long", "started_before": "soon"},
            400,
            "started_before: Datetime has wrong format.",
        ),
        ([], 400, "non_field_errors: Invalid data. Expected a dictionary, but got list."),
    ],
)
def test_a_bad_bulk_cancellation_is_refused_and_cancels_nothing(
    client: Client, inngest_client: inngest.Inngest, body: Any, status: int, message: str
) -> None:
    inngest_client.create_function(fn_id="long", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: None
    )
    response = client.post(
        "/inngest/v1/cancellations", data=body, content_type="application/json", headers=BEARER
    )
    assert response.status_code == status
    assert message in response.json()["error"]
    assert Cancellation.objects.count() == 0


@pytest.mark.django_db
def test_the_full_function_id_is_accepted_too(
    client: Client, inngest_client: inngest.Inngest
) -> None:
    inngest_client.create_function(fn_id="long", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: None
    )
    response = client.post(
        "/inngest/v1/cancellations",
        data={"app_id": "tests", "function_id": "tests-long"},
        content_type="application/json",
        headers=BEARER,
    )
    assert response.json()["data"]["function_id"] == "tests-long"


# --- authentication and permissions -------------------------------------------------------------


@pytest.mark.django_db
def test_without_credentials_every_endpoint_answers_401(client: Client) -> None:
    for method, path in [
        ("get", "events/x"),
        ("get", "events/x/runs"),
        ("get", "runs/x"),
        ("delete", "runs/x"),
        ("post", "runs/x/rerun"),
        ("get", "cancellations"),
        ("post", "cancellations"),
        ("post", "replays"),
        ("get", "functions"),
        ("get", "apps/x/functions"),
    ]:
        response = getattr(client, method)(f"/inngest/v1/{path}")
        assert response.status_code == 401, (method, path)
        assert response.json() == {
            "error": "Authentication credentials were not provided.",
            "status": 401,
        }
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="django-inngest"'


@pytest.mark.django_db
def test_a_wrong_signing_key_is_not_accepted(client: Client) -> None:
    for header in ("Bearer signkey-test-wrong", "Bearer", "Bearer a b", f"Token {SIGNING_KEY}"):
        assert get(client, "functions", Authorization=header).status_code == 401


@pytest.mark.django_db
def test_signing_keys_rotate_like_event_keys(client: Client) -> None:
    with override_settings(INNGEST={"SIGNING_KEYS": ["new-key", SIGNING_KEY]}):
        assert get(client, "functions", Authorization="Bearer new-key").status_code == 200
        assert get(client, "functions").status_code == 200
    with override_settings(INNGEST={"SIGNING_KEYS": ["new-key"]}):
        assert get(client, "functions").status_code == 401


@pytest.mark.django_db
def test_session_users_need_the_view_permission_to_read(
    client: Client, two_steps: inngest.Function
) -> None:
    inngest.Inngest(app_id="tests").send_sync(inngest.Event(name="t"))
    drain()
    run = FunctionRun.objects.get()
    client.force_login(user_with())
    denied = client.get(f"/inngest/v1/runs/{run.id}")
    assert denied.status_code == 403
    assert denied.json() == {
        "error": "this action needs the permission 'django_inngest.view_functionrun'",
        "status": 403,
    }
    client.force_login(user_with("view_functionrun"))
    assert client.get(f"/inngest/v1/runs/{run.id}").status_code == 200
    assert client.get("/inngest/v1/cancellations").status_code == 403


@pytest.mark.django_db
def test_cancelling_and_rerunning_need_the_same_permissions_as_in_the_admin(
    client: Client, sleeper: inngest.Function, clock: FrozenClock
) -> None:
    inngest.Inngest(app_id="tests").send_sync(inngest.Event(name="nap"))
    drain()
    run = FunctionRun.objects.get()
    client.force_login(user_with("view_functionrun"))
    assert client.delete(f"/inngest/v1/runs/{run.id}").status_code == 403
    assert client.post(f"/inngest/v1/runs/{run.id}/rerun").status_code == 403
    assert client.post("/inngest/v1/cancellations").status_code == 403
    run.refresh_from_db()
    assert run.status == "SLEEPING" and FunctionRun.objects.count() == 1
    client.force_login(user_with("cancel_functionrun", "rerun_functionrun"))
    assert client.delete(f"/inngest/v1/runs/{run.id}").status_code == 200
    rerun = client.post(f"/inngest/v1/runs/{run.id}/rerun", content_type="application/json")
    assert rerun.status_code == 201


@pytest.mark.django_db
def test_superusers_may_do_everything(client: Client, sleeper: inngest.Function) -> None:
    inngest.Inngest(app_id="tests").send_sync(inngest.Event(name="nap"))
    drain()
    run = FunctionRun.objects.get()
    client.force_login(User.objects.create_superuser("root"))
    assert client.get(f"/inngest/v1/runs/{run.id}").status_code == 200
    assert client.delete(f"/inngest/v1/runs/{run.id}").status_code == 200


@pytest.mark.django_db
def test_session_writes_need_a_csrf_token(client: Client, sleeper: inngest.Function) -> None:
    """DRF's session authentication: a cross-site form cannot cancel runs."""
    inngest.Inngest(app_id="tests").send_sync(inngest.Event(name="nap"))
    drain()
    run = FunctionRun.objects.get()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.create_superuser("root"))
    response = strict.delete(f"/inngest/v1/runs/{run.id}")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]


@pytest.mark.django_db
def test_drf_token_authentication_works_when_the_project_uses_it(
    client: Client, two_steps: inngest.Function
) -> None:
    user = user_with("view_functionrun")
    token = Token.objects.create(user=user)
    rest = {"DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"]}
    with override_settings(REST_FRAMEWORK=rest):
        ok = get(client, "functions", Authorization=f"Token {token.key}")
        wrong = get(client, "functions", Authorization="Token nope")
    assert ok.status_code == 200
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "Invalid token."


@pytest.mark.django_db
def test_answers_are_json_whatever_the_accept_header(client: Client) -> None:
    response = get(client, "functions", Accept="text/html", **BEARER)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_ids_that_no_database_could_hold_are_simply_not_found(client: Client) -> None:
    """Found by the fuzz test: PostgreSQL refuses NUL in a query parameter."""
    for path in ("runs/a%00b", "events/%00", "events/%00/runs"):
        assert get(client, path).status_code == 404
    assert client.delete("/inngest/v1/runs/%00", headers=BEARER).status_code == 404
    rerun = client.post(
        "/inngest/v1/runs/%00/rerun", content_type="application/json", headers=BEARER
    )
    assert rerun.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("(" * 500 + "event.data.a == 1" + ")" * 500, "levels deep, more than the 64 allowed"),
        ("event.data.a == '\\x'", "invalid escape '\\\\x' in a string literal at column 17"),
        ("event.data.a == '\\N{foo}'", "invalid escape '\\\\N' in a string literal"),
        ("event.data.a == " + "9" * 400, "int literal 9999999999"),
        ("event.data.a = 1", "= is not an operator; did you mean ==? at column 14"),
        ("x" * 5000, "Ensure this field has no more than 4096 characters."),
    ],
)
def test_a_hostile_bulk_cancellation_if_gets_a_400_that_says_why(
    client: Client, inngest_client: inngest.Inngest, expression: str, message: str
) -> None:
    """Issue 15 point 6: these were 500s."""
    inngest_client.create_function(fn_id="long", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: None
    )
    response = client.post(
        "/inngest/v1/cancellations",
        data={"app_id": "tests", "function_id": "long", "if": expression},
        content_type="application/json",
        headers=BEARER,
    )
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]
    assert Cancellation.objects.count() == 0
