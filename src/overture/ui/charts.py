"""Geometry for the server-rendered SVGs: the journey canvas and the experiment chart.

Pure functions of what the services return (tiles, edges, stats, experiment figures); the templates
only draw the shapes computed here."""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TILE_W, TILE_H = 190, 78
GAP_X, GAP_Y = 40, 50
PAD = 24


@dataclass
class TileBox:
    id: str
    type: str
    name: str
    x: float
    y: float
    counts: Mapping[str, int]
    problems: list[str] = field(default_factory=list)


@dataclass
class EdgeLine:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str | None


@dataclass
class Canvas:
    tiles: list[TileBox]
    edges: list[EdgeLine]
    width: float
    height: float
    #: Validation sentences that name no tile (shown above the canvas).
    general_problems: list[str]
    tile_w: int = TILE_W
    tile_h: int = TILE_H


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _auto_layout(
    tiles: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]
) -> dict[str, tuple[float, float]]:
    """Rows by distance from the entry (breadth first), for tiles saved without a position."""
    ids = [str(t.get("id")) for t in tiles]
    children: dict[str, list[str]] = defaultdict(list)
    incoming: dict[str, int] = dict.fromkeys(ids, 0)
    for e in edges:
        src, dst = str(e.get("from")), str(e.get("to"))
        if src in incoming and dst in incoming:
            children[src].append(dst)
            incoming[dst] += 1
    depth: dict[str, int] = {}
    queue = deque(i for i in ids if incoming[i] == 0)
    for start in queue:
        depth[start] = 0
    while queue:
        node = queue.popleft()
        for child in children[node]:
            if child not in depth:
                depth[child] = depth[node] + 1
                queue.append(child)
    rows: dict[int, list[str]] = defaultdict(list)
    for i in ids:
        rows[depth.get(i, max(depth.values(), default=0) + 1)].append(i)
    return {
        tile_id: (col * (TILE_W + GAP_X), row * (TILE_H + GAP_Y))
        for row, members in rows.items()
        for col, tile_id in enumerate(members)
    }


