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


class SideEffect(models.Model):
    """One execution of a step body of the fault suite's functions, written from inside the
    body (`tests.faults.invariants` bounds how often a step's body may run)."""

    run_id = models.CharField(max_length=26)
    step = models.CharField(max_length=64)
    pid = models.IntegerField()
    at = models.FloatField(help_text="Wall clock, seconds since the epoch.")

    class Meta:
        indexes = [models.Index(fields=["run_id", "step"], name="testapp_effect_step")]

    def __str__(self) -> str:
        return f"{self.run_id} {self.step}"
