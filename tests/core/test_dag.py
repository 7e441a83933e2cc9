"""overture.core.dag: structural sentences for tile DAGs, and cycle detection held against references."""

from __future__ import annotations

import graphlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overture.core.dag import (
    CycleError,
    Edge,
    Tile,
    find_cycles,
    structural_errors,
    topological_order,
)

ENTRY = Tile("tile-1", "entry", entry=True)
EXIT = Tile("tile-9", "exit", terminal=True)


def _wait(tile_id: str) -> Tile:
    return Tile(tile_id, "wait")


def _filter(tile_id: str) -> Tile:
    return Tile(tile_id, "filter", branches=frozenset({"match", "no_match"}))


# -- reference implementations -------------------------------------------------------------------


def _reach(nodes: list[int], edges: set[tuple[int, int]]) -> dict[int, set[int]]:
    """Transitive closure by Floyd-Warshall: reach[a] = nodes reachable from a in >= 1 step."""
    reach = {n: {t for s, t in edges if s == n} for n in nodes}
    for k in nodes:
        for i in nodes:
            if k in reach[i]:
                reach[i] |= reach[k]
    return reach


def _graphlib_acyclic(nodes: list[int], edges: set[tuple[int, int]]) -> bool:
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for n in nodes:
        sorter.add(n)
    for s, t in edges:
        sorter.add(t, s)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        return False
    return True


graphs = st.integers(min_value=0, max_value=9).flatmap(
    lambda n: st.tuples(
        st.just(list(range(n))),
        st.sets(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(0, max(n - 1, 0))), max_size=25)
        if n
        else st.just(set()),
    )
)


@settings(max_examples=400, deadline=None)
@given(graphs)
def test_find_cycles__random_graph__agrees_with_closure_and_graphlib(graph: tuple[list[int], set]) -> None:
    nodes, edges = graph
    names = [f"t{n}" for n in nodes]
    named_edges = [(f"t{s}", f"t{t}") for s, t in sorted(edges)]
    cycles = find_cycles(names, named_edges)
    reach = _reach(nodes, edges)
    on_cycle = {n for n in nodes if n in reach[n]}

    assert (not cycles) == (not on_cycle) == _graphlib_acyclic(nodes, edges)
    # Every reported cycle is real: closed, simple, made of existing edges.
    edge_set = set(named_edges)
    for cycle in cycles:
        assert cycle[0] == cycle[-1]
        assert len(set(cycle[:-1])) == len(cycle) - 1
        assert all(pair in edge_set for pair in itertools.pairwise(cycle))
    # One cycle per strongly connected component that holds one (the closure's equivalence classes).
    components = {frozenset({m for m in on_cycle if m in reach[n] and n in reach[m]}) for n in on_cycle}
    assert len(cycles) == len(components)
    reported = [frozenset(int(name[1:]) for name in cycle) for cycle in cycles]
    for component in components:
        assert sum(1 for r in reported if r <= component) == 1


@settings(max_examples=300, deadline=None)
@given(graphs)
def test_topological_order__random_graph__respects_edges_or_names_a_cycle(
    graph: tuple[list[int], set],
) -> None:
    nodes, edges = graph
    names = [f"t{n}" for n in nodes]
    named_edges = [(f"t{s}", f"t{t}") for s, t in sorted(edges)]
    if _graphlib_acyclic(nodes, edges):
        order = topological_order(names, named_edges)
        assert sorted(order) == sorted(names)
        position = {n: i for i, n in enumerate(order)}
        assert all(position[s] < position[t] for s, t in named_edges)
    else:
        with pytest.raises(CycleError) as raised:
            topological_order(names, named_edges)
        cycle = raised.value.cycle
        assert cycle[0] == cycle[-1]
        assert all(pair in set(named_edges) for pair in itertools.pairwise(cycle))


def test_topological_order__ties__keep_listed_order() -> None:
    assert topological_order(["c", "a", "b"], []) == ["c", "a", "b"]
    assert topological_order(["a", "b", "c", "d"], [("a", "d"), ("a", "b")]) == ["a", "b", "c", "d"]


def test_find_cycles__long_chain__no_recursion_limit() -> None:
    nodes = [f"n{i}" for i in range(5000)]
    edges = list(itertools.pairwise(nodes))
    assert find_cycles(nodes, edges) == []
    assert topological_order(nodes, edges) == nodes
    cycles = find_cycles(nodes, [*edges, ("n4999", "n0")])
    assert len(cycles) == 1 and len(cycles[0]) == 5001


def test_find_cycles__self_loop__named() -> None:
    assert find_cycles(["a", "b"], [("a", "b"), ("b", "b")]) == [["b", "b"]]


def test_find_cycles__shortest_cycle_through_first_tile() -> None:
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("b", "a")]
    assert find_cycles(["a", "b", "c"], edges) == [["a", "b", "a"]]


