"""The memory plan of a graph for code that runs it one batch item at a time.

Every node's value lives in a buffer: the caller's input and output buffers, or a slice of one
arena.  A node of op ``identity``/``reshape`` is an alias (its input's buffer); an element-wise
node, a normalization and a merge run in place when the operand they overwrite is dead after
them (its last reader has run, and it is no graph output); every other node gets a new buffer.
A buffer is live from the step that first writes it to the last step that reads a value it
holds.  Offsets are assigned greedily, largest buffer first, at the lowest offset that overlaps
no buffer live at the same time (:func:`plan`); :attr:`Plan.lower_bound` is the most floats
live at once in this order, which no placement can beat.

Sizes are in floats (4 bytes); each arena slice is rounded up to :data:`ALIGN` floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .graph import ALIASES, MERGES, Graph, Node

ALIGN = 4
"""Arena slices start on multiples of this many floats (16 bytes)."""
IN_PLACE = (
    "activation",
    "relu",
    "leaky_relu",
    "elu",
    "prelu",
    "batch_norm",
    "layer_norm",
    "rescale",
    "softmax",
)
"""Ops that may write their output over their (single) input."""


@dataclass
class Buffer:
    """Memory for one or more values (an alias or an in-place op shares its operand's)."""

    name: str  # the node that first writes it (or the graph input)
    size: int  # floats of one item
    first: int  # the step that writes it first (-1: a graph input, there before step 0)
    last: int  # the last step that reads a value in it
    place: str = "arena"  # "arena", "input" or "output"
    index: int = 0  # which input or output, for the caller's buffers
    offset: int = 0  # floats from the start of the arena

    @property
    def slot(self) -> int:
        """The floats it takes in the arena (``size`` rounded up to :data:`ALIGN`)."""
        return -(-self.size // ALIGN) * ALIGN


@dataclass
class Plan:
    """Where every node's value lives while the graph runs one item.

    ``steps`` are the nodes that compute (not inputs, not aliases), in order; ``buffer_of``
    maps every node name to its buffer; ``copies`` lists ``(node, output index)`` for graph
    outputs that must be copied into the caller's output at the end (an output that is also a
    graph input, or two outputs holding the same value).
    """

    graph: Graph
    steps: list[Node]
    buffer_of: dict[str, Buffer]
    buffers: list[Buffer]
    in_place: set[str] = field(default_factory=set)
    copies: list[tuple[str, int]] = field(default_factory=list)

    @property
    def arena(self) -> int:
        """Floats of the arena (one item)."""
        return max((b.offset + b.slot for b in self.arena_buffers), default=0)

    @property
    def arena_buffers(self) -> list[Buffer]:
        return [b for b in self.buffers if b.place == "arena"]

    @property
    def lower_bound(self) -> int:
        """The most arena floats live at once in this order: no placement needs fewer."""
        best = 0
        for step in range(len(self.steps)):
            best = max(best, sum(b.slot for b in self.arena_buffers if b.first <= step <= b.last))
        return best

    @property
    def total(self) -> int:
        """The floats of every intermediate value if each had its own buffer (aliases and the
        caller's inputs and outputs excluded)."""
        outs = set(self.graph.outputs)
        return sum(n.size for n in self.steps if n.name not in outs)

    def step_index(self, name: str) -> int:
        for i, node in enumerate(self.steps):
            if node.name == name:
                return i
        raise KeyError(name)

    def check(self) -> None:
        """Raise ``AssertionError`` if two arena buffers live at the same time overlap."""
        arena = self.arena_buffers
        for i, a in enumerate(arena):
            for b in arena[i + 1 :]:
                live = a.first <= b.last and b.first <= a.last
                apart = a.offset + a.slot <= b.offset or b.offset + b.slot <= a.offset
                assert not live or apart, f"buffers {a.name!r} and {b.name!r} overlap"


def _last_reads(graph: Graph, step_of: dict[str, int]) -> dict[str, int]:
    """Per node, the last step that reads its value (directly or through aliases)."""
    last: dict[str, int] = {n.name: step_of.get(n.name, -1) for n in graph}
    for node in reversed(graph.nodes):
        for source in node.inputs:
            here = last[node.name] if node.op in ALIASES else step_of[node.name]
            last[source] = max(last[source], here)
    return last


def plan(graph: Graph) -> Plan:
    """Plan the buffers of ``graph`` (see the module docstring)."""
    steps = [n for n in graph if n.op != "input" and n.op not in ALIASES]
    step_of = {n.name: i for i, n in enumerate(steps)}
    end = len(steps)
    last = _last_reads(graph, step_of)
    outputs = set(graph.outputs)
    buffer_of: dict[str, Buffer] = {}
    holds: dict[int, set[str]] = {}  # id(buffer) -> the nodes whose value it holds now
    buffers: list[Buffer] = []
    in_place: set[str] = set()

    def dead_after(name: str, step: int) -> bool:
        buf = buffer_of[name]
        group = holds[id(buf)]
        return buf.place == "arena" and all(last[v] <= step and v not in outputs for v in group)

    for node in graph:
        if node.op == "input":
            buf = Buffer(node.name, node.size, -1, -1, "input", node.params["index"])
            buffers.append(buf)
            buffer_of[node.name] = buf
            holds[id(buf)] = {node.name}
            continue
        if node.op in ALIASES:
            buf = buffer_of[node.inputs[0]]
            buffer_of[node.name] = buf
            holds[id(buf)].add(node.name)
            continue
        step = step_of[node.name]
        target = None
        candidates = node.inputs[:1] if node.op in IN_PLACE else ()
        if node.op in MERGES and len(set(node.inputs)) == len(node.inputs):
            candidates = tuple(i for i in node.inputs if graph.node(i).shape == node.shape)
        for name in candidates:
            if buffer_of[name].size == node.size and dead_after(name, step):
                target = buffer_of[name]
                break
        if target is None:
            target = Buffer(node.name, node.size, step, step)
            buffers.append(target)
        else:
            in_place.add(node.name)
        buffer_of[node.name] = target
        holds[id(target)] = {node.name}
    for node in graph:
        buf = buffer_of[node.name]
        if buf.place == "arena":
            buf.last = max(buf.last, last[node.name])
    result = Plan(graph, steps, buffer_of, buffers, in_place)
    # Graph outputs live in the caller's buffers when they can.
    claimed: set[int] = set()
    for index, name in enumerate(graph.outputs):
        buf = buffer_of[name]
        if buf.place == "arena" and id(buf) not in claimed and name in holds[id(buf)]:
            buf.place, buf.index = "output", index
            claimed.add(id(buf))
        else:
            result.copies.append((name, index))
            if buf.place == "arena":
                buf.last = end
    _place(result.arena_buffers)
    return result


def _place(buffers: list[Buffer]) -> None:
    """Greedy offsets: largest first, each at the lowest offset clear of the buffers already
    placed that are live at the same time."""
    placed: list[Buffer] = []
    for buf in sorted(buffers, key=lambda b: (-b.slot, b.first)):
        clashes = sorted(
            (b.offset, b.offset + b.slot)
            for b in placed
            if b.first <= buf.last and buf.first <= b.last
        )
        offset = 0
        for lo, hi in clashes:
            if offset + buf.slot <= lo:
                break
            offset = max(offset, hi)
        buf.offset = offset
        placed.append(buf)


def describe(plan: Plan) -> dict[str, int | float]:
    """The plan's sizes in bytes: arena, lower bound, sum of intermediates, and their ratio."""
    arena, bound, total = 4 * plan.arena, 4 * plan.lower_bound, 4 * plan.total
    return {
        "arena_bytes": arena,
        "lower_bound_bytes": bound,
        "intermediates_bytes": total,
        "arena_over_lower_bound": arena / bound if bound else 1.0,
        "steps": len(plan.steps),
        "buffers": len(plan.arena_buffers),
        "largest_buffer_bytes": 4 * max((b.slot for b in plan.arena_buffers), default=0),
        "in_place_steps": len(plan.in_place),
    }
