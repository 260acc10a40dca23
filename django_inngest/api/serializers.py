"""DRF serializers of the API: the shapes of events, runs, steps, functions and bulk
cancellations, with Inngest's REST field names and status strings (SPEC §6.1, §6.3).

Incoming events are not validated here but by `core/events.py`, the rules `send_sync` applies;
`EventInSerializer` only documents their shape in the OpenAPI schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from django_inngest.core.config import TriggerCron, TriggerEvent
from django_inngest.core.expression_syntax import MAX_LENGTH
from django_inngest.core.expressions import ExpressionError, compile_expression
from django_inngest.core.function import Function
from django_inngest.models import Cancellation, Event, FunctionRun, RunStatus, RunStep

#: Our run statuses as Inngest's REST API spells them; sleeping and waiting runs are running.
REST_RUN_STATUS: dict[str, str] = {
    RunStatus.QUEUED: "Scheduled",
    RunStatus.RUNNING: "Running",
    RunStatus.SLEEPING: "Running",
    RunStatus.WAITING: "Running",
    RunStatus.COMPLETED: "Completed",
    RunStatus.FAILED: "Failed",
    RunStatus.CANCELLED: "Cancelled",
    RunStatus.SKIPPED: "Skipped",
}
MAX_EXPRESSION_LENGTH = MAX_LENGTH


def rest_run_status(status: str) -> str:
    return REST_RUN_STATUS.get(status, "Unknown")


class EventInSerializer(serializers.Serializer[Any]):
    """An event as senders post it (documentation only: core/events.py validates)."""

    name = serializers.CharField(max_length=512, help_text="Not starting with 'inngest/'.")
    # The metaclass moves declared fields out of the class, so `Serializer.data` is intact.
    data = serializers.DictField(  # type: ignore[assignment]
        required=False, allow_null=True, help_text="A JSON object."
    )
    id = serializers.CharField(
        required=False, allow_null=True, max_length=255, help_text="The sender's id (dedup, 24h)."
    )
    ts = serializers.IntegerField(
        required=False, allow_null=True, help_text="Milliseconds since the epoch."
    )


class SendEventsResultSerializer(serializers.Serializer[Any]):
    ids = serializers.ListField(child=serializers.CharField(), help_text="ULIDs, in order.")
    status = serializers.IntegerField()
    error = serializers.CharField(required=False)


class ErrorSerializer(serializers.Serializer[Any]):
    error = serializers.CharField()
    status = serializers.IntegerField()


class EventSerializer(serializers.Serializer[Event]):
    internal_id = serializers.CharField(source="id", help_text="Our ULID, returned by send.")
    id = serializers.CharField(source="public_id", help_text="The sender's id, or ours.")
    name = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]
    ts = serializers.IntegerField(help_text="Milliseconds since the epoch.")
    received_at = serializers.DateTimeField()


class StepSerializer(serializers.Serializer[RunStep]):
    id = serializers.CharField(source="hashed_id", help_text="SHA-1 of the step id.")
    step_id = serializers.CharField(help_text="The id the code gave.")
    index = serializers.IntegerField(help_text="n for the n-th repeat of the id.")
    op = serializers.CharField()
    status = serializers.SerializerMethodField()
    attempts = serializers.IntegerField()
    output = serializers.JSONField()
    error = serializers.JSONField()
    history = serializers.JSONField(help_text="Errors of failed attempts.")
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField()
    wake_at = serializers.DateTimeField()

    def get_status(self, step: RunStep) -> str:
        return step.status.title()


class RunSerializer(serializers.Serializer[FunctionRun]):
    run_id = serializers.CharField(source="id")
    function_id = serializers.CharField()
    status = serializers.SerializerMethodField(
        help_text="Scheduled, Running, Completed, Failed, Cancelled or Skipped."
    )
    run_started_at = serializers.DateTimeField(source="created_at", help_text="When queued.")
    started_at = serializers.DateTimeField(help_text="First execution, or null.")
    ended_at = serializers.DateTimeField()
    event_id = serializers.CharField()
    event_ids = serializers.ListField(child=serializers.CharField())
    original_run_id = serializers.CharField(help_text="Set on reruns.")
    attempt = serializers.IntegerField()
    output = serializers.JSONField(help_text="The return value, or the error object.")

    def get_status(self, run: FunctionRun) -> str:
        return rest_run_status(run.status)


class RunDetailSerializer(RunSerializer):
    steps = serializers.SerializerMethodField()

    @extend_schema_field(StepSerializer(many=True))
    def get_steps(self, run: FunctionRun) -> list[dict[str, Any]]:
        return [StepSerializer(step).data for step in run.steps.order_by("id")]


class FunctionSerializer(serializers.Serializer[Function]):
    id = serializers.CharField(help_text='"{app_id}-{fn_id}"')
    slug = serializers.CharField(source="id")
    app_id = serializers.CharField()
    fn_id = serializers.CharField(source="local_id")
    name = serializers.CharField()
    retries = serializers.IntegerField()
    triggers = serializers.SerializerMethodField()
    on_failure_id = serializers.CharField(source="on_failure_fn_id", allow_null=True)

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_triggers(self, function: Function) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for trigger in function.triggers:
            if isinstance(trigger, TriggerEvent):
                found.append({"event": trigger.event, "expression": trigger.expression})
            elif isinstance(trigger, TriggerCron):
                found.append({"cron": trigger.cron, "jitter": trigger.jitter})
        return found


class CancellationRequestSerializer(serializers.Serializer[Any]):
    """``POST v1/cancellations``: cancel the runs of a function enqueued in a window."""

    app_id = serializers.CharField(max_length=255)
    function_id = serializers.CharField(
        max_length=255, help_text='The fn_id, or the full "{app_id}-{fn_id}".'
    )
    started_after = serializers.DateTimeField(required=False, allow_null=True)
    started_before = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Defaults to now."
    )

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        # `if` is a Python keyword, so it cannot be declared as a class attribute.
        fields["if"] = serializers.CharField(
            required=False,
            allow_null=True,
            max_length=MAX_EXPRESSION_LENGTH,
            help_text="An expression over the triggering `event`; only matching runs go.",
        )
        return fields

    def validate_if(self, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            compile_expression(value)
        except ExpressionError as error:
            raise serializers.ValidationError(str(error)) from None
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        after: datetime | None = attrs.get("started_after")
        before: datetime | None = attrs.get("started_before")
        if after is not None and before is not None and after >= before:
            raise serializers.ValidationError(
                {"started_after": f"{after.isoformat()} is not before {before.isoformat()}"}
            )
        return attrs


class CancellationSerializer(serializers.Serializer[Cancellation]):
    id = serializers.CharField()
    app_id = serializers.CharField()
    function_id = serializers.CharField()
    started_after = serializers.DateTimeField()
    started_before = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    cancelled_runs = serializers.IntegerField(help_text="How many runs it cancelled.")
    requested_by = serializers.CharField()

    def to_representation(self, instance: Cancellation) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        data["if"] = instance.if_exp or None
        return data


class ReplayRequestSerializer(serializers.Serializer[Any]):
    """``POST v1/replays``: rerun the runs of a function that failed (or were cancelled) in a
    window, or, with ``preview``, only count them."""

    app_id = serializers.CharField(max_length=255)
    function_id = serializers.CharField(
        max_length=255, help_text='The fn_id, or the full "{app_id}-{fn_id}".'
    )
    statuses = serializers.ListField(
        child=serializers.ChoiceField(choices=["FAILED", "CANCELLED"]),
        min_length=1,
        default=["FAILED"],
        help_text="Which ended runs to rerun (default FAILED).",
    )
    started_after = serializers.DateTimeField(required=False, allow_null=True)
    started_before = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Defaults to now."
    )
    preview = serializers.BooleanField(
        default=False, help_text="Only say which runs would be rerun; rerun nothing."
    )


class ReplaySerializer(serializers.Serializer[Any]):
    function_id = serializers.CharField()
    runs = serializers.IntegerField(
        help_text="How many runs match (and were rerun, unless a preview)."
    )
    run_ids = serializers.ListField(child=serializers.CharField(), help_text="The runs that match.")
    new_run_ids = serializers.ListField(
        child=serializers.CharField(), help_text="The new runs (empty for a preview)."
    )


class RerunRequestSerializer(serializers.Serializer[Any]):
    from_step = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=1000,
        help_text="Keep the results of the steps completed before this step (id or hashed id).",
    )
