"""Charts for the overview, drawn on the server as SVG geometry the template writes out: no script, no
chart library, nothing fetched, so the console works offline under a Content-Security-Policy with no
script at all. Colours come from the style sheet's classes (`outcome-<name>`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from webhook_service.database.request_log import OUTCOMES, OutcomeCount

WIDTH = 600
HEIGHT = 160
AXIS = 18  # room for the time labels under the bars
GAP = 2


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    outcome: str
    title: str  # shown by the browser on hover


@dataclass(frozen=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[Label]
    peak: int
    total: int


def requests_over_time(
    counts: Iterable[OutcomeCount], *, start: int, bucket_seconds: int, buckets: int, label_every: int
) -> Chart:
    """Stacked bars of requests per outcome, one bar per bucket from `start` (epoch seconds)."""
    per_bucket: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for count in counts:
        index = (count.bucket - start) // bucket_seconds
        if 0 <= index < buckets:
            per_bucket[index][count.outcome] += count.count
    peak = max((sum(outcomes.values()) for outcomes in per_bucket.values()), default=0)
    slot = WIDTH / buckets
    plot = float(HEIGHT - AXIS)
    bars, labels = [], []
    for index in range(buckets):
        moment = datetime.fromtimestamp(start + index * bucket_seconds, UTC)
        if index % label_every == 0:
            # Kept clear of the edges, where half the text would be cut off.
            labels.append(Label(min(max(index * slot + slot / 2, 16), WIDTH - 16), moment.strftime("%H:%M")))
        top = float(plot)
        for outcome in _ordered(per_bucket.get(index, {})):
            value = per_bucket[index][outcome]
            height = plot * value / peak if peak else 0
            top -= height
            title = f"{moment:%H:%M} UTC: {value} {outcome.replace('_', ' ')}"
            bars.append(Bar(index * slot + GAP / 2, top, slot - GAP, height, outcome, title))
    total = sum(sum(outcomes.values()) for outcomes in per_bucket.values())
    return Chart(WIDTH, HEIGHT, bars, labels, peak, total)


def share_bar(outcomes: dict[str, int], *, width: int = 160, height: int = 12) -> Chart:
    """One horizontal bar split by outcome, for a table row."""
    total = sum(outcomes.values())
    bars: list[Bar] = []
    left = 0.0
    for outcome in _ordered(outcomes):
        part = width * outcomes[outcome] / total if total else 0
        bars.append(Bar(left, 0, part, height, outcome, f"{outcomes[outcome]} {outcome.replace('_', ' ')}"))
        left += part
    return Chart(width, height, bars, [], int(total), int(total))


def _ordered(outcomes: dict[str, int]) -> Sequence[str]:
    known = [outcome for outcome in OUTCOMES if outcomes.get(outcome)]
    return known + sorted(outcome for outcome in outcomes if outcome not in OUTCOMES and outcomes[outcome])
