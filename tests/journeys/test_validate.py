"""POST …/validate: {"valid", "errors"} with the seed's sentences, for every rule."""

from __future__ import annotations

from typing import Any

import pytest

from tests.journeys.conftest import PRO, Api, create_customers_table, edge, tile
from tests.journeys.test_definition import seed_body


@pytest.fixture
def model_id(api: Api) -> str:
    return api.model(create_customers_table(api.ctx, 10))


def _validate(api: Api, model_id: str, **definition: Any) -> dict[str, Any]:
    journey = api.create({"name": "v", "parent_model_id": model_id, **definition})
    return dict(api.post(f"/{journey['id']}/validate").json())


ENTRY = {"id": "tile-1", "type": "entry"}
EXIT = {"id": "tile-9", "type": "exit"}
WAIT = {"id": "tile-2", "type": "wait", "config": {"duration": 1, "unit": "hours"}}


def test_validate__sound_journey__valid(api: Api, model_id: str) -> None:
    destination = api.webhook("http://127.0.0.1:9/hook")
    result = _validate(
        api,
        model_id,
        **{k: v for k, v in seed_body(model_id, destination).items() if k in ("tiles", "edges")},
    )
    assert result == {"valid": True, "errors": []}


def test_validate__seed_error_example__both_sentences(api: Api, model_id: str) -> None:
    tiles = [ENTRY, {"id": "tile-4", "type": "entry"}, {"id": "tile-5", "type": "exit"}]
    result = _validate(api, model_id, tiles=tiles, edges=[])
    assert result == {
        "valid": False,
        "errors": [
            "Orchestration must have exactly one entry tile",
            "Tile 'tile-5' has no incoming edges and is not an entry tile",
        ],
    }


def test_validate__empty_journey__needs_an_entry(api: Api, model_id: str) -> None:
    assert _validate(api, model_id)["errors"] == ["Orchestration must have exactly one entry tile"]


def test_validate__cycle__names_the_tiles_on_it(api: Api, model_id: str) -> None:
    tiles = [ENTRY, WAIT, {"id": "tile-3", "type": "wait", "config": {"duration": 1, "unit": "days"}}]
    edges = [
        {"from": "tile-1", "to": "tile-2"},
        {"from": "tile-2", "to": "tile-3"},
        {"from": "tile-3", "to": "tile-2"},
    ]
    errors = _validate(api, model_id, tiles=tiles, edges=edges)["errors"]
    assert "Orchestration has a cycle: tile-2 -> tile-3 -> tile-2" in errors


def test_validate__edge_to_unknown_tile__named(api: Api, model_id: str) -> None:
    edges = [{"from": "tile-1", "to": "tile-9"}, {"from": "tile-9", "to": "tile-7"}]
    errors = _validate(api, model_id, tiles=[ENTRY, EXIT], edges=edges)["errors"]
    assert errors == ["Edge from 'tile-9' to 'tile-7' references unknown tile 'tile-7'"]


def test_validate__branches__complete_and_unique(api: Api, model_id: str) -> None:
    tiles = [
        ENTRY,
        tile("f", "filter", criteria=PRO),
        {
            "id": "s",
            "type": "split",
            "config": {"variants": [{"name": "A", "percentage": 50}, {"name": "B", "percentage": 50}]},
        },
        {"id": "x1", "type": "exit"},
        {"id": "x2", "type": "exit"},
    ]
    edges = [
        edge("tile-1", "f"),
        edge("f", "s", "match"),
        edge("f", "x1", "match"),
        edge("s", "x1", "A"),
        edge("s", "x2", "C"),
    ]
    assert _validate(api, model_id, tiles=tiles, edges=edges)["errors"] == [
        "Tile 'f' has more than one edge for branch 'match'",
        "Tile 'f' has no edge for branch 'no_match'",
        "Edge from 's' to 'x2' has unknown branch 'C' (expected one of: A, B)",
        "Tile 's' has no edge for branch 'B'",
    ]


@pytest.mark.parametrize(
    ("tile", "message"),
    [
        ({"type": "wait"}, "Tile 'tile-2' (wait) needs a duration and unit, or an until time"),
        (
            {"type": "wait", "config": {"duration": 2}},
            "Tile 'tile-2' (wait) needs a unit (minutes, hours, days, weeks)",
        ),
        ({"type": "filter"}, "Tile 'tile-2' (filter) needs criteria"),
        ({"type": "split"}, "Tile 'tile-2' (split) needs variants"),
        (
            {"type": "split", "config": {"variants": [{"name": "A", "percentage": 60}]}},
            "Tile 'tile-2' (split) needs at least two variants",
        ),
        (
            {
                "type": "split",
                "config": {"variants": [{"name": "A", "percentage": 60}, {"name": "B", "percentage": 30}]},
            },
            "Tile 'tile-2' (split) variant percentages add up to 90, not 100",
        ),
        (
            {"type": "sync", "config": {"field_mapping": [{"from": "email", "to": "email"}]}},
            "Tile 'tile-2' (sync) needs a destination_id",
        ),
        (
            {"type": "sync", "config": {"destination_id": "d"}},
            "Tile 'tile-2' (sync) needs a field_mapping (at least one {from, to})",
        ),
        (
            {
                "type": "sync",
                "config": {
                    "destination_id": "no-such-destination",
                    "field_mapping": [{"from": "email", "to": "e"}],
                },
            },
            "Tile 'tile-2' (sync) sends to unknown destination 'no-such-destination'",
        ),
    ],
)
def test_validate__tile_config__required_per_type(
    api: Api, model_id: str, tile: dict[str, Any], message: str
) -> None:
    tiles = [ENTRY, {"id": "tile-2", **tile}]
    errors = _validate(api, model_id, tiles=tiles, edges=[{"from": "tile-1", "to": "tile-2"}])["errors"]
    assert message in errors, errors


def test_validate__other_workspaces_destination__unknown(
    api: Api, model_id: str, client: Any, ctx: Any, other_workspace: Any
) -> None:
    theirs = Api(client, ctx, other_workspace).webhook("http://127.0.0.1:9/x")
    tiles = [
        ENTRY,
        {
            "id": "tile-2",
            "type": "sync",
            "config": {"destination_id": theirs, "field_mapping": [{"from": "email", "to": "e"}]},
        },
    ]
    errors = _validate(api, model_id, tiles=tiles, edges=[{"from": "tile-1", "to": "tile-2"}])["errors"]
    assert errors == [f"Tile 'tile-2' (sync) sends to unknown destination '{theirs}'"]


def test_validate__column_dropped_after_save__reported(api: Api) -> None:
    from tests.journeys.conftest import execute

    table = create_customers_table(api.ctx, 5)
    model_id = api.model(table)
    journey = api.create(
        {
            "name": "v",
            "parent_model_id": model_id,
            "entry_criteria": {"field": "country", "operator": "is", "value": "DE"},
            "tiles": [ENTRY],
        }
    )
    execute(api.ctx, f"ALTER TABLE {table} DROP COLUMN country")
    errors = api.post(f"/{journey['id']}/validate").json()["errors"]
    assert len(errors) == 1 and errors[0].startswith("Entry criteria: ") and "country" in errors[0]
