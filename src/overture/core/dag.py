"""Structural checks over tile DAGs (journeys): one entry, no cycles, edges to real tiles, branch labels.

Pure and typed: the caller describes each tile by the role it plays in the graph (entry, terminal,
which branch labels its out-edges must carry) and gets back human sentences, in a stable order, that
a UI can show as they are. Config checks that need a type's vocabulary or a database live with the
surface; everything about the shape of the graph lives here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "CycleError",
    "Edge",
    "Tile",
    "find_cycles",
    "format_cycle",
    "structural_errors",
    "successors",
    "topological_order",
]


@dataclass(frozen=True)
class Tile:
    """A node as the graph checks see it.

    `branches` is None for a tile whose single out-edge carries no label; otherwise the exact set of
    labels its out-edges must carry, each once (a filter's `match`/`no_match`, a split's variants).
    """

    id: str
    type: str
    entry: bool = False
    terminal: bool = False
    branches: frozenset[str] | None = None


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    branch: str | None = None


class CycleError(ValueError):
    """The graph has a cycle; `cycle` lists its tiles with the first repeated at the end."""

    def __init__(self, cycle: Sequence[str]) -> None:
        super().__init__(f"cycle: {format_cycle(cycle)}")
        self.cycle = list(cycle)


def format_cycle(cycle: Sequence[str]) -> str:
    return " -> ".join(cycle)


def successors(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Adjacency in insertion order; edges naming unknown nodes are ignored (reported elsewhere)."""
    adjacency: dict[str, list[str]] = {node: [] for node in nodes}
    for source, target in edges:
        if source in adjacency and target in adjacency:
            adjacency[source].append(target)
    return adjacency


def _strongly_connected(adjacency: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a long chain of tiles must not hit the recursion limit).
    Components come out in reverse topological order; members in discovery order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in adjacency:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = adjacency[node]
            descended = False
            while position < len(children):
                child = children[position]
                position += 1
                if child not in index:
                    work.append((node, position))
                    work.append((child, 0))
                    descended = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if descended:
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component[::-1])
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _cycle_in(component: Sequence[str], adjacency: Mapping[str, Sequence[str]]) -> list[str]:
    """One concrete cycle through the first node of a strongly connected component: a shortest path
    back to the start (breadth-first inside the component), so the message is as short as it can be."""
    start = component[0]
    inside = set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in adjacency[node]:
                if child not in inside:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*path[::-1], start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError("a strongly connected component without a cycle")  # pragma: no cover


