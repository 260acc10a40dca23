"""Durable, event-driven functions for Django, with Inngest's vocabulary.

Public API only; see docs/ for the guide.
"""

from django_inngest.client import Inngest, create_function, send, send_sync
from django_inngest.core.config import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    ParallelMode,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from django_inngest.core.errors import (
    InngestError,
    NonRetriableError,
    RetryAfterError,
    StepError,
)
from django_inngest.core.events import Event
from django_inngest.core.function import Function
from django_inngest.core.steps import Context, ContextSync, Group, GroupSync, Step, StepSync

SyncStep = StepSync

__all__ = [
    "Batch",
    "Cancel",
    "Concurrency",
    "Context",
    "ContextSync",
    "Debounce",
    "Event",
    "Function",
    "Group",
    "GroupSync",
    "Inngest",
    "InngestError",
    "NonRetriableError",
    "ParallelMode",
    "Priority",
    "RateLimit",
    "RetryAfterError",
    "Singleton",
    "Step",
    "StepError",
    "StepSync",
    "SyncStep",
    "Throttle",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
    "create_function",
    "send",
    "send_sync",
]
