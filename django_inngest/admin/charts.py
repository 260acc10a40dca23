"""Server-rendered SVG charts of the dashboard; every label is escaped by `format_html`.

Colours come from CSS classes (`inngest-fill-<status>`), so the charts follow the admin's
light and dark themes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timezone import localtime

from django_inngest.admin.display import STATUS_LABELS, format_duration
from django_inngest.admin.stats import Buckets, Durations

WIDTH = 760
PLOT_LEFT = 44
PLOT_RIGHT = 8
PLOT_TOP = 10
PLOT_BOTTOM = 24


def _nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at least `value` (axis tops read well)."""
    if value <= 0:
        return 1
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for factor in (1, 2, 5, 10):
        if factor * power >= value:
            return factor * power
    return 10 * power


def runs_chart(buckets: Buckets, *, title: str, height: int = 200) -> SafeString:
    """Stacked bars: one per bucket, one segment per status."""
    plot_width = WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_height = height - PLOT_TOP - PLOT_BOTTOM
    top = _nice_ceiling(max((buckets.stacked(i) for i in range(buckets.count)), default=0))
    slot = plot_width / max(buckets.count, 1)
    bar = max(slot * 0.8, 1.0)
    parts: list[SafeString] = []
    for fraction in (0, 0.5, 1):
        y = PLOT_TOP + plot_height * (1 - fraction)
        parts.append(
            format_html(
                '<line class="inngest-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="inngest-axis" x="{}" y="{}" text-anchor="end">{}</text>',
                PLOT_LEFT,
                WIDTH - PLOT_RIGHT,
                f"{y:.1f}",
                f"{y:.1f}",
                PLOT_LEFT - 6,
                f"{y + 4:.1f}",
                _count(top * fraction),
            )
        )
    for index in range(buckets.count):
        x = PLOT_LEFT + slot * index + (slot - bar) / 2
        base: float = PLOT_TOP + plot_height
        when = date_format(localtime(buckets.time_of(index)), "H:i")
        for status, counts in buckets.by_status.items():
            if not counts[index]:
                continue
            h = plot_height * counts[index] / top
            base -= h
            parts.append(
                format_html(
                    '<rect class="inngest-fill-{}" x="{}" y="{}" width="{}" height="{}">'
                    "<title>{}: {} {}</title></rect>",
                    status.lower(),
                    f"{x:.1f}",
                    f"{base:.1f}",
                    f"{bar:.1f}",
                    f"{h:.1f}",
                    when,
                    counts[index],
                    STATUS_LABELS.get(status, status).lower(),
                )
            )
    labels = 6
    for i in range(labels + 1):
        index = round(i * (buckets.count) / labels)
        x = PLOT_LEFT + slot * index
        anchor = "start" if i == 0 else "end" if i == labels else "middle"
        parts.append(
            format_html(
                '<text class="inngest-axis" x="{}" y="{}" text-anchor="{}">{}</text>',
                f"{x:.1f}",
                height - 6,
                anchor,
                date_format(localtime(buckets.time_of(index)), "H:i"),
            )
        )
    return _svg(title, height, parts)


def durations_chart(rows: Sequence[Durations], *, title: str) -> SafeString:
    """A pair of horizontal bars per function: p50 inside p95."""
    row_height = 26
    label_width = 220
    height = PLOT_TOP + row_height * max(len(rows), 1) + PLOT_BOTTOM
    plot_width = WIDTH - label_width - 90
    longest = max((row.p95.total_seconds() for row in rows), default=0.0)
    top = _nice_ceiling(longest)
    parts: list[SafeString] = []
    if not rows:
        parts.append(
            format_html(
                '<text class="inngest-axis" x="{}" y="{}">No run ended in this window.</text>',
                PLOT_LEFT,
                PLOT_TOP + 16,
            )
        )
    for index, row in enumerate(rows):
        y = PLOT_TOP + index * row_height
        p95 = plot_width * row.p95.total_seconds() / top
        p50 = plot_width * row.p50.total_seconds() / top
        parts.append(
            format_html(
                '<text class="inngest-label" x="{}" y="{}" text-anchor="end">{}</text>'
                '<rect class="inngest-p95" x="{}" y="{}" width="{}" height="16">'
                "<title>{}: p95 {} over {} runs</title></rect>"
                '<rect class="inngest-p50" x="{}" y="{}" width="{}" height="16">'
                "<title>{}: p50 {}</title></rect>"
                '<text class="inngest-axis" x="{}" y="{}">{} / {}</text>',
                label_width - 8,
                y + 13,
                _shorten(row.function_id, 34),
                label_width,
                y + 2,
                f"{max(p95, 1):.1f}",
                row.function_id,
                format_duration(row.p95),
                row.runs,
                label_width,
                y + 2,
                f"{max(p50, 1):.1f}",
                row.function_id,
                format_duration(row.p50),
                f"{label_width + max(p95, 1) + 6:.1f}",
                y + 13,
                format_duration(row.p50),
                format_duration(row.p95),
            )
        )
    if rows:
        parts.append(
            format_html(
                '<text class="inngest-axis" x="{}" y="{}">0</text>'
                '<text class="inngest-axis" x="{}" y="{}" text-anchor="end">{}</text>',
                label_width,
                height - 6,
                label_width + plot_width,
                height - 6,
                format_duration(timedelta(seconds=top)),
            )
        )
    return _svg(title, height, parts)


def _svg(title: str, height: int, parts: list[SafeString]) -> SafeString:
    body = format_html_join("", "{}", ((part,) for part in parts))
    return format_html(
        '<svg class="inngest-chart" role="img" viewBox="0 0 {} {}" width="100%" '
        'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        "<title>{}</title>{}</svg>",
        WIDTH,
        height,
        title,
        body,
    )


def _count(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