def find_cycles(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one, each as `[a, b, ..., a]`.

    Every cycle of the graph lies inside one of these components, so an empty answer means acyclic;
    ordered by the position of each cycle's first tile in `nodes`."""
    adjacency = successors(nodes, edges)
    order = {node: i for i, node in enumerate(adjacency)}
    cycles: list[list[str]] = []
    for component in _strongly_connected(adjacency):
        component = sorted(component, key=order.__getitem__)
        node = component[0]
        if len(component) > 1 or node in adjacency[node]:
            cycles.append(_cycle_in(component, adjacency))
    return sorted(cycles, key=lambda cycle: order[cycle[0]])


def topological_order(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm, stable: among ready nodes, the one listed first goes first.
    Raises CycleError naming a cycle when there is no such order."""
    adjacency = successors(nodes, edges)
    position = {node: i for i, node in enumerate(adjacency)}
    indegree = dict.fromkeys(adjacency, 0)
    for children in adjacency.values():
        for child in children:
            indegree[child] += 1
    ready = sorted((n for n, d in indegree.items() if d == 0), key=position.__getitem__, reverse=True)
    order: list[str] = []
    while ready:
        node = ready.pop()
        order.append(node)
        released = False
        for child in adjacency[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
                released = True
        if released:
            ready.sort(key=position.__getitem__, reverse=True)
    if len(order) < len(adjacency):
        raise CycleError(find_cycles(adjacency, ((s, t) for s, ts in adjacency.items() for t in ts))[0])
    return order


def _labels(labels: Iterable[str]) -> str:
    return ", ".join(sorted(labels))


def structural_errors(tiles: Sequence[Tile], edges: Sequence[Edge]) -> list[str]:
    """Every structural problem of the graph as a sentence; empty when the DAG is sound.

    Checks: tile ids unique; exactly one entry tile, with no incoming edges; every edge between
    existing tiles and listed once; every other tile reachable by an incoming edge; terminal tiles
    without outgoing edges; a tile without branches has at most one unlabelled out-edge; a branching
    tile has exactly one out-edge per label and no other; no cycles (each named)."""
    errors: list[str] = []
    by_id: dict[str, Tile] = {}
    for tile in tiles:
        if tile.id in by_id:
            errors.append(f"Tile id '{tile.id}' is used by more than one tile")
        else:
            by_id[tile.id] = tile

    if sum(1 for tile in by_id.values() if tile.entry) != 1:
        errors.append("Orchestration must have exactly one entry tile")

    valid_edges: list[Edge] = []
    seen_edges: set[Edge] = set()
    for edge in edges:
        unknown = [end for end in (edge.source, edge.target) if end not in by_id]
        for end in dict.fromkeys(unknown):
            errors.append(f"Edge from '{edge.source}' to '{edge.target}' references unknown tile '{end}'")
        if unknown:
            continue
        if edge in seen_edges:
            errors.append(f"Edge from '{edge.source}' to '{edge.target}' is listed more than once")
            continue
        seen_edges.add(edge)
        valid_edges.append(edge)

    incoming: dict[str, int] = dict.fromkeys(by_id, 0)
    outgoing: dict[str, list[Edge]] = {tile_id: [] for tile_id in by_id}
    for edge in valid_edges:
        incoming[edge.target] += 1
        outgoing[edge.source].append(edge)

    for tile in by_id.values():
        if tile.entry and incoming[tile.id]:
            errors.append(f"Entry tile '{tile.id}' must not have incoming edges")
        if not tile.entry and not incoming[tile.id]:
            errors.append(f"Tile '{tile.id}' has no incoming edges and is not an entry tile")
        out = outgoing[tile.id]
        if tile.terminal:
            if out:
                errors.append(f"{tile.type.capitalize()} tile '{tile.id}' must not have outgoing edges")
            continue
        if tile.branches is None:
            errors.extend(_unbranched_errors(tile, out))
        else:
            errors.extend(_branch_errors(tile, tile.branches, out))

    for cycle in find_cycles(by_id, ((e.source, e.target) for e in valid_edges)):
        errors.append(f"Orchestration has a cycle: {format_cycle(cycle)}")
    return errors


def _unbranched_errors(tile: Tile, out: Sequence[Edge]) -> list[str]:
    errors = [
        f"Edge from '{tile.id}' to '{edge.target}' has branch '{edge.branch}' "
        f"but {tile.type} tile '{tile.id}' does not branch"
        for edge in out
        if edge.branch is not None
    ]
    if len(out) > 1:
        errors.append(
            f"Tile '{tile.id}' has {len(out)} outgoing edges; {tile.type} tiles may have at most one"
        )
    return errors


def _branch_errors(tile: Tile, branches: frozenset[str], out: Sequence[Edge]) -> list[str]:
    errors: list[str] = []
    counts: dict[str, int] = {}
    for edge in out:
        if edge.branch is None:
            errors.append(
                f"Edge from '{tile.id}' to '{edge.target}' needs a branch (one of: {_labels(branches)})"
            )
        elif edge.branch not in branches:
            errors.append(
                f"Edge from '{tile.id}' to '{edge.target}' has unknown branch '{edge.branch}' "
                f"(expected one of: {_labels(branches)})"
            )
        else:
            counts[edge.branch] = counts.get(edge.branch, 0) + 1
    for label in sorted(branches):
        if counts.get(label, 0) == 0:
            errors.append(f"Tile '{tile.id}' has no edge for branch '{label}'")
        elif counts[label] > 1:
            errors.append(f"Tile '{tile.id}' has more than one edge for branch '{label}'")
    return errors
