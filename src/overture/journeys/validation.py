"""Tile configuration rules per type, and the journey's DAG as `overture.core.dag` sees it.

Two kinds of problem, one rule for which is which: a value that is present but wrong (a unit of
"fortnights", a variant without a name) is *malformed* and refused at save with a 422 naming the
field; something missing or not yet consistent (no criteria yet, percentages adding to 90, an edge
not drawn) is *incomplete*: a draft may be saved that way, and `validate` lists it as a sentence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from overture.core.dag import Edge, Tile, structural_errors
from overture.core.schedules import ScheduleError, parse_hhmm, parse_zone

__all__ = [
    "FILTER_BRANCHES",
    "REENTRY_MODES",
    "WAIT_UNITS",
    "Problem",
    "config_problems",
    "dag_edges",
    "dag_tiles",
    "graph_errors",
    "split_variants",
    "wait_delay",
]

WAIT_UNITS: Mapping[str, timedelta] = {
    "minutes": timedelta(minutes=1),
    "hours": timedelta(hours=1),
    "days": timedelta(days=1),
    "weeks": timedelta(weeks=1),
}
MAX_WAIT = timedelta(days=3660)
REENTRY_MODES = ("never", "after_exit")
FILTER_BRANCHES = frozenset({"match", "no_match"})
_ALLOWED_KEYS: Mapping[str, frozenset[str]] = {
    "entry": frozenset({"reentry"}),
    "wait": frozenset({"duration", "unit", "until", "timezone"}),
    "filter": frozenset({"criteria"}),
    "split": frozenset({"variants"}),
    "sync": frozenset({"destination_id", "field_mapping"}),
    "exit": frozenset(),
}

#: Checks a filter tree against the parent model: (raw tree, path of the tree in the request) ->
#: None if fine, else (field path, message). Supplied by the service, which knows the model.
CriteriaCheck = Callable[[Any, str], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Problem:
    message: str
    field: str
    malformed: bool


def dag_tiles(tiles: Sequence[Mapping[str, Any]]) -> list[Tile]:
    return [
        Tile(
            id=str(tile.get("id")),
            type=str(tile.get("type")),
            entry=tile.get("type") == "entry",
            terminal=tile.get("type") == "exit",
            branches=_branches(tile),
        )
        for tile in tiles
    ]


def dag_edges(edges: Sequence[Mapping[str, Any]]) -> list[Edge]:
    return [Edge(str(e.get("from")), str(e.get("to")), e.get("branch")) for e in edges]


def graph_errors(tiles: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]) -> list[str]:
    return structural_errors(dag_tiles(tiles), dag_edges(edges))


def _branches(tile: Mapping[str, Any]) -> frozenset[str] | None:
    if tile.get("type") == "filter":
        return FILTER_BRANCHES
    if tile.get("type") == "split":
        variants = (tile.get("config") or {}).get("variants")
        if not isinstance(variants, list):
            return frozenset()
        return frozenset(
            v["name"] for v in variants if isinstance(v, Mapping) and isinstance(v.get("name"), str)
        )
    return None


def split_variants(config: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(name, basis points) of a valid split config, in order; basis points add up to 10,000."""
    return [(v["name"], round(float(v["percentage"]) * 100)) for v in config["variants"]]


def wait_delay(config: Mapping[str, Any]) -> timedelta | None:
    """The fixed delay of a duration wait; None for an `until` wait."""
    if "until" in config:
        return None
    return int(config["duration"]) * WAIT_UNITS[config["unit"]]


def config_problems(
    tiles: Sequence[Mapping[str, Any]],
    *,
    columns: Collection[str] | None,
    check_criteria: CriteriaCheck | None,
) -> list[Problem]:
    """Every configuration problem of every tile, in tile order. `columns` (the parent model's) and
    `check_criteria` are None when the model is unknown; those checks are then skipped."""
    problems: list[Problem] = []
    for index, tile in enumerate(tiles):
        kind = str(tile.get("type"))
        config = tile.get("config") or {}
        checker = _CHECKERS_BY_TYPE.get(kind)
        if checker is None:
            continue
        at = _Tile(str(tile.get("id")), kind, f"tiles[{index}].config", problems)
        if not isinstance(config, Mapping):
            at.malformed("", "config must be an object")
            continue
        for key in sorted(set(config) - _ALLOWED_KEYS[kind]):
            at.malformed(key, f"unknown key '{key}' for a {kind} tile")
        checker(at, config, columns, check_criteria)
    return problems


@dataclass
class _Tile:
    """Collects problems for one tile, phrased the same way everywhere."""

    id: str
    type: str
    base: str
    problems: list[Problem]

    def _field(self, key: str) -> str:
        return f"{self.base}.{key}" if key else self.base

    def malformed(self, key: str, message: str) -> None:
        self.problems.append(Problem(f"Tile '{self.id}' ({self.type}): {message}", self._field(key), True))

    def incomplete(self, key: str, message: str) -> None:
        self.problems.append(Problem(f"Tile '{self.id}' ({self.type}) {message}", self._field(key), False))


def _entry(at: _Tile, config: Mapping[str, Any], _c: Any, _k: Any) -> None:
    reentry = config.get("reentry", "never")
    if reentry not in REENTRY_MODES:
        at.malformed("reentry", f"reentry must be one of {', '.join(REENTRY_MODES)}")


