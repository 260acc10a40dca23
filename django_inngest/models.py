"""Tables of the engine. Rules live in `core/` and every write in `store/`; models stay thin.

`Event` and `FunctionRun` / `RunStep` are history. `QueueItem` is the short-lived, lean table
workers claim from: one row per run that is waiting to (re)start, deleted when the run ends.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class RunStatus(models.TextChoices):
    """The statuses of a run; COMPLETED, FAILED, CANCELLED and SKIPPED are final."""

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
    """Queries over stored events."""

    def pending(self) -> EventQuerySet:
        """Events not yet matched against the registered functions."""
        return self.filter(pending=True)


class Event(models.Model):
    """An event as received and stored: its name and data, our ULID, the sender's id, and whether it
    is still to be matched against the functions (`pending`)."""

    id = models.CharField(primary_key=True, max_length=26, help_text="ULID given on receipt.")
    user_id = models.CharField(max_length=255, blank=True, default="", help_text="The sender's id.")
    name = models.CharField(max_length=512)
    data = models.JSONField(default=dict)
    ts = models.BigIntegerField(help_text="Milliseconds since the epoch.")
    received_at = models.DateTimeField()
    receipt_order = models.BigIntegerField(
        null=True,
        editable=False,
        help_text="Increases with each event stored; set by the database on insert "
        "(store/events.py), whatever id or seed the sender chose.",
    )
    pending = models.BooleanField(default=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(
                fields=["receipt_order"], condition=Q(pending=True), name="inngest_event_pending"
            ),
            # Declared here rather than with db_index, which on PostgreSQL adds a second,
            # varchar_pattern_ops index for LIKE 'x%' that nothing uses and every insert pays.
            models.Index(fields=["name"], name="inngest_event_name"),
            models.Index(fields=["user_id"], name="inngest_event_user_id"),
        ]
        permissions = [("send_event", "Can send events from the admin")]

    def __str__(self) -> str:
        return f"{self.name} {self.id}"

    @property
    def public_id(self) -> str:
        """The id a handler sees: the sender's id, or ours."""
        return self.user_id or self.id