# -- structural sentences ------------------------------------------------------------------------


def test_structural_errors__sound_chain__none() -> None:
    tiles = [ENTRY, _wait("tile-2"), EXIT]
    edges = [Edge("tile-1", "tile-2"), Edge("tile-2", "tile-9")]
    assert structural_errors(tiles, edges) == []


def test_structural_errors__seed_example__both_seed_sentences() -> None:
    # Given two entry tiles and an orphan wait tile, as the seed's error example shows
    tiles = [ENTRY, Tile("tile-2", "entry", entry=True), _wait("tile-5")]
    errors = structural_errors(tiles, [])
    assert errors == [
        "Orchestration must have exactly one entry tile",
        "Tile 'tile-5' has no incoming edges and is not an entry tile",
    ]


def test_structural_errors__no_entry__exactly_one_message() -> None:
    assert structural_errors([], []) == ["Orchestration must have exactly one entry tile"]


def test_structural_errors__cycle__names_its_tiles() -> None:
    tiles = [ENTRY, _wait("tile-2"), _wait("tile-3")]
    edges = [Edge("tile-1", "tile-2"), Edge("tile-2", "tile-3"), Edge("tile-3", "tile-2")]
    errors = structural_errors(tiles, edges)
    assert "Orchestration has a cycle: tile-2 -> tile-3 -> tile-2" in errors
    assert "Tile 'tile-2' has 2 outgoing edges; wait tiles may have at most one" not in errors


def test_structural_errors__unknown_tile__named_once_and_edge_ignored() -> None:
    tiles = [ENTRY, _wait("tile-2")]
    edges = [Edge("tile-1", "tile-2"), Edge("tile-2", "ghost"), Edge("ghost", "ghost")]
    assert structural_errors(tiles, edges) == [
        "Edge from 'tile-2' to 'ghost' references unknown tile 'ghost'",
        "Edge from 'ghost' to 'ghost' references unknown tile 'ghost'",
    ]


def test_structural_errors__duplicates__named() -> None:
    tiles = [ENTRY, _wait("tile-2"), _wait("tile-2")]
    edges = [Edge("tile-1", "tile-2"), Edge("tile-1", "tile-2")]
    assert structural_errors(tiles, edges) == [
        "Tile id 'tile-2' is used by more than one tile",
        "Edge from 'tile-1' to 'tile-2' is listed more than once",
    ]


def test_structural_errors__entry_with_incoming_and_exit_with_outgoing() -> None:
    tiles = [ENTRY, EXIT]
    edges = [Edge("tile-1", "tile-9"), Edge("tile-9", "tile-1")]
    errors = structural_errors(tiles, edges)
    assert "Entry tile 'tile-1' must not have incoming edges" in errors
    assert "Exit tile 'tile-9' must not have outgoing edges" in errors
    assert "Orchestration has a cycle: tile-1 -> tile-9 -> tile-1" in errors


def test_structural_errors__unbranched_tile__one_unlabelled_out_edge() -> None:
    tiles = [ENTRY, _wait("tile-2"), _wait("tile-3")]
    edges = [Edge("tile-1", "tile-2", "match"), Edge("tile-1", "tile-3")]
    assert structural_errors(tiles, edges) == [
        "Edge from 'tile-1' to 'tile-2' has branch 'match' but entry tile 'tile-1' does not branch",
        "Tile 'tile-1' has 2 outgoing edges; entry tiles may have at most one",
    ]


def test_structural_errors__branches__complete_unique_and_known() -> None:
    tiles = [ENTRY, _filter("tile-2"), _wait("tile-3"), _wait("tile-4"), _wait("tile-5"), _wait("tile-6")]
    edges = [
        Edge("tile-1", "tile-2"),
        Edge("tile-2", "tile-3", "match"),
        Edge("tile-2", "tile-4", "match"),
        Edge("tile-2", "tile-5", "maybe"),
        Edge("tile-2", "tile-6"),
    ]
    assert structural_errors(tiles, edges) == [
        "Edge from 'tile-2' to 'tile-5' has unknown branch 'maybe' (expected one of: match, no_match)",
        "Edge from 'tile-2' to 'tile-6' needs a branch (one of: match, no_match)",
        "Tile 'tile-2' has more than one edge for branch 'match'",
        "Tile 'tile-2' has no edge for branch 'no_match'",
    ]


def test_structural_errors__split_variants__each_labelled_once() -> None:
    split = Tile("tile-2", "split", branches=frozenset({"A", "B"}))
    tiles = [ENTRY, split, _wait("tile-3"), _wait("tile-4")]
    edges = [Edge("tile-1", "tile-2"), Edge("tile-2", "tile-3", "A"), Edge("tile-2", "tile-4", "B")]
    assert structural_errors(tiles, edges) == []
