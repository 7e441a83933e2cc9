"""Segment references (`{"segment": "<id>"}`): find them, and expand them into the referenced trees.

Both compilers expand before compiling, so a reference means exactly what the referenced segment's
filter means, in SQL and in the predicate alike. A reference that leads back to itself is refused."""

from __future__ import annotations

from collections.abc import Callable

from .errors import FilterError
from .model import All, AnyOf, Node, Not, SegmentRef
from .walk import walk

__all__ = ["MAX_EXPANDED_NODES", "Resolver", "expand", "segments_of"]

#: A resolver gives the parsed tree of a segment id, or raises LookupError with a message to show.
Resolver = Callable[[str], Node]
#: Expansion copies trees; this bounds what a chain of references may grow to.
MAX_EXPANDED_NODES = 5_000


def segments_of(node: Node) -> frozenset[str]:
    """The segment ids a tree refers to directly."""
    return frozenset(n.segment for n in walk(node) if isinstance(n, SegmentRef))


def expand(node: Node, resolve: Resolver | None) -> Node:
    """`node` with every segment reference replaced by the referenced tree (itself expanded). A
    reference to an unknown segment, a cycle (a segment reaching itself through references) or an
    expansion past MAX_EXPANDED_NODES raises FilterError at the reference's path."""
    if not segments_of(node):
        return node
    return _Expander(resolve).expand(node, ())


class _Expander:
    def __init__(self, resolve: Resolver | None) -> None:
        self.resolve = resolve
        self.done: dict[str, Node] = {}
        self.size = 0

    def expand(self, node: Node, stack: tuple[str, ...]) -> Node:
        self.size += 1
        if self.size > MAX_EXPANDED_NODES:
            raise FilterError(node.path, f"segment references expand to more than {MAX_EXPANDED_NODES} nodes")
        if isinstance(node, All | AnyOf):
            return type(node)(tuple(self.expand(c, stack) for c in node.children), path=node.path)
        if isinstance(node, Not):
            return Not(self.expand(node.child, stack), path=node.path)
        if not isinstance(node, SegmentRef):
            return node
        target = node.segment
        if target in stack:
            chain = " -> ".join((*stack[stack.index(target) :], target))
            raise FilterError(f"{node.path}.segment", f"segment references form a cycle ({chain})")
        cached = self.done.get(target)
        if cached is not None:
            return cached
        if self.resolve is None:
            raise FilterError(f"{node.path}.segment", "segment conditions need a segment resolver here")
        try:
            tree = self.resolve(target)
        except LookupError as exc:
            message = exc.args[0] if exc.args else f"segment {target!r} not found"
            raise FilterError(f"{node.path}.segment", str(message)) from None
        expanded = self.expand(tree, (*stack, target))
        self.done[target] = expanded
        return expanded