class EventSkip(models.Model):
    """A function, or a waiting run, that an event skipped because routing or planning that
    one pair failed (an expression, a flow-control key, a wait's condition): the error stays
    with the pair and every other piece of work goes on. Shown on the event's admin page."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="skips", db_index=False)
    function_id = models.CharField(max_length=255)
    run_id = models.CharField(
        max_length=26, blank=True, default="", help_text="The waiting run, for a wait or cancel."
    )
    reason = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["event"], name="inngest_skip_event")]

    def __str__(self) -> str:
        return f"{self.event_id} skipped {self.run_id or self.function_id}"


class FunctionRunQuerySet(models.QuerySet["FunctionRun"]):
    """Queries over runs by whether they ended."""

    def ended(self) -> FunctionRunQuerySet:
        """Runs in a final status."""
        return self.filter(status__in=ENDED_STATUSES)

    def active(self) -> FunctionRunQuerySet:
        """Runs not in a final status yet."""
        return self.exclude(status__in=ENDED_STATUSES)


class FunctionRun(models.Model):
    """One run of one function: its status, the event(s) that started it, its attempt, its lease
    while a worker holds it, and its output or error once it ends."""

    id = models.CharField(primary_key=True, max_length=26, help_text="ULID; its time is enqueue.")
    function_id = models.CharField(max_length=255, help_text='"{app_id}-{fn_id}"')
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs", db_index=False
    )
    event_ids = models.JSONField(default=list, help_text="Triggering event ids, in order.")
    output = models.JSONField(null=True, blank=True, help_text="Return value, or the error.")
    attempt = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    original_run = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reruns",
        db_index=False,
    )
    finish_timeout = models.DurationField(
        null=True, blank=True, help_text="Cancelled if not ended this long after its start."
    )

    objects = FunctionRunQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["function_id", "-id"], name="inngest_run_function"),
            models.Index(fields=["status", "-id"], name="inngest_run_status"),
            # Plain indexes for the foreign keys (see Event.Meta).
            models.Index(fields=["event"], name="inngest_run_event"),
            models.Index(fields=["original_run"], name="inngest_run_original"),
        ]
        permissions = [
            ("cancel_functionrun", "Can cancel function runs"),
            ("rerun_functionrun", "Can rerun function runs and retry them from a step"),
        ]

    def __str__(self) -> str:
        return f"{self.function_id} {self.id}"

    @property
    def ended(self) -> bool:
        """Whether the run is in a final status."""
        return self.status in ENDED_STATUSES


class RunStep(models.Model):
    """The stored state of one step of a run (one repeat of one step id): its status, output or
    error, attempts and times."""

    # Indexed by the unique (run, hashed_id) constraint.
    run = models.ForeignKey(
        FunctionRun, on_delete=models.CASCADE, related_name="steps", db_index=False
    )
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
    """Something a worker must do at `available_at`: (re)start a run, or fire a timer.

    Workers take due items in `score` order (`available_at` moved by the run's priority).
    A run item stays leased while a worker executes it; an item held back by a saturated
    concurrency key is parked (`parked_on`) and leaves the ready index until a slot frees.
    """

    class Kind(models.TextChoices):
        """What a queue item is due for: a run to execute, or a flow-control timer to fire."""

        RUN = "run", "Run"
        DEBOUNCE = "debounce", "Debounce timer"
        BATCH = "batch", "Batch timer"
        START_TIMEOUT = "start_timeout", "Start timeout"
        FINISH_TIMEOUT = "finish_timeout", "Finish timeout"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.RUN)
    # Indexed by the unique (run, kind) constraint.
    run = models.ForeignKey(
        FunctionRun,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="queue_items",
        db_index=False,
    )
    ref = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL = none
    available_at = models.DateTimeField()
    score = models.DateTimeField(help_text="available_at minus the priority factor.")
    priority = models.IntegerField(default=0, help_text="Seconds.")
    lease_owner = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001 - NULL = free
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    ckey1 = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001 - NULL = no limit
    climit1 = models.PositiveIntegerField(null=True, blank=True)
    ckey2 = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001 - NULL = no limit
    climit2 = models.PositiveIntegerField(null=True, blank=True)
    parked_on = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001 - NULL = ready
    lease_losses = models.PositiveIntegerField(
        default=0,
        help_text="Times in a row the run's lease was lost (its worker died or its database "
        "writes failed) without a new step result; at MAX_LEASE_LOSSES the run fails.",
    )
    steps_at_loss = models.PositiveIntegerField(
        default=0, help_text="Step results the run had when its lease was last lost."
    )
    queue = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 - NULL = any worker

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "kind"], name="inngest_queue_one_per_run"),
            models.UniqueConstraint(
                fields=["kind", "ref"],
                condition=Q(ref__isnull=False),
                name="inngest_queue_one_timer",
            ),
        ]
        indexes = [
            models.Index(
                fields=["score", "id"],
                condition=Q(lease_expires_at__isnull=True, parked_on__isnull=True),
                name="inngest_queue_ready",
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
            models.Index(
                fields=["parked_on", "score", "id"],
                condition=Q(parked_on__isnull=False),
                name="inngest_queue_parked",
            ),
            models.Index(
                fields=["ckey1"],
                condition=Q(ckey1__isnull=False, lease_owner__isnull=False),
                name="inngest_queue_ckey1",
            ),
            models.Index(
                fields=["ckey2"],
                condition=Q(ckey2__isnull=False, lease_owner__isnull=False),
                name="inngest_queue_ckey2",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.run_id or self.ref} at {self.available_at}"


class FlowState(models.Model):
    """One row per flow-control key: GCRA times (throttle, rate limit), debounce and batch
    buffers, singleton holders, and the rows locked while concurrency slots are counted."""

    key = models.CharField(primary_key=True, max_length=64)
    kind = models.CharField(max_length=16)
    data = models.JSONField(default=dict)
    updated_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class Pause(models.Model):
    """What a run waits for: an event (`wait`), an invoked run's end (`invoke`), or an event
    that cancels it (`cancel`). Found by (event name, match key) when an event arrives."""

    class Kind(models.TextChoices):
        """What a pause waits for: an event (`wait`), an invoked run's end (`invoke`), or an event
        that cancels its run (`cancel`)."""

        WAIT = "wait", "Wait for event"
        INVOKE = "invoke", "Invoke"
        CANCEL = "cancel", "Cancel"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    run = models.ForeignKey(FunctionRun, on_delete=models.CASCADE, related_name="pauses")
    hashed_id = models.CharField(max_length=40, blank=True, default="")
    event_name = models.CharField(max_length=512)
    expression = models.TextField(blank=True, default="", help_text="Empty matches any event.")
    match_key = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001 - NULL = no index
    trigger_event = models.JSONField(default=dict, help_text="`event` in the expression.")
    after_receipt = models.BigIntegerField(
        help_text="Only events received later (a greater `Event.receipt_order`) match."
    )
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["event_name", "match_key"], name="inngest_pause_lookup"),
            models.Index(fields=["expires_at"], name="inngest_pause_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_name} for {self.run_id}"


class IdempotencyKey(models.Model):
    """A (function, sender's event id) pair seen in the last 24 hours."""

    key = models.CharField(primary_key=True, max_length=64)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.key


class CronSchedule(models.Model):
    """A cron trigger workers fire, as declared by the code of the last worker that started.

    Ticks at or before `created_at` never fire, so a new or changed schedule does not catch up
    on ticks from before it existed.
    """

    function_id = models.CharField(max_length=255)
    cron = models.CharField(max_length=255, help_text="The expression as written.")
    timezone = models.CharField(max_length=64, help_text="The zone its times are read in.")
    created_at = models.DateTimeField()
    last_tick_at = models.DateTimeField(
        null=True, blank=True, help_text="Scheduled time of the latest tick fired."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["function_id", "cron", "timezone"], name="inngest_cron_schedule_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.function_id} {self.cron}"


class CronTick(models.Model):
    """One fired tick: unique per (function, scheduled time), so a tick starts one run."""

    function_id = models.CharField(max_length=255)
    scheduled_at = models.DateTimeField()
    cron = models.CharField(max_length=255, help_text="The expression that fired it.")
    fire_at = models.DateTimeField(help_text="When the run became due (jitter, catch-up).")
    run = models.ForeignKey(
        FunctionRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    fired_by = models.CharField(max_length=128, help_text="The worker that fired it.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["function_id", "scheduled_at"], name="inngest_cron_tick_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.function_id} at {self.scheduled_at}"


class Cancellation(models.Model):
    """A bulk cancellation asked for through the HTTP API (SPEC §6.3), kept as a record."""

    id = models.CharField(
        primary_key=True, max_length=26, help_text="ULID; its time is the request."
    )
    app_id = models.CharField(max_length=255)
    function_id = models.CharField(max_length=255, help_text='"{app_id}-{fn_id}"')
    started_after = models.DateTimeField(null=True, blank=True)
    started_before = models.DateTimeField()
    if_exp = models.TextField(blank=True, default="", help_text="Expression over the event.")
    requested_by = models.CharField(max_length=150, blank=True, default="")
    cancelled_runs = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"cancel {self.function_id} {self.id}"


class AppSync(models.Model):
    """The functions of an app as one deploy declared them (a worker's start, or
    `inngest_sync`). The newest sync of each app is its current function set: events start runs
    of the current sets' functions, whichever worker matches them."""

    app_id = models.CharField(max_length=255)
    version = models.CharField(max_length=40, help_text="Hash of the functions' definitions.")
    synced_at = models.DateTimeField()
    synced_by = models.CharField(max_length=128, help_text="The worker, or inngest_sync.")

    class Meta:
        indexes = [models.Index(fields=["app_id", "-id"], name="inngest_sync_app")]

    def __str__(self) -> str:
        return f"{self.app_id} {self.version[:12]} ({self.synced_by})"


class SyncedFunction(models.Model):
    """One function of a sync, as its definition (triggers and options as JSON)."""

    sync = models.ForeignKey(AppSync, on_delete=models.CASCADE, related_name="functions")
    function_id = models.CharField(max_length=255, help_text='"{app_id}-{fn_id}"')
    name = models.CharField(max_length=255)
    triggers = models.JSONField(default=list)
    options = models.JSONField(default=dict)
    hash = models.CharField(max_length=40)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sync", "function_id"], name="inngest_synced_once"),
        ]

    def __str__(self) -> str:
        return self.function_id


class WorkerRecord(models.Model):
    """A worker process, kept up to date by its heartbeat; gone when not seen for three."""

    id = models.CharField(primary_key=True, max_length=128, help_text="The worker id.")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    version = models.CharField(max_length=40, help_text="Hash of its functions' definitions.")
    functions = models.JSONField(default=list, help_text="Ids of the functions it serves.")
    concurrency = models.PositiveIntegerField()
    in_flight = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.id
