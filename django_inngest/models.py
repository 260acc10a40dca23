"""Tables of the engine. Rules live in `core/` and every write in `store.py`; models stay thin.

`Event` and `FunctionRun` / `RunStep` are history. `QueueItem` is the short-lived, lean table
workers claim from: one row per run that is waiting to (re)start, deleted when the run ends.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class RunStatus(models.TextChoices):
    QUEUED = "QUEUED", "Queued"
    RUNNING = "RUNNING", "Running"
    SLEEPING = "SLEEPING", "Sleeping"
    WAITING = "WAITING", "Waiting"
    COMPLETED = "COMPLETED", "Completed"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"
    SKIPPED = "SKIPPED", "Skipped"


ENDED_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED}
)


class EventQuerySet(models.QuerySet["Event"]):
    def pending(self) -> EventQuerySet:
        """Events not yet matched against the registered functions."""
        return self.filter(pending=True)


class Event(models.Model):
    id = models.CharField(primary_key=True, max_length=26, help_text="ULID given on receipt.")
    user_id = models.CharField(
        max_length=255, blank=True, default="", db_index=True, help_text="The sender's id."
    )
    name = models.CharField(max_length=512, db_index=True)
    data = models.JSONField(default=dict)
    ts = models.BigIntegerField(help_text="Milliseconds since the epoch.")
    received_at = models.DateTimeField()
    pending = models.BooleanField(default=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["id"], condition=Q(pending=True), name="inngest_event_pending"),
        ]
        permissions = [("send_event", "Can send events from the admin")]

    def __str__(self) -> str:
        return f"{self.name} {self.id}"

    @property
    def public_id(self) -> str:
        """The id a handler sees: the sender's id, or ours."""
        return self.user_id or self.id


class FunctionRunQuerySet(models.QuerySet["FunctionRun"]):
    def ended(self) -> FunctionRunQuerySet:
        return self.filter(status__in=ENDED_STATUSES)

    def active(self) -> FunctionRunQuerySet:
        return self.exclude(status__in=ENDED_STATUSES)


class FunctionRun(models.Model):
    id = models.CharField(primary_key=True, max_length=26, help_text="ULID; its time is enqueue.")
    function_id = models.CharField(max_length=255, help_text='"{app_id}-{fn_id}"')
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    event_ids = models.JSONField(default=list, help_text="Triggering event ids, in order.")
    output = models.JSONField(null=True, blank=True, help_text="Return value, or the error.")
    attempt = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    original_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )

    objects = FunctionRunQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["function_id", "-id"], name="inngest_run_function"),
            models.Index(fields=["status", "-id"], name="inngest_run_status"),
        ]
        permissions = [
            ("cancel_functionrun", "Can cancel function runs"),
            ("rerun_functionrun", "Can rerun function runs and retry them from a step"),
        ]

    def __str__(self) -> str:
        return f"{self.function_id} {self.id}"

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES


class RunStep(models.Model):
    run = models.ForeignKey(FunctionRun, on_delete=models.CASCADE, related_name="steps")
    hashed_id = models.CharField(max_length=40)
    step_id = models.TextField(help_text="The id the code gave.")
    index = models.PositiveIntegerField(default=0, help_text="n for the n-th repeat of the id.")
    op = models.CharField(max_length=16)
    status = models.CharField(max_length=16)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    history = models.JSONField(default=list, blank=True, help_text="Errors of failed attempts.")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    wake_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "hashed_id"], name="inngest_step_once"),
        ]

    def __str__(self) -> str:
        return self.step_id if not self.index else f"{self.step_id} #{self.index}"


class QueueItem(models.Model):
    class Kind(models.TextChoices):
        RUN = "run", "Run"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.RUN)
    run = models.ForeignKey(
        FunctionRun, null=True, blank=True, on_delete=models.CASCADE, related_name="queue_items"
    )
    available_at = models.DateTimeField()
    lease_owner = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001 - NULL = free
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "kind"], name="inngest_queue_one_per_run"),
        ]
        indexes = [
            models.Index(
                fields=["available_at", "id"],
                condition=Q(lease_expires_at__isnull=True),
                name="inngest_queue_due",
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(lease_expires_at__isnull=False),
                name="inngest_queue_leased",
            ),
            models.Index(
                fields=["lease_owner"],
                condition=Q(lease_owner__isnull=False),
                name="inngest_queue_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.run_id} at {self.available_at}"


class IdempotencyKey(models.Model):
    """A (function, sender's event id) pair seen in the last 24 hours."""

    key = models.CharField(primary_key=True, max_length=64)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.key
