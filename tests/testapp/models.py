"""Tables the end-to-end tests use to see what worker processes did."""

from __future__ import annotations

from django.db import models


class WorkLog(models.Model):
    """One execution of a step body: which key, when it started and ended (wall clock)."""

    key = models.CharField(max_length=64)
    run_id = models.CharField(max_length=26)
    started = models.FloatField()
    ended = models.FloatField()

    def __str__(self) -> str:
        return f"{self.key} {self.run_id}"