def journey_canvas(
    tiles: Sequence[Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    counts: Mapping[str, Mapping[str, int]],
    problems: Sequence[str],
) -> Canvas:
    """Place tiles at their saved `position` ({x, y}); tiles without one are laid out by depth.
    A validation sentence naming a tile ('tile-id' in quotes) is drawn on that tile."""
    auto = _auto_layout(tiles, edges)
    boxes: list[TileBox] = []
    for tile in tiles:
        tile_id = str(tile.get("id"))
        pos = tile.get("position")
        x = _number(pos.get("x")) if isinstance(pos, dict) else None
        y = _number(pos.get("y")) if isinstance(pos, dict) else None
        if x is None or y is None:
            x, y = auto[tile_id]
        boxes.append(
            TileBox(
                tile_id,
                str(tile.get("type")),
                str(tile.get("name") or tile_id),
                x,
                y,
                counts.get(tile_id, {}),
            )
        )
    general: list[str] = []
    for sentence in problems:
        named = [b for b in boxes if re.search(rf"'{re.escape(b.id)}'", sentence)]
        for box in named:
            box.problems.append(sentence)
        if not named:
            general.append(sentence)
    if boxes:
        min_x, min_y = min(b.x for b in boxes), min(b.y for b in boxes)
        for b in boxes:
            b.x, b.y = b.x - min_x + PAD, b.y - min_y + PAD
    by_id = {b.id: b for b in boxes}
    lines = []
    for e in edges:
        src, dst = by_id.get(str(e.get("from"))), by_id.get(str(e.get("to")))
        if src is None or dst is None:
            continue
        # From the bottom middle of the source to the top middle of the target (or sideways when level).
        if dst.y > src.y + TILE_H / 2:
            x1, y1, x2, y2 = src.x + TILE_W / 2, src.y + TILE_H, dst.x + TILE_W / 2, dst.y
        elif dst.x >= src.x:
            x1, y1, x2, y2 = src.x + TILE_W, src.y + TILE_H / 2, dst.x, dst.y + TILE_H / 2
        else:
            x1, y1, x2, y2 = src.x, src.y + TILE_H / 2, dst.x + TILE_W, dst.y + TILE_H / 2
        branch = e.get("branch")
        lines.append(EdgeLine(x1, y1, x2, y2, str(branch) if branch is not None else None))
    width = max((b.x for b in boxes), default=0) + TILE_W + PAD
    height = max((b.y for b in boxes), default=0) + TILE_H + PAD
    return Canvas(boxes, lines, max(width, 300), max(height, 120), general)


@dataclass
class Bar:
    label: str
    control: bool
    y: float
    lo_x: float
    hi_x: float
    rate_x: float | None
    rate: float | None
    interval: tuple[float, float]
    chance: float | None
    exposed: int
    conversions: int


@dataclass
class Chart:
    bars: list[Bar]
    width: int
    height: int
    axis_x0: int
    axis_x1: int
    ticks: list[tuple[float, str]]


def experiment_chart(variants: Sequence[Any], labels: Mapping[str, str], width: int = 560) -> Chart:
    """One row per variant: the 95% credible interval of its conversion rate as a line, the observed
    rate as a dot, on a shared axis from 0 to a little above the highest upper bound."""
    left, right, row = 150, 30, 34
    top = 24
    highs = [float(v.conversion_rate_interval[1]) for v in variants] or [0.0]
    scale_max = max(max(highs) * 1.1, 0.01)
    span = width - left - right

    def sx(value: float) -> float:
        return left + span * min(max(value / scale_max, 0.0), 1.0)

    bars = []
    for index, v in enumerate(variants):
        lo, hi = (float(v.conversion_rate_interval[0]), float(v.conversion_rate_interval[1]))
        rate = v.conversion_rate
        bars.append(
            Bar(
                label=labels.get(v.variant_id, v.variant_id),
                control=bool(v.control),
                y=top + index * row + row / 2,
                lo_x=sx(lo),
                hi_x=sx(hi),
                rate_x=None if rate is None else sx(float(rate)),
                rate=rate,
                interval=(lo, hi),
                chance=v.chance_to_beat_control,
                exposed=v.users_exposed,
                conversions=v.conversions,
            )
        )
    ticks = [(sx(scale_max * i / 4), f"{100 * scale_max * i / 4:.1f}%") for i in range(5)]
    return Chart(bars, width, int(top + len(bars) * row + 28), left, width - right, ticks)


@dataclass
class HBar:
    label: str
    count: int
    y: float
    width: float


@dataclass
class BarChart:
    bars: list[HBar]
    width: int
    height: int
    left: int


def bar_chart(items: Sequence[tuple[str, int]], width: int = 520) -> BarChart:
    """Horizontal bars of counts on one scale (a run's recommendations by offer or by channel)."""
    left, right, row, top = 160, 70, 24, 6
    peak = max((count for _, count in items), default=0) or 1
    bars = [
        HBar(label, count, top + i * row, (width - left - right) * count / peak)
        for i, (label, count) in enumerate(items)
    ]
    return BarChart(bars, width, top + len(bars) * row + 6, left)


@dataclass
class Line:
    label: str
    points: str  # SVG polyline points
    last: float


@dataclass
class LineChart:
    lines: list[Line]
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    threshold_y: float | None
    x_labels: list[tuple[float, str]]


def history_chart(
    history: Sequence[Any], labels: Mapping[str, str], threshold: float | None, width: int = 560
) -> LineChart:
    """The chance to beat control (0-100%) of each variant over time, with the promotion threshold."""
    left, right, top, bottom = 44, width - 16, 12, 150
    height = bottom + 26
    n = len(history)

    def sx(i: int) -> float:
        return left + (right - left) * (i / (n - 1) if n > 1 else 1.0)

    def sy(p: float) -> float:
        return bottom - (bottom - top) * p

    variant_ids = list(history[-1].chance_to_beat_control) if history else []
    lines = [
        Line(
            labels.get(vid, vid),
            " ".join(
                f"{sx(i):.1f},{sy(h.chance_to_beat_control.get(vid, 0.5)):.1f}" for i, h in enumerate(history)
            ),
            history[-1].chance_to_beat_control.get(vid, 0.5),
        )
        for vid in variant_ids
    ]
    x_labels = []
    if history:
        x_labels = [
            (sx(0), history[0].at.strftime("%m-%d %H:%M")),
            (sx(n - 1), history[-1].at.strftime("%m-%d %H:%M")),
        ]
    return LineChart(
        lines, width, height, left, right, top, bottom, None if threshold is None else sy(threshold), x_labels
    )
