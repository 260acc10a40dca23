"""Durations, payload truncation, percentiles and SVG charts of the admin (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from django_inngest.admin import charts
from django_inngest.admin.display import error_parts, format_duration, payload, status_badge
from django_inngest.admin.stats import Buckets, Durations, percentile


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0421, "42 ms"),
        (12.44, "12.4 s"),
        (185, "3 m 05 s"),
        (7800, "2 h 10 m"),
        (273600, "3 d 4 h"),
    ],
)
def test_durations_read_in_the_largest_useful_units(seconds: float, shown: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == shown


def test_a_payload_over_the_limit_is_cut_and_knows_how_much_is_hidden() -> None:
    value = {"text": "x" * 100}
    cut = payload(value, full_url="/full/", limit=40)
    assert (cut.truncated, len(cut.text), cut.full_url) == (True, 40, "/full/")
    assert cut.hidden == cut.size - 40
    whole = payload(value, full_url="/full/")
    assert (whole.truncated, whole.full_url) == (False, None)


def test_status_badges_escape_unknown_statuses() -> None:
    assert str(status_badge("<X>")) == (
        '<span class="inngest-status inngest-status-&lt;x&gt;">&lt;X&gt;</span>'
    )


def test_error_parts_accept_any_stored_shape() -> None:
    assert error_parts({"message": "m"}) == {
        "name": "Error",
        "message": "m",
        "code": "",
        "stack": "",
    }
    assert error_parts("boom")["message"] == '"boom"'


def test_percentile_interpolates_between_ranks_like_percentile_cont() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 0.5) == pytest.approx(5.5)
    assert percentile(values, 0.95) == pytest.approx(9.55)
    assert percentile([3.0], 0.95) == 3.0


def test_the_runs_chart_stacks_one_rect_per_status_and_bucket_with_escaped_titles() -> None:
    buckets = Buckets(
        start=datetime(2030, 1, 1, 12, 0, tzinfo=UTC),
        size=timedelta(minutes=1),
        count=3,
        by_status={"COMPLETED": [2, 0, 5], "FAILED": [1, 0, 0]},
    )
    svg = str(charts.runs_chart(buckets, title="Runs <per> minute"))
    assert svg.count('<rect class="inngest-fill-completed"') == 2
    assert svg.count('<rect class="inngest-fill-failed"') == 1
    assert "<title>Runs &lt;per&gt; minute</title>" in svg
    assert "<title>12:02: 5 completed</title>" in svg


def test_the_durations_chart_escapes_function_ids() -> None:
    rows = [
        Durations(
            function_id="<i>x</i>", runs=3, p50=timedelta(seconds=1), p95=timedelta(seconds=2)
        )
    ]
    svg = str(charts.durations_chart(rows, title="t"))
    assert "<i>" not in svg and "&lt;i&gt;x&lt;/i&gt;" in svg
