"""Concurrency keys: admitting claimed runs while their keys have free slots, parking the
others on a full key, and releasing parked runs when a slot frees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count

from django_inngest.models import FlowState, QueueItem
from django_inngest.store._sql import alias, atomic, db_connection
from django_inngest.store.dialect import notify


def _keys_of(item: Mapping[str, Any]) -> list[tuple[str, int]]:
    return [
        (item[key], item[limit])
        for key, limit in (("ckey1", "climit1"), ("ckey2", "climit2"))
        if item.get(key)
    ]


def _lock_keys(keys: Iterable[str], now: datetime) -> None:
    """Lock the rows of concurrency keys, in one order, so slot counts cannot race."""
    wanted = sorted(set(keys))
    if not wanted:
        return
    db = alias()
    # No effect on SQLite, whose transaction holds the database's write lock.
    locking = FlowState.objects.using(db).filter(key__in=wanted).order_by("key").select_for_update()
    found = set(locking.values_list("key", flat=True))
    missing = [key for key in wanted if key not in found]
    if missing:
        FlowState.objects.using(db).bulk_create(
            [FlowState(key=key, kind="concurrency", data={}, updated_at=now) for key in missing],
            ignore_conflicts=True,
        )
        if db_connection().features.has_select_for_update:  # lock the rows just made too
            list(locking.filter(key__in=missing).values_list("key", flat=True))


def _executing(keys: Sequence[str], excluding: Sequence[int]) -> dict[str, int]:
    """How many leased (executing) items hold each key, not counting `excluding`."""
    db = alias()
    counts: dict[str, int] = dict.fromkeys(keys, 0)
    for column in ("ckey1", "ckey2"):
        rows = (
            QueueItem.objects.using(db)
            .filter(**{f"{column}__in": keys}, lease_owner__isnull=False)
            .exclude(id__in=excluding)
            .values(column)
            .annotate(n=Count("id"))
            .values_list(column, "n")
        )
        for key, n in rows:
            counts[key] += n
    return counts


def admit(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the items whose concurrency keys have room; park the others on a full key."""
    keyed = [item for item in items if _keys_of(item)]
    if not keyed:
        return items
    now = datetime.now(UTC)
    keys = sorted({key for item in keyed for key, _ in _keys_of(item)})
    _lock_keys(keys, now)
    counts = _executing(keys, [item["id"] for item in items])
    admitted, parked = [], []
    for item in items:
        full = next((key for key, limit in _keys_of(item) if counts[key] >= limit), None)
        if full is None:
            admitted.append(item)
            for key, _ in _keys_of(item):
                counts[key] += 1
        else:
            parked.append((item["id"], full))
    for item_id, key in parked:
        QueueItem.objects.using(alias()).filter(id=item_id).update(
            parked_on=key, lease_owner=None, lease_expires_at=None
        )
    return admitted


def free_slots(keys: Iterable[str | None]) -> None:
    """A run stopped executing: let the oldest run parked on each of its keys go."""
    wanted = sorted({key for key in keys if key})
    if not wanted:
        return
    db = alias()
    with atomic():
        _lock_keys(wanted, datetime.now(UTC))
        released = False
        for key in wanted:
            oldest = list(
                QueueItem.objects.using(db)
                .filter(parked_on=key)
                .order_by("score", "id")
                .values_list("id", flat=True)[:1]
            )
            released = (
                bool(QueueItem.objects.using(db).filter(id__in=oldest).update(parked_on=None))
                or released
            )
        if released:
            notify()


def release_parked_with_room() -> int:
    """A safety net run with each sweep: release parked runs whose key has free slots."""
    db = alias()
    released = 0
    with atomic():
        keys = [
            key
            for key in QueueItem.objects.using(db)
            .filter(parked_on__isnull=False)
            .values_list("parked_on", flat=True)
            .distinct()
            if key
        ]
        if not keys:
            return 0
        _lock_keys(keys, datetime.now(UTC))
        counts = _executing(keys, [])
        for key in keys:
            parked = list(
                QueueItem.objects.using(db)
                .filter(parked_on=key)
                .order_by("score", "id")
                .values("id", "ckey1", "climit1", "ckey2", "climit2")[:100]
            )
            if not parked:
                continue
            limit = dict(_keys_of(parked[0]))[key]
            room = max(0, limit - counts[key])
            chosen = [item["id"] for item in parked[:room]]
            released += QueueItem.objects.using(db).filter(id__in=chosen).update(parked_on=None)
        if released:
            notify()
    return released