def _wait(at: _Tile, config: Mapping[str, Any], _c: Any, _k: Any) -> None:
    has_duration = "duration" in config or "unit" in config
    if "until" in config:
        if has_duration:
            at.malformed("until", "give either duration and unit, or until, not both")
        for key, parse, default in (("until", parse_hhmm, None), ("timezone", parse_zone, "UTC")):
            try:
                parse(config.get(key, default), key)
            except ScheduleError as exc:
                at.malformed(key, str(exc))
        return
    if "timezone" in config:
        at.malformed("timezone", "timezone applies only to an until wait")
    if not has_duration:
        at.incomplete("", "needs a duration and unit, or an until time")
        return
    duration, unit = config.get("duration"), config.get("unit")
    if duration is None:
        at.incomplete("duration", "needs a duration")
    elif isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
        at.malformed("duration", "duration must be a positive whole number")
    if unit is None:
        at.incomplete("unit", f"needs a unit ({', '.join(WAIT_UNITS)})")
    elif unit not in WAIT_UNITS:
        at.malformed("unit", f"unit must be one of {', '.join(WAIT_UNITS)}")
    if (
        isinstance(duration, int)
        and not isinstance(duration, bool)
        and isinstance(unit, str)
        and unit in WAIT_UNITS
        and duration > MAX_WAIT // WAIT_UNITS[unit]  # not duration * unit: a timedelta overflows
    ):
        at.malformed("duration", "a wait may last at most 10 years")


def _filter(at: _Tile, config: Mapping[str, Any], _c: Any, check: CriteriaCheck | None) -> None:
    if "criteria" not in config:
        at.incomplete("criteria", "needs criteria")
        return
    if check is not None:
        problem = check(config["criteria"], f"{at.base}.criteria")
        if problem is not None:
            field, message = problem
            at.problems.append(Problem(f"Tile '{at.id}' (filter) criteria: {message}", field, True))


def _split(at: _Tile, config: Mapping[str, Any], _c: Any, _k: Any) -> None:
    variants = config.get("variants")
    if variants is None:
        at.incomplete("variants", "needs variants")
        return
    if not isinstance(variants, list):
        at.malformed("variants", "variants must be a list of {name, percentage}")
        return
    names: set[str] = set()
    total = 0
    well_formed = True
    for i, variant in enumerate(variants):
        key = f"variants[{i}]"
        if not isinstance(variant, Mapping):
            at.malformed(key, "each variant must be an object with name and percentage")
            well_formed = False
            continue
        extra = sorted(set(variant) - {"name", "percentage"})
        if extra:
            at.malformed(f"{key}.{extra[0]}", f"unknown key '{extra[0]}' in a variant")
        name, pct = variant.get("name"), variant.get("percentage")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            at.malformed(f"{key}.name", "each variant needs a name (1-100 characters)")
            well_formed = False
        elif name in names:
            at.malformed(f"{key}.name", f"variant name '{name}' is used twice")
        else:
            names.add(name)
        if (
            isinstance(pct, bool)
            or not isinstance(pct, int | float)
            or not math.isfinite(pct)
            or not 0 < pct <= 100
        ):
            at.malformed(f"{key}.percentage", "percentage must be a number above 0 and at most 100")
            well_formed = False
        elif abs(pct * 100 - round(pct * 100)) > 1e-6:
            at.malformed(f"{key}.percentage", "percentage may have at most two decimals")
            well_formed = False
        else:
            total += round(pct * 100)
    if not well_formed:
        return
    if len(variants) < 2:
        at.incomplete("variants", "needs at least two variants")
    elif total != 10_000:
        at.incomplete("variants", f"variant percentages add up to {total / 100:g}, not 100")


def _sync(at: _Tile, config: Mapping[str, Any], columns: Collection[str] | None, _k: Any) -> None:
    destination = config.get("destination_id")
    if destination is None:
        at.incomplete("destination_id", "needs a destination_id")
    elif not isinstance(destination, str) or not destination:
        at.malformed("destination_id", "destination_id must be a string")
    mapping = config.get("field_mapping")
    if mapping is None or mapping == []:
        at.incomplete("field_mapping", "needs a field_mapping (at least one {from, to})")
        return
    if not isinstance(mapping, list):
        at.malformed("field_mapping", "field_mapping must be a list of {from, to}")
        return
    targets: set[str] = set()
    for i, item in enumerate(mapping):
        key = f"field_mapping[{i}]"
        if not isinstance(item, Mapping) or set(item) != {"from", "to"}:
            at.malformed(key, "each field_mapping entry must be exactly {from, to}")
            continue
        source, target = item["from"], item["to"]
        if not isinstance(source, str) or not source:
            at.malformed(f"{key}.from", "from must name a column of the parent model")
        elif columns is not None and source not in columns:
            at.malformed(f"{key}.from", f"'{source}' is not a column of the parent model")
        if not isinstance(target, str) or not target or len(target) > 200:
            at.malformed(f"{key}.to", "to must be a key name (1-200 characters)")
        elif target in targets:
            at.malformed(f"{key}.to", f"'{target}' is mapped twice")
        else:
            targets.add(target)


def _exit(at: _Tile, config: Mapping[str, Any], _c: Any, _k: Any) -> None:
    return None


_CHECKERS_BY_TYPE: Mapping[str, Callable[[_Tile, Mapping[str, Any], Any, Any], None]] = {
    "entry": _entry,
    "wait": _wait,
    "filter": _filter,
    "split": _split,
    "sync": _sync,
    "exit": _exit,
}
