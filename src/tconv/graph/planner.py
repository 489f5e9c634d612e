"""The memory plan of a graph for code that runs it one batch item at a time.

Every node's value lives in a buffer: the caller's input and output buffers, or a slice of one
arena.  A node of op ``identity``/``reshape`` is an alias (its input's buffer); an element-wise
node, a normalization and a merge run in place when the operand they overwrite is dead after
them (its last reader has run, and it is no graph output); every other node gets a new buffer.
A concatenation's inputs are written straight into their slices of its buffer when the layout
allows (:func:`slices`): on an outer item axis (every axis before it of size 1) a slice is a
contiguous run, so its producer's buffer is simply placed there; on the channel axis a slice is
every ``row``-th run of its channels, and the producer stores its pixels with that row stride
(the ops of :data:`ROW_WRITERS`).  A producer that is a graph input, a graph output, read by any
other step, fed to the concatenation twice, or a row-wise activation keeps its own buffer and
the concatenation copies it.  A slice's buffer is a child of the concatenation's (``parent``,
``start``, ``row``); only root buffers are placed, live from the first write of any slice.
A buffer is live from the step that first writes it to the last step that reads a value it
holds.  Offsets are assigned greedily, largest buffer first, at the lowest offset that overlaps
no buffer live at the same time (:func:`plan`); :attr:`Plan.lower_bound` is the most floats
live at once in this order, which no placement can beat.

Sizes are in floats (4 bytes); each arena slice is rounded up to :data:`ALIGN` floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..kernels import cactivations
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
ROW_WRITERS = (
    "conv",
    "dense",
    "conv_transpose",
    "activation",
    "relu",
    "leaky_relu",
    "elu",
    "prelu",
    "rescale",
    "batch_norm",
    "transpose",
    "pool",
    "upsample",
    "pad",
    "crop",
    "space_to_depth",
    *MERGES,
)
"""Ops whose C can store their output pixels ``row`` floats apart (a channel slice of a
concatenation; a concatenation on the channel axis can too)."""


@dataclass
class Buffer:
    """Memory for one or more values (an alias or an in-place op shares its operand's)."""

    name: str  # the node that first writes it (or the graph input)
    size: int  # floats of one item
    first: int  # the step that writes it first (-1: a graph input, there before step 0)
    last: int  # the last step that reads a value in it
    place: str = "arena"  # "arena", "input" or "output"
    index: int = 0  # which input or output, for the caller's buffers
    offset: int = 0  # floats from the start of the arena (or of the caller's buffer)
    parent: Buffer | None = None  # a slice of this concatenation's buffer
    start: int = 0  # floats from the parent's first
    row: int = 0  # floats between consecutive pixels; 0: contiguous
    channels: int = 1  # floats of one pixel (the last axis)

    @property
    def slot(self) -> int:
        """The floats it takes in the arena (``size`` rounded up to :data:`ALIGN`)."""
        return -(-self.size // ALIGN) * ALIGN

    @property
    def root(self) -> Buffer:
        """The buffer this one is a slice of (itself when it is none's)."""
        return self if self.parent is None else self.parent.root

    def indices(self) -> np.ndarray:
        """The floats it covers, from the start of its root (int64, in order)."""
        base = _first(self)
        if not self.row:
            return np.arange(base, base + self.size, dtype=np.int64)
        pixels = np.arange(self.size // self.channels, dtype=np.int64)[:, None] * self.row
        return (base + pixels + np.arange(self.channels, dtype=np.int64)).reshape(-1)


def _first(buf: Buffer) -> int:
    """Floats from the root's start to ``buf``'s first."""
    return 0 if buf.parent is None else buf.start + _first(buf.parent)


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
    slice_of: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Per step that writes into a concatenation's slice: ``(concatenation, input index)``."""

    @property
    def arena(self) -> int:
        """Floats of the arena (one item)."""
        return max((b.offset + b.slot for b in self.arena_buffers), default=0)

    @property
    def arena_buffers(self) -> list[Buffer]:
        """The arena's root buffers (the slices of concatenations are inside them)."""
        return [b for b in self.buffers if b.place == "arena" and b.parent is None]

    def row_of(self, name: str) -> int:
        """Floats between the pixels the step ``name`` writes (0: contiguous)."""
        return self.buffer_of[name].row

    def copied(self, concat: str) -> list[int]:
        """The inputs of ``concat`` it copies (the others wrote their slices)."""
        node = self.graph.node(concat)
        done = {i for c, i in self.slice_of.values() if c == concat}
        return [i for i in range(len(node.inputs)) if i not in done]

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
        """Raise ``AssertionError`` if two arena buffers live at the same time overlap, or a
        slice is not inside its concatenation's buffer, overlaps another slice of it, or is
        not live while its root is."""
        arena = self.arena_buffers
        for i, a in enumerate(arena):
            for b in arena[i + 1 :]:
                live = a.first <= b.last and b.first <= a.last
                apart = a.offset + a.slot <= b.offset or b.offset + b.slot <= a.offset
                assert not live or apart, f"buffers {a.name!r} and {b.name!r} overlap"
        children: dict[str, list[Buffer]] = {}
        for buf in self.buffers:
            if buf.parent is None:
                continue
            root = buf.root
            assert root.first <= buf.first and buf.last <= root.last, f"{buf.name!r} outlives"
            assert buf.offset == root.offset + _first(buf) and buf.place == root.place, (
                f"slice {buf.name!r} is not where its offset says"
            )
            inside = np.isin(buf.indices(), buf.parent.indices())
            assert inside.all(), f"slice {buf.name!r} leaves {buf.parent.name!r}"
            children.setdefault(buf.parent.name, []).append(buf)
        # inside its parent and apart from its siblings: no two slices overlap unless one is
        # inside the other (a nested concatenation's)
        for parent, kids in children.items():
            floats = np.concatenate([k.indices() for k in kids])
            if np.unique(floats).size != floats.size:
                names = ", ".join(repr(k.name) for k in kids)
                raise AssertionError(f"slices {names} of {parent!r} overlap")


def _last_reads(graph: Graph, step_of: dict[str, int]) -> dict[str, int]:
    """Per node, the last step that reads its value (directly or through aliases)."""
    last: dict[str, int] = {n.name: step_of.get(n.name, -1) for n in graph}
    for node in reversed(graph.nodes):
        for source in node.inputs:
            here = last[node.name] if node.op in ALIASES else step_of[node.name]
            last[source] = max(last[source], here)
    return last


def _rowwise(node: Node) -> bool:
    """Whether ``node`` ends in an activation over whole rows (softmax): its C needs them
    contiguous."""
    if node.op == "conv_transpose":
        return cactivations.is_rowwise(str(node.params["op"].activation))
    key = "name" if node.op == "activation" else "activation"
    return cactivations.is_rowwise(str(node.params.get(key, "linear")))


KERNEL_OPS = ("conv", "dense", "conv_transpose")
"""Ops that may run a transposed convolution's kernel, whose reference and scatter styles store
contiguous outputs only."""


def row_writer(node: Node, kernel_rows: bool = True) -> bool:
    """Whether the C of ``node`` can store its pixels ``row`` floats apart (``kernel_rows``
    False: not the ops of :data:`KERNEL_OPS`)."""
    if node.op == "concat":
        return bool(node.params["axis"] == len(node.shape) - 1)
    if not kernel_rows and node.op in KERNEL_OPS:
        return False
    return node.op in ROW_WRITERS and not _rowwise(node)


def slices(graph: Graph, kernel_rows: bool = True) -> dict[str, tuple[str, int, int, int]]:
    """The steps that write straight into a concatenation's buffer (see the module docstring):
    per step, ``(concatenation, input index, floats from the concatenation's first, row)``
    with ``row`` 0 for a contiguous slice; ``kernel_rows``: see :func:`row_writer`."""
    by_name = {n.name: n for n in graph}
    readers = graph.readers()
    outputs = set(graph.outputs)

    def root(name: str) -> str:
        while by_name[name].op in ALIASES:
            name = by_name[name].inputs[0]
        return name

    group: dict[str, list[str]] = {}  # a step -> it and its aliases
    for node in graph:
        group.setdefault(root(node.name), []).append(node.name)
    found: dict[str, tuple[str, int, int, int]] = {}
    for concat in reversed([n for n in graph if n.op == "concat"]):
        shape, axis = concat.shape, concat.params["axis"]
        channel = axis == len(shape) - 1
        if not channel and math.prod(shape[:axis]) != 1:
            continue  # a middle axis: every input is copied
        # this concatenation's own pixel stride (it may be a slice of a later one)
        row = found[concat.name][3] if concat.name in found else 0
        stride = row or shape[-1]
        sources = [root(i) for i in concat.inputs]
        at = 0  # floats (outer axis) or channels (channel axis) before input i
        for index, name in enumerate(concat.inputs):
            here = at
            at += by_name[name].shape[axis] * (1 if channel else math.prod(shape[axis + 1 :]))
            writer = by_name[sources[index]]
            members = group[writer.name]
            others = [r for m in members for r in readers[m] if r not in members]
            if (
                writer.op in ("input", *ALIASES)
                or writer.name in found
                or sources.count(writer.name) != 1
                or others != [concat.name]
                or any(m in outputs for m in members)
            ):
                continue
            pixels = writer.size // writer.shape[-1] if writer.shape else 1
            if channel:
                start, child = here, stride if pixels > 1 else 0
            else:
                start, child = here // shape[-1] * stride, row
            if child == writer.shape[-1]:
                child = 0  # every pixel's channels follow each other: contiguous
            if child and not row_writer(writer, kernel_rows):
                continue
            found[writer.name] = (concat.name, index, start, child)
    return found


def plan(graph: Graph, kernel_rows: bool = True) -> Plan:
    """Plan the buffers of ``graph`` (see the module docstring; ``kernel_rows``: see
    :func:`row_writer`)."""
    steps = [n for n in graph if n.op != "input" and n.op not in ALIASES]
    step_of = {n.name: i for i, n in enumerate(steps)}
    end = len(steps)
    last = _last_reads(graph, step_of)
    outputs = set(graph.outputs)
    buffer_of: dict[str, Buffer] = {}
    holds: dict[int, set[str]] = {}  # id(buffer) -> the nodes whose value it holds now
    buffers: list[Buffer] = []
    in_place: set[str] = set()
    into = slices(graph, kernel_rows)

    def concat_buffer(name: str, step: int) -> Buffer:
        """The buffer of concatenation ``name`` (made at the first write of a slice)."""
        if name in buffer_of:
            buf = buffer_of[name]
            buf.first = min(buf.first, step)
            if buf.parent is not None:
                concat_buffer(into[name][0], step)
            return buf
        node = graph.node(name)
        buf = Buffer(name, node.size, step, step, channels=node.shape[-1])
        if name in into:
            outer, _, buf.start, buf.row = into[name]
            buf.parent = concat_buffer(outer, step)
        buffers.append(buf)
        buffer_of[name] = buf
        holds[id(buf)] = {name}
        return buf

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
        if node.op == "concat" and (node.name in into or node.name in buffer_of):
            concat_buffer(node.name, step)  # made by its slices, or a slice itself
            continue
        if node.name in into:  # writes into its slice of a concatenation
            outer, _, start, row = into[node.name]
            buf = Buffer(
                node.name,
                node.size,
                step,
                step,
                parent=concat_buffer(outer, step),
                start=start,
                row=row,
                channels=node.shape[-1] if node.shape else 1,
            )
            buffers.append(buf)
            buffer_of[node.name] = buf
            holds[id(buf)] = {node.name}
            continue
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
    for buf in buffers:  # a concatenation's buffer is live while any slice of it is
        if buf.parent is not None:
            buf.root.last = max(buf.root.last, buf.last)
    result = Plan(graph, steps, buffer_of, buffers, in_place)
    result.slice_of = {name: (c, i) for name, (c, i, _, _) in into.items()}
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
    for buf in buffers:
        if buf.parent is not None:
            root = buf.root
            buf.place, buf.index, buf.offset = root.place, root.index, root.offset + _first(buf)
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
    """The plan's sizes in bytes: arena, lower bound, sum of intermediates, and their ratio;
    the steps that write into a concatenation's slice and the inputs concatenations copy."""
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
        "slice_writes": len(plan.slice_of),
        "concat_copies": sum(len(plan.copied(n.name)) for n in plan.steps if n.op == "concat"),
    }
