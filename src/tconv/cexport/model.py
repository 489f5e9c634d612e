"""A graph (a :class:`tconv.graph.Graph`: a model from :func:`tconv.keras.load_model`, or the
one-node graph of a layer, :meth:`tconv.graph.Graph.of_layer`) as one allocation-free C99
project: the one pipeline of every float C export.

:func:`export_model_c` fuses the graph (:func:`tconv.graph.fuse.fuse`), plans its memory
(:func:`tconv.graph.planner.plan`), and writes ``NAME.h``, ``NAME.c`` (one commented call per
step), ``NAME_weights.c`` (every weight as an exact hex float, or with ``weights="file"`` a
checking loader for ``NAME_weights.bin``), ``test_NAME.c`` (a harness with the test vectors
``NAME_in<i>.bin``/``NAME_out<j>.bin``; a layer's are ``NAME_input.bin``/``NAME_expected.bin``),
``Makefile``, ``CMakeLists.txt`` and ``README.md`` (the graph as a table, the memory plan, a
section per transposed convolution).  ``style`` chooses the kernel of the convolution-family
steps.  :func:`verify_model` builds the harness with every intermediate traced and compares
each with tconv's NumPy model and, when Keras is installed, with Keras.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..graph import Graph, Node, executor, macs
from ..graph.fuse import fuse
from ..graph.planner import Plan, describe, plan
from ..kernels import emit
from ..kernels.build import STRICT_FLAGS, compile_c
from ..kernels.spec import Spec, check_name
from .cops import Step, step_source
from .files import loader_source, prepare_dir, write_weights_file
from .harness import cmake_lists, harness_helpers, harness_main, makefile
from .readme import conv_transpose_section
from .spec import from_layer

__all__ = ["WEIGHTS_MODES", "ModelExport", "export_model_c", "plan_graph", "verify_model"]

GUARD = 64
"""Floats of canary on each side of the arena in the harness' ``--canary`` run."""
_LIBM = re.compile(r"\b(?!sizeof\b)[a-z][a-z0-9]*f\(|\b(INFINITY|NAN|HUGE_VALF?)\b")
"""What makes ``NAME.c`` include ``<math.h>`` besides a step that says it calls libm."""
WEIGHT_ALIGN = 16
"""Floats: every step's weights start at a multiple of this in the weight array (64 bytes, a
cache line; the inline array is aligned so, and the harness' file-mode buffer): an AVX2 build's
weight loads at 16 bytes past a line straddle two lines and ran seed_k5_b8 6 % slower."""
WEIGHTS_MODES = ("inline", "file")


def plan_graph(graph: Graph, style: str = "fast") -> tuple[Graph, Plan]:
    """The fused graph and its memory plan, as the C export uses them (only the fast style's
    kernel stores a concatenation's slice a row apart)."""
    fused = fuse(graph)
    return fused, plan(fused, kernel_rows=style == "fast")


@dataclass
class ModelExport:
    """What :func:`export_model_c` generates: the fused graph, the plan, each step's C, and the
    options (``style``, ``weights``, the test-vector file names)."""

    name: str
    graph: Graph  # the fused graph
    plan: Plan
    steps: list[Step]
    offsets: list[int]  # each step's weights offset, floats
    weights: np.ndarray
    terms: int  # the longest sum of products, for the rounding bound
    specs: dict[int, Spec]  # step index -> its transposed convolution (conv_transpose steps)
    style: str = "fast"
    weights_mode: str = "inline"
    vectors: tuple[list[str], list[str]] = ([], [])  # the test-vector files, inputs, outputs

    @property
    def single(self) -> bool:
        """One input and one output: the project has ``NAME(input, output, batch)``."""
        return len(self.graph.inputs) == 1 and len(self.graph.outputs) == 1

    @property
    def layer(self) -> Spec | None:
        """The transposed convolution when the whole graph is one (a layer's export)."""
        if self.single and len(self.plan.steps) == 1 and not self.plan.copies:
            return self.specs.get(0)
        return None


def _location(plan: Plan, name: str) -> str:
    buf = plan.buffer_of[name]
    if buf.place == "input":
        return f"in[{buf.index}]"
    if buf.place == "output":  # a slice of a concatenation the caller gets starts inside it
        return f"out[{buf.index}] + {buf.offset}" if buf.offset else f"out[{buf.index}]"
    return f"A + {buf.offset}"


def _terms(memory: Plan, specs: dict[int, Spec]) -> int:
    """The most products summed into one value by a step (a transposed convolution's: the most
    taps that reach one output, :attr:`tconv.kernels.spec.Spec.max_terms`)."""
    longest = 1
    for i, node in enumerate(memory.steps):
        if i in specs:
            longest = max(longest, specs[i].max_terms)
        elif node.op in ("dense", "conv"):
            longest = max(longest, int(np.prod(node.weights["kernel"].shape[:-1])))
        elif node.op in ("layer_norm", "softmax", "global_pool"):
            longest = max(longest, node.size)
    return longest


def vector_files(p: str, graph: Graph, layer_names: bool = False) -> tuple[list[str], list[str]]:
    """The test-vector files of a project: ``p_in<i>.bin`` per input and ``p_out<j>.bin`` per
    output; with ``layer_names`` (a one-input, one-output layer export) the names layer
    projects have always had, ``p_input.bin`` and ``p_expected.bin``."""
    if layer_names and len(graph.inputs) == len(graph.outputs) == 1:
        return [f"{p}_input.bin"], [f"{p}_expected.bin"]
    return (
        [f"{p}_in{i}.bin" for i in range(len(graph.inputs))],
        [f"{p}_out{j}.bin" for j in range(len(graph.outputs))],
    )


def build_export(
    graph: Graph,
    name: str,
    *,
    style: str = "fast",
    weights: str = "inline",
    layer_names: bool = False,
) -> ModelExport:
    """Fuse, plan and generate the C of every step of ``graph`` (see :func:`export_model_c`
    for the options)."""
    name = check_name(name)
    emit.check_style(style)
    if weights not in WEIGHTS_MODES:
        raise ValueError(f"weights must be one of {WEIGHTS_MODES}, got weights={weights!r}")
    fused, memory = plan_graph(graph, style)
    shapes = {n.name: n.shape for n in fused}
    steps, offsets, blobs, specs = [], [], [], {}
    at = 0
    alone = len(memory.steps) == 1 and len(fused.inputs) == len(fused.outputs) == 1
    tasks = name if alone else ""  # a layer's export keeps NAME_task_count, ...
    for i, node in enumerate(memory.steps):
        prefix = f"{name}_l{i}"
        copied = memory.copied(node.name) if node.op == "concat" else None
        step = step_source(
            prefix,
            node,
            [shapes[s] for s in node.inputs],
            style,
            tasks,
            memory.row_of(node.name),
            copied,
        )
        if node.op == "conv_transpose":
            specs[i] = from_layer(node.params["op"], shapes[node.inputs[0]], prefix)
        steps.append(step)
        pad = -at % WEIGHT_ALIGN  # each step's weights start on a cache line, as the array does
        if pad:
            blobs.append(np.zeros(pad, np.float32))
            at += pad
        offsets.append(at)
        blobs.append(step.weights.astype(np.float32).reshape(-1))
        at += step.weights.size
    blob = np.concatenate(blobs) if blobs else np.zeros(0, np.float32)
    return ModelExport(
        name, fused, memory, steps, offsets, blob, _terms(memory, specs), specs, style, weights,
        vector_files(name, graph, layer_names),
    )  # fmt: skip


# --- sources -------------------------------------------------------------------------------


def _shape_macros(u: str, kind: str, index: int, shape: tuple[int, ...]) -> list[str]:
    return [
        f"#define {u}_{kind}{index}_SHAPE {{{', '.join(map(str, shape))}}}",
        f"#define {u}_{kind}{index}_RANK {len(shape)}",
        f"#define {u}_{kind}{index}_COUNT {math.prod(shape)} /* floats per batch item */",
    ]


def _layout(ex: ModelExport) -> str:
    spec = ex.layer
    if spec is None:
        return "Keras' layout (row-major, batch items contiguous)"
    return ("(C, *spatial)" if spec.channels_first else "(*spatial, C)") + " per item"


def _weights_array(ex: ModelExport) -> str:
    """The declaration of the inline weights (also what ``NAME.c`` declares extern)."""
    size = f"{ex.name.upper()}_WEIGHT_COUNT" if ex.weights.size else "1"
    return f"const float {ex.name}_weights[{size}]"


def _weight_count_comment(ex: ModelExport) -> str:
    spec = ex.layer
    if spec is not None:
        return f"kernel data, then {0 if spec.bias is None else spec.bias.size} bias values"
    return "every step's weights in step order (NAME_weights.c lists them)"


def header_source(ex: ModelExport) -> str:
    """``NAME.h``: shape and count macros of every input and output (and ``NAME_IN_*``/
    ``NAME_OUT_*`` for one of each; ``NAME_RANK``/``NAME_KERNEL_COUNT`` when the graph is one
    transposed convolution), the arena, weight count, error codes and the prototypes of the
    weights mode."""
    p, u = ex.name, ex.name.upper()
    g = ex.graph
    file_mode = ex.weights_mode == "file"
    lines = [f"#define {u}_INPUTS {len(g.inputs)}", f"#define {u}_OUTPUTS {len(g.outputs)}"]
    for i, n in enumerate(g.inputs):
        lines += _shape_macros(u, "IN", i, g.node(n).shape)
    for j, n in enumerate(g.outputs):
        lines += _shape_macros(u, "OUT", j, g.node(n).shape)
    if ex.single:
        for kind, n in (("IN", g.inputs[0]), ("OUT", g.outputs[0])):
            shape = g.node(n).shape
            lines.append(f"#define {u}_{kind}_SHAPE {{{', '.join(map(str, shape))}}}")
            lines += [f"#define {u}_{kind}_DIM{a} {v}" for a, v in enumerate(shape)]
            lines.append(f"#define {u}_{kind}_COUNT {math.prod(shape)} /* floats per batch item */")
    spec = ex.layer
    if spec is not None:
        kernel = ex.weights.size - (0 if spec.bias is None else spec.bias.size)
        lines += [
            f"#define {u}_RANK {spec.rank} /* spatial axes of the transposed convolution */",
            f"#define {u}_KERNEL_COUNT {kernel}",
        ]
    shapes = {n.name: n.shape for n in g}
    total_macs = sum(macs(n, shapes) for n in g)
    lines += [
        f"#define {u}_ARENA_FLOATS {ex.plan.arena}",
        f"#define {u}_ARENA_BYTES {4 * ex.plan.arena} /* one batch item's intermediates */",
        f"#define {u}_WEIGHT_COUNT {ex.weights.size} /* {_weight_count_comment(ex)} */",
        f"#define {u}_MACS {total_macs} /* multiply-adds per batch item */",
        f"#define {u}_ERR_BATCH (-1)",
        f"#define {u}_ERR_NULL (-2)",
    ]
    if file_mode:
        lines += [
            f"#define {u}_ERR_OPEN (-3)",
            f"#define {u}_ERR_READ (-4)",
            f"#define {u}_ERR_FORMAT (-5)",
            f"#define {u}_ERR_SIZE (-6)",
        ]
    static = (
        f"the static arena ({u}_ARENA_BYTES bytes:\n * not re-entrant; see {p}_run_with_weights)"
        if ex.plan.arena
        else f"no arena\n * ({u}_ARENA_BYTES is 0: re-entrant)"
    )
    codes = f"Returns 0, {u}_ERR_BATCH for batch < 0, {u}_ERR_NULL for a NULL pointer."
    protos = []
    if ex.single and not file_mode:
        protos += [
            f"/* One input, one output: batch x {u}_IN_COUNT floats in, batch x {u}_OUT_COUNT "
            f"out,\n * {_layout(ex)}, with the weights of {p}_weights.c.  Uses {static}.\n"
            f" * {codes} */",
            f"int {p}(const float *input, float *output, int batch);",
        ]
    if ex.single:
        where = (
            f"{u}_WEIGHT_COUNT floats from {p}_load_weights"
            if file_mode
            else f"{u}_WEIGHT_COUNT floats, laid out as in {p}_weights.c"
        )
        protos += [
            f"/* {'The same' if not file_mode else 'One input, one output'} with `weights` "
            f"({where}):\n * batch x {u}_IN_COUNT floats in, batch x {u}_OUT_COUNT out, "
            f"{_layout(ex)}.\n * Uses {static}.\n * {codes} */",
            f"int {p}_with_weights(const float *weights, const float *input, float *output, "
            "int batch);",
        ]
    if not file_mode:
        protos += [
            f"/* Every input and output in the model's order: inputs[i] holds batch x "
            f"{u}_IN<i>_COUNT\n * floats, outputs[j] batch x {u}_OUT<j>_COUNT.  Uses {static}. */",
            f"int {p}_run(const float *const *inputs, float *const *outputs, int batch);",
            f"/* The same in the caller's memory: `arena` holds {u}_ARENA_BYTES bytes, aligned "
            "for\n * float (16 bytes or more is best; NULL when the size is 0).  Re-entrant: no "
            "static state. */",
            f"int {p}_with_arena(const float *const *inputs, float *const *outputs, int batch, "
            "void *arena);",
        ]
    source = f"from {p}_load_weights" if file_mode else f"as in {p}_weights.c"
    protos += [
        f"/* The most general call: `weights` ({u}_WEIGHT_COUNT floats, {source}),"
        f"\n * every input and output, and the caller's arena of {u}_ARENA_BYTES bytes\n"
        " * (NULL when the size is 0).  Re-entrant. */",
        f"int {p}_run_with_weights(const float *weights, const float *const *inputs, "
        "float *const *outputs,\n                         int batch, void *arena);",
    ]
    if file_mode:
        protos += [
            f"/* Reads the weights file ({p}_weights.bin) into `weights` ({u}_WEIGHT_COUNT "
            f"floats, the\n * caller's memory; any float alignment works, 64 bytes is fastest: "
            f"no vector load\n * then straddles two cache lines).  Returns 0 or "
            f"{u}_ERR_OPEN/READ/FORMAT/SIZE\n * (negative); {p}_strerror explains a code. */",
            f"int {p}_load_weights(const char *path, float *weights);",
            f"const char *{p}_strerror(int code);",
        ]
    what = (
        f"the transposed convolution {g.outputs[0]!r}"
        if spec is not None
        else f"the model {g.name!r}"
    )
    nl = "\n"
    return f"""\
/* {p}: {what} exported by tconv (style "{ex.style}", weights "{ex.weights_mode}").
 * See README.md. */
#ifndef {u}_H
#define {u}_H

{nl.join(lines)}

#ifdef __cplusplus
extern "C" {{
#endif

{nl.join(protos)}

#ifdef __cplusplus
}}
#endif
#endif
"""


def _comment(ex: ModelExport, i: int, node: Node) -> str:
    shapes = {n.name: n.shape for n in ex.graph}
    ins = ", ".join(str(shapes[s]) for s in node.inputs)
    buf = ex.plan.buffer_of[node.name]
    where = {
        "arena": f"arena[{buf.offset}..{buf.offset + node.size})",
        "input": f"input {buf.index}",
        "output": f"output {buf.index}",
    }[buf.place]
    if node.name in ex.plan.slice_of:
        concat, k = ex.plan.slice_of[node.name]
        base = {"arena": "arena", "input": f"input {buf.index}", "output": f"output {buf.index}"}
        at = f"{base[buf.place]}[{buf.offset}"
        span = (
            f"{at} + {buf.row} * pixel + channel], channel < {buf.channels}"
            if buf.row
            else f"{at}..{buf.offset + node.size})"
        )
        where = f"its slice of '{concat}' (input {k}): {span}"
    lines = [
        f"[{i}] '{node.layer}' {node.layer_class}" + (f": {node.detail}" if node.detail else "")
    ]
    if node.name != node.layer:
        lines.append(f"step {node.name!r}")
    lines.append(
        f"{ins} -> {node.shape} in {where}"
        + (" (in place)" if node.name in ex.plan.in_place else "")
    )
    lines.append(ex.steps[i].how)
    if node.note:
        lines.append(node.note)
    body = "\n".join(lines)
    wrapped = []
    for line in body.split("\n"):
        while len(line) > 88:
            cut = line.rfind(" ", 0, 88)
            cut = cut if cut > 20 else 88
            wrapped.append(line[:cut])
            line = "    " + line[cut:].lstrip()
        wrapped.append(line)
    return "        /* " + "\n         * ".join(w.replace("*/", "* /") for w in wrapped) + " */"


def _batched(ex: ModelExport) -> bool:
    """Whether the whole graph is one step that runs on the caller's buffers and takes the
    batch in one call (a layer's export): then no loop over the items."""
    memory = ex.plan
    if len(memory.steps) != 1 or memory.copies or not ex.steps[0].batch_call:
        return False
    node = memory.steps[0]
    places = [memory.buffer_of[s].place for s in node.inputs]
    return all(p == "input" for p in places) and memory.buffer_of[node.name].place == "output"


def _body(ex: ModelExport) -> str:
    """The statements of ``NAME_run_with_weights`` after the argument checks."""
    u = ex.name.upper()
    g, memory = ex.graph, ex.plan
    nl = "\n"
    if _batched(ex):
        node, step = memory.steps[0], ex.steps[0]
        decl = ["const float *W = weights;"] if "(W," in step.batch_call else []
        decl += [
            f"const float *x{k} = inputs[{memory.buffer_of[s].index}];"
            for k, s in enumerate(node.inputs)
        ]
        decl.append(f"float *y = outputs[{memory.buffer_of[node.name].index}];")
        inner = nl.join(f"        {d}" for d in decl)
        comment = _comment(ex, 0, node)[4:].replace(nl + "         * ", nl + "     * ")
        return (
            f"    /* one step on the whole batch: the caller's buffers, no arena */\n"
            f"{comment}\n    {{\n{inner}\n        {step.batch_call}\n"
            f"        for (n = 0; n < batch; ++n) {u}_TRACE(0, y + (ptrdiff_t)n * {node.size}, "
            f"{node.size});\n    }}\n"
        )
    body = []
    for i, (node, step) in enumerate(zip(memory.steps, ex.steps, strict=True)):
        decl = []
        if "(W," in step.call:
            decl.append(f"const float *W = weights + {ex.offsets[i]};")
        for k, source in enumerate(node.inputs):
            decl.append(f"const float *x{k} = {_location(memory, source)};")
        decl.append(f"float *y = {_location(memory, node.name)};")
        inner = nl.join(f"            {d}" for d in decl)
        row = memory.row_of(node.name)
        channels = node.shape[-1] if node.shape else 1
        trace = (
            f"{u}_TRACE_ROWS({i}, y, {node.size // channels}, {channels}, {row});"
            if row
            else f"{u}_TRACE({i}, y, {node.size});"
        )
        body.append(
            f"{_comment(ex, i, node)}\n        {{\n{inner}\n            {step.call}\n"
            f"            {trace}\n        }}"
        )
    for name, j in memory.copies:
        size = g.node(name).size
        body.append(
            f"        /* output {j} is the value of '{name}': copied */\n"
            f"        memcpy(out[{j}], {_location(memory, name)}, sizeof(float) * {size});"
        )
    ins = nl.join(
        f"        in[{i}] = inputs[{i}] + (ptrdiff_t)n * {u}_IN{i}_COUNT;"
        for i in range(len(g.inputs))
    )
    outs = nl.join(
        f"        out[{j}] = outputs[{j}] + (ptrdiff_t)n * {u}_OUT{j}_COUNT;"
        for j in range(len(g.outputs))
    )
    return f"    for (n = 0; n < batch; ++n) {{\n{ins}\n{outs}\n{nl.join(body)}\n    }}\n"


def library_source(ex: ModelExport) -> str:
    """``NAME.c``: one function per step, ``NAME_run_with_weights`` calling them in order, and
    the entry points of the weights mode (see :func:`header_source`)."""
    p, u = ex.name, ex.name.upper()
    g, memory = ex.graph, ex.plan
    file_mode = ex.weights_mode == "file"
    defs = []
    for i, (node, step) in enumerate(zip(memory.steps, ex.steps, strict=True)):
        defs.append(f"/* ---- [{i}] {node.name} ({node.layer_class}) ---- */\n{step.code}")
    body = _body(ex)
    batched = _batched(ex)
    locals_ = "" if batched else f"    const float *in[{u}_INPUTS];\n    float *out[{u}_OUTPUTS];\n"
    uses_a = "A +" in body
    arena_decl = "    float *A = (float *)arena;\n" if uses_a else ""
    unused = "" if uses_a else "    (void)arena;\n"
    null = ["inputs == NULL", "outputs == NULL"]
    if ex.weights.size:
        null.insert(0, "weights == NULL")
    else:
        unused += "    (void)weights;\n"
    if memory.arena:
        null.append("arena == NULL")
    checks = " || ".join(
        [f"inputs[{i}] == NULL" for i in range(len(g.inputs))]
        + [f"outputs[{j}] == NULL" for j in range(len(g.outputs))]
    )
    static = f"{p}_arena" if memory.arena else "NULL"
    entry = []
    if memory.arena and (ex.single or not file_mode):
        entry.append(
            f"/* the one static buffer of the export: {u}_ARENA_BYTES bytes */\n"
            f"static float {p}_arena[{u}_ARENA_FLOATS];\n"
        )
    if not file_mode:
        entry.append(f"""\
int {p}_with_arena(const float *const *inputs, float *const *outputs, int batch, void *arena)
{{
    return {p}_run_with_weights({p}_weights, inputs, outputs, batch, arena);
}}

int {p}_run(const float *const *inputs, float *const *outputs, int batch)
{{
    return {p}_with_arena(inputs, outputs, batch, {static});
}}
""")
    if ex.single:
        wrap = f"""\
    const float *inputs[1];
    float *outputs[1];
    inputs[0] = input;
    outputs[0] = output;
    return {p}_run_with_weights(weights, inputs, outputs, batch, {static});
"""
        entry.append(
            f"int {p}_with_weights(const float *weights, const float *input, float *output, "
            f"int batch)\n{{\n{wrap}}}\n"
        )
        if not file_mode:
            entry.append(
                f"int {p}(const float *input, float *output, int batch)\n{{\n"
                f"    return {p}_with_weights({p}_weights, input, output, batch);\n}}\n"
            )
    extern = "" if file_mode else f"extern {_weights_array(ex)};\n"
    order = "on the whole batch" if batched else "on one batch item at a time"
    code = "".join(defs) + body
    libm = any(step.libm for step in ex.steps) or re.search(_LIBM, code) is not None
    includes = "#include <math.h>\n" if libm else ""
    includes += "#include <stddef.h>\n"
    includes += "#include <string.h>\n" if re.search(r"\bmem(cpy|set)\b", code) else ""
    nl = "\n"
    what = (
        f"the transposed convolution {g.outputs[0]!r}"
        if ex.layer is not None
        else f"the model {g.name!r}"
    )
    return f"""\
/* {p}: {what}, generated by tconv (style "{ex.style}").
 *
 * One call per step, in order, {order}.  Every intermediate value lives
 * in the arena at the offset the liveness planner gave it (README.md, "Memory"); the model's
 * inputs and outputs stay in the caller's buffers.  No allocation, no recursion, no VLA.
 */
{includes}#include "{p}.h"

{extern}
#ifdef {u}_TRACE_HOOK
/* The verify harness records every step's output. */
void {p}_trace(int step, const float *data, long count);
void {p}_trace_rows(int step, const float *data, long rows, long count, long stride);
#define {u}_TRACE(step, data, count) {p}_trace(step, data, count)
#define {u}_TRACE_ROWS(step, data, rows, count, stride) \\
    {p}_trace_rows(step, data, rows, count, stride)
#else
#define {u}_TRACE(step, data, count) ((void)0)
#define {u}_TRACE_ROWS(step, data, rows, count, stride) ((void)0)
#endif

{nl.join(defs)}
int {p}_run_with_weights(const float *weights, const float *const *inputs, float *const *outputs,
                         int batch, void *arena)
{{
{arena_decl}{locals_}    int n;
{unused}    if (batch < 0) return {u}_ERR_BATCH;
    if ({" || ".join(null)}) return {u}_ERR_NULL;
    if ({checks}) return {u}_ERR_NULL;
{body}    return 0;
}}

{nl.join(entry)}"""


def weights_source(ex: ModelExport) -> str:
    """``NAME_weights.c`` of inline weights: every step's weights, exact hex-float literals."""
    p = ex.name
    values = emit.c_floats(ex.weights) or ["0.0f"]
    rows = [", ".join(values[i : i + 6]) for i in range(0, len(values), 6)]
    head = (
        "#include <math.h>\n" if any(v in ("NAN", "INFINITY", "-INFINITY") for v in values) else ""
    )
    table = "\n".join(
        f" * [{i}] {node.name}: floats {ex.offsets[i]}..{ex.offsets[i] + ex.steps[i].weights.size}"
        for i, node in enumerate(ex.plan.steps)
        if ex.steps[i].weights.size
    )
    body = ",\n    ".join(rows)
    return f"""\
/* Weights of {p}, step by step (folded BatchNormalizations included), as the generated code
 * reads them; hex float literals keep every float32 bit.
{table}
 */
{head}#include "{p}.h"

extern {_weights_array(ex)};
#if defined(__GNUC__) /* on a cache line: no vector load of a fast kernel straddles two */
__attribute__((aligned(64)))
#endif
{_weights_array(ex)} = {{
    {body}
}};
"""


def _calls(ex: ModelExport) -> tuple[str, str]:
    """The harness' calls: the plain one and the one on its (canary-guarded) arena."""
    p = ex.name
    ios = "(const float *const *)inputs, outputs, batch"
    if ex.weights_mode == "file":
        plain = (
            f"{p}_with_weights(weights, inputs[0], outputs[0], batch)"
            if ex.single
            else f"{p}_run_with_weights(weights, {ios}, arena)"
        )
        return plain, f"{p}_run_with_weights(weights, {ios}, arena + {p.upper()}_GUARD)"
    plain = f"{p}(inputs[0], outputs[0], batch)" if ex.single else f"{p}_run({ios})"
    return plain, f"{p}_with_arena({ios}, arena + {p.upper()}_GUARD)"


def harness_source(ex: ModelExport) -> str:
    """``test_NAME.c``: reads the test vectors (and, with ``weights="file"``, the weights
    file), runs the export, compares every output with the bound, ``--bench R``, ``--canary``
    (a NaN-filled arena with guards), ``--dir D``; ``NAME_check(dir, bench)`` for drivers
    that include several harnesses (``-DTCONV_NO_MAIN``)."""
    p, u = ex.name, ex.name.upper()
    g = ex.graph
    n_in, n_out = len(g.inputs), len(g.outputs)
    in_files, out_files = ex.vectors
    file_mode = ex.weights_mode == "file"
    nl = "\n"
    reads = nl.join(
        f'    sprintf(path, "%s/{f}", dir);\n'
        f"    inputs[{i}] = {p}_read(path, &count);\n"
        f"    if (inputs[{i}] == NULL || count % {u}_IN{i}_COUNT != 0)\n"
        f'        return {p}_fail("cannot read {f}");\n'
        + (
            "    batch = (int)(count / " + f"{u}_IN{i}_COUNT);"
            if i == 0
            else f"    if (count / {u}_IN{i}_COUNT != batch)\n"
            f'        return {p}_fail("inputs disagree on the batch");'
        )
        for i, f in enumerate(in_files)
    )
    expects = nl.join(
        f'    sprintf(path, "%s/{f}", dir);\n'
        f"    expected[{j}] = {p}_read(path, &count);\n"
        f"    if (expected[{j}] == NULL || count != (long)batch * {u}_OUT{j}_COUNT)\n"
        f'        return {p}_fail("cannot read {f}, or its size does not match the inputs");\n'
        f"    outputs[{j}] = (float *)malloc(sizeof(float) * (size_t)(count > 0 ? count : 1));\n"
        f'    if (outputs[{j}] == NULL) return {p}_fail("out of memory");'
        for j, f in enumerate(out_files)
    )
    compare = nl.join(
        f"    rc |= {p}_compare({j}, batch, outputs[{j}], expected[{j}], "
        f"(long)batch * {u}_OUT{j}_COUNT);"
        for j in range(n_out)
    )
    frees = nl.join(
        [f"    free(inputs[{i}]);" for i in range(n_in)]
        + [f"    free(expected[{j}]);\n    free(outputs[{j}]);" for j in range(n_out)]
    )
    plain, guarded = _calls(ex)
    load = ""
    if file_mode:
        load = f"""\
    /* 16 floats more, to start the weights on a 64-byte line (as NAME_weights.c would) */
    weights_raw = (float *)malloc(sizeof(float) * ({u}_WEIGHT_COUNT + 16));
    if (weights_raw == NULL) return {p}_fail("out of memory");
    weights = weights_raw + (16 - (uintptr_t)weights_raw / sizeof(float) % 16) % 16;
    sprintf(path, "%s/{p}_weights.bin", dir);
    rc = {p}_load_weights(path, weights);
    if (rc != 0) {{
        fprintf(stderr, "{p}: %s: %s\\n", path, {p}_strerror(rc));
        free(weights_raw);
        return 1;
    }}
"""
    own_arena = ""
    if file_mode and not ex.single:
        own_arena = f"""\
    else {{
        arena = (float *)malloc(sizeof(float) * ({u}_ARENA_FLOATS > 0 ? {u}_ARENA_FLOATS : 1));
        if (arena == NULL) return {p}_fail("out of memory");
    }}
"""
    line = (
        f'"{p}: batch %d, %ld outputs, max abs error %.3g (bound %.3g): %s\\n", batch, count'
        if n_out == 1
        else f'"{p}: output %d, %ld values, max abs error %.3g (bound %.3g): %s\\n", j, count'
    )
    unused_j = "    (void)j;\n" if n_out == 1 else "    (void)batch;\n"
    weights_note = (
        f"\n * The weights are read from {p}_weights.bin (in D) with {p}_load_weights."
        if file_mode
        else ""
    )
    return f"""\
/* Test harness for {p}: runs it on {", ".join(in_files)} and compares every output with
 * {", ".join(out_files)} (tconv's NumPy model; raw float32, the batch follows from the size).
 * Prints the max abs error per output and PASS/FAIL, exits 0/1.
 *   --dir D      read the files from folder D
 *   --bench R    print the median time of R runs
 *   --canary     run in a malloc'd arena filled with NaN, with {GUARD} NaN floats on each side,
 *                and check that the guards are untouched (no step writes outside its slice;
 *                a step reading a slice before it is written turns the outputs into
 *                NaN){weights_note}
 * Bound: |c - e| <= 1e-5 * s + TERMS * FLT_EPSILON * s, s = max(1, max |e|), TERMS = the most
 * products summed into one output. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 199309L
#endif
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "{p}.h"

#define {u}_TERMS {ex.terms}
#define {u}_GUARD {GUARD}

#ifdef {u}_TRACE_HOOK
static FILE *{p}_trace_file = NULL;
void {p}_trace(int step, const float *data, long count);
void {p}_trace(int step, const float *data, long count)
{{
    int head[2];
    if ({p}_trace_file == NULL) return;
    head[0] = step;
    head[1] = (int)count;
    fwrite(head, sizeof(int), 2, {p}_trace_file);
    fwrite(data, sizeof(float), (size_t)count, {p}_trace_file);
}}
/* a step that wrote its slice of a concatenation: rows of `count` floats, `stride` apart */
void {p}_trace_rows(int step, const float *data, long rows, long count, long stride);
void {p}_trace_rows(int step, const float *data, long rows, long count, long stride)
{{
    int head[2];
    long r;
    if ({p}_trace_file == NULL) return;
    head[0] = step;
    head[1] = (int)(rows * count);
    fwrite(head, sizeof(int), 2, {p}_trace_file);
    for (r = 0; r < rows; ++r)
        fwrite(data + r * stride, sizeof(float), (size_t)count, {p}_trace_file);
}}
#endif

{harness_helpers(p)}static int {p}_compare(int j, int batch, const float *c, const float *e,
{" " * len(p)}                        long count)
{{
    double err = 0.0, scale = 1.0, bound;
    long i;
    int nan = 0;
{unused_j}    for (i = 0; i < count; ++i) {{
        if (isnan(c[i]) || isnan(e[i])) {{
            nan |= isnan(c[i]) != isnan(e[i]);
            continue;
        }}
        if (fabs(e[i]) > scale) scale = fabs(e[i]);
        if (fabs((double)c[i] - e[i]) > err) err = fabs((double)c[i] - e[i]);
    }}
    bound = 1e-5 * scale + {u}_TERMS * (double)FLT_EPSILON * scale;
    printf({line}, err, bound, err <= bound && !nan ? "PASS" : "FAIL");
    return err <= bound && !nan ? 0 : 1;
}}

static int {p}_check_run(const char *dir, int bench, int canary)
{{
    char path[4096];
    float *inputs[{n_in}], *expected[{n_out}], *outputs[{n_out}];
    float *arena = NULL{", *weights = NULL, *weights_raw = NULL" if file_mode else ""};
    long count = 0, i;
    int batch = 0, rc = 0;
    if (strlen(dir) > 4000) return {p}_fail("--dir is too long");
{reads}
{expects}
{load}#ifdef {u}_TRACE_HOOK
    sprintf(path, "%s/{p}_trace.bin", dir);
    {p}_trace_file = fopen(path, "wb");
    if ({p}_trace_file == NULL) return {p}_fail("cannot write {p}_trace.bin");
#endif
    if (canary) {{
        const long floats = {u}_ARENA_FLOATS + 2 * {u}_GUARD;
        arena = (float *)malloc(sizeof(float) * (size_t)floats);
        if (arena == NULL) return {p}_fail("out of memory");
        for (i = 0; i < floats; ++i) arena[i] = NAN;
    }}
{own_arena}    rc = canary ? {guarded} : {plain};
    if (canary) {{
        for (i = 0; i < {u}_GUARD; ++i)
            if (!isnan(arena[i]) || !isnan(arena[{u}_GUARD + {u}_ARENA_FLOATS + i]))
                return {p}_fail("a step wrote outside the arena (guard changed): FAIL");
        printf("{p}: canary run, arena guards intact\\n");
    }}
#ifdef {u}_TRACE_HOOK
    fclose({p}_trace_file);
    {p}_trace_file = NULL;
#endif
    if (rc != 0) {{
        fprintf(stderr, "{p}: returned %d\\n", rc);
        return 1;
    }}
{compare}
    if (bench > 0 && rc == 0) {{
        double *times = (double *)malloc(sizeof(double) * (size_t)bench), median;
        int r;
        if (times == NULL) return {p}_fail("out of memory");
        (void){plain}; /* warm-up */
        for (r = 0; r < bench; ++r) {{
            const double t0 = {p}_now();
            (void){plain};
            times[r] = {p}_now() - t0;
        }}
        qsort(times, (size_t)bench, sizeof(double), {p}_cmp);
        median = times[bench / 2];
        printf("{p}: median %.4f ms over %d runs, %.2f GFLOP/s\\n", 1e3 * median, bench,
               2.0 * {u}_MACS * batch / median * 1e-9);
        free(times);
    }}
{frees}
    free(arena);
{"    free(weights_raw);" + nl if file_mode else ""}    return rc;
}}

static int {p}_check(const char *dir, int bench)
{{
    return {p}_check_run(dir, bench, 0);
}}

{harness_main(p, canary=True)}"""


def graph_rows(ex: ModelExport) -> list[dict[str, Any]]:
    """One row per step: index, layer, class, inputs, output shape, where it lives, notes."""
    rows = []
    for i, node in enumerate(ex.plan.steps):
        buf = ex.plan.buffer_of[node.name]
        rows.append(
            {
                "step": i,
                "node": node.name,
                "layer": node.layer,
                "class": node.layer_class,
                "inputs": list(node.inputs),
                "output_shape": list(node.shape),
                "place": buf.place,
                "offset_bytes": 4 * buf.offset if buf.place == "arena" else None,
                "bytes": 4 * node.size,
                "in_place": node.name in ex.plan.in_place,
                "slice_of": ex.plan.slice_of.get(node.name, (None, 0))[0],
                "how": ex.steps[i].how,
                "note": node.note,
            }
        )
    return rows


def memory_lines(ex: ModelExport) -> list[str]:
    d = describe(ex.plan)
    return [
        f"arena {d['arena_bytes']:,} bytes (NAME_ARENA_BYTES, one batch item)",
        f"lower bound {d['lower_bound_bytes']:,} bytes (the most bytes live at once in this "
        f"order): arena / bound = {d['arena_over_lower_bound']:.3f}",
        f"sum of all intermediates {d['intermediates_bytes']:,} bytes (each value its own buffer)",
        f"{d['steps']} steps, {d['buffers']} arena buffers, {d['in_place_steps']} in place; "
        f"the model's inputs and outputs stay in the caller's buffers",
    ] + _slice_lines(ex)


def _slice_lines(ex: ModelExport) -> list[str]:
    """Which producers write straight into a concatenation's slice, and what is copied."""
    memory = ex.plan
    concats = [n for n in memory.steps if n.op == "concat"]
    if not concats:
        return []
    writes = ", ".join(f"`{n}` -> `{c}`" for n, (c, _) in memory.slice_of.items()) or "none"
    copied = [f"`{n.inputs[i]}` -> `{n.name}`" for n in concats for i in memory.copied(n.name)]
    return [
        f"Concatenate: written straight into their slice (no copy): {writes}; copied (a graph "
        "input, read by another step, concatenated twice, or a row-wise activation): "
        + (", ".join(copied) or "none")
    ]


def _calling(ex: ModelExport) -> str:
    """The README's example call for the weights mode."""
    p, u = ex.name, ex.name.upper()
    if ex.weights_mode == "file":
        load = (
            f"static float w[{u}_WEIGHT_COUNT];\n"
            f'int rc = {p}_load_weights("{p}_weights.bin", w);  /* {p}_strerror(rc) explains */\n'
        )
        if ex.single:
            return load + f"if (rc == 0) rc = {p}_with_weights(w, input, output, batch);"
        return load + f"if (rc == 0) rc = {p}_run_with_weights(w, inputs, outputs, batch, arena);"
    if ex.single:
        return f"int rc = {p}(input, output, batch);"
    return f"int rc = {p}_run(inputs, outputs, batch);"


def readme_source(ex: ModelExport) -> str:
    """``README.md``: the API and files, the memory plan, the graph as a table, a section per
    transposed convolution (its geometry, layouts and loops), the accuracy bound."""
    p, u = ex.name, ex.name.upper()
    g = ex.graph
    table = [
        "| step | layer | class | inputs | output shape | arena offset (bytes) | how |",
        "|---:|---|---|---|---|---:|---|",
    ]
    for r in graph_rows(ex):
        where = r["offset_bytes"] if r["place"] == "arena" else f"caller's {r['place']}"
        how = r["how"] + (" (in place)" if r["in_place"] else "")
        if r["slice_of"]:
            how += f"; writes its slice of `{r['slice_of']}` (no copy)"
        if r["note"]:
            how += f"; {r['note']}"
        table.append(
            f"| {r['step']} | `{r['node']}` | {r['class']} | "
            f"{', '.join(f'`{i}`' for i in r['inputs'])} "
            f"| {tuple(r['output_shape'])} | {where} | {how} |"
        )
    ins = ", ".join(f"`{n}` {g.node(n).shape}" for n in g.inputs)
    outs = ", ".join(f"`{n}` {g.node(n).shape}" for n in g.outputs)
    file_mode = ex.weights_mode == "file"
    api = []
    if ex.single and not file_mode:
        api.append(f"`int {p}(const float *input, float *output, int batch)`")
    if ex.single:
        api.append(f"`int {p}_with_weights(const float *weights, const float *input, ...)`")
    if not file_mode:
        api += [
            f"`int {p}_run(const float *const *inputs, float *const *outputs, int batch)`",
            f"`int {p}_with_arena(..., void *arena)` (re-entrant, the caller's "
            f"{u}_ARENA_BYTES bytes)",
        ]
    api.append(f"`int {p}_run_with_weights(weights, inputs, outputs, batch, arena)` (re-entrant)")
    if file_mode:
        api.append(
            f"`int {p}_load_weights(const char *path, float *weights)` and "
            f"`{p}_strerror(code)`: the weights from `{p}_weights.bin` (magic, count, "
            "little-endian float32), checked"
        )
    weights_file = (
        f"`{p}_weights.c` (the loader) with `{p}_weights.bin`"
        if file_mode
        else f"`{p}_weights.c` (every weight as an exact hex float)"
    )
    spec = ex.layer
    what = (
        f"the transposed convolution `{g.outputs[0]}` ({spec.framework})"
        if spec is not None
        else f"the model `{g.name}`"
    )
    sections = [
        conv_transpose_section(
            s, ex.style, f"Step {i}: `{ex.plan.steps[i].name}` ({ex.plan.steps[i].layer_class})",
            ex.offsets[i],
        )
        for i, s in sorted(ex.specs.items())
    ]  # fmt: skip
    nl = "\n"
    return f"""\
# {p}: {what} in C99

Generated by tconv (style "{ex.style}" for the convolution-family steps, weights
"{ex.weights_mode}").  Inputs: {ins}.  Outputs: {outs}
(one item each, {_layout(ex)}; a batch is items one after another).

- API:
{nl.join("  - " + a for a in api)}

  0 on success, `{u}_ERR_BATCH` for batch < 0, `{u}_ERR_NULL` for a
  NULL pointer{", `" + u + "_ERR_OPEN/READ/FORMAT/SIZE` from the loader" if file_mode else ""}.
- Memory: no malloc, no VLA, no recursion.  The entry points without an `arena` argument use
  one static arena of `{u}_ARENA_BYTES` bytes (then they are not re-entrant; none when it is 0);
  {
        "one step on the caller's buffers runs the whole batch"
        if _batched(ex)
        else "batch items run one at a time"
    }.
- Files: `{p}.h`, `{p}.c`, {weights_file}: the library;
  `test_{p}.c` with {
        ", ".join(f"`{f}`" for f in ex.vectors[0] + ex.vectors[1])
    } (from tconv's NumPy model),
  `Makefile`, `CMakeLists.txt`.
- Build: `make` (runs the test against tconv's NumPy model; `make CC=clang` too),
  `make canary`, `make bench` (`./test_{p} --bench 20` prints the median time), `make shared`,
  or CMake.  Fastest: `make CFLAGS="-O3 -std=c99 -march=native -ffp-contract=fast -fopenmp"`;
  OpenMP splits the work inside steps, results are bit-identical without it.

## Calling it

```c
#include "{p}.h"
{_calling(ex)}   /* 0 on success */
```

## Memory

{nl.join("- " + line for line in memory_lines(ex))}

## The graph

{nl.join(table)}

{nl.join(sections)}
Accuracy: the harness passes when `|c - e| <= 1e-5*s + TERMS*FLT_EPSILON*s` with
`s = max(1, max|e|)` and TERMS = {ex.terms} (the longest sum of products).
"""


def export_model_c(
    model: Any,
    out_dir: str | Path,
    *,
    name: str = "model",
    style: str = "fast",
    weights: str = "inline",
    batch: int = 2,
    seed: int = 0,
    test_input: Sequence[np.ndarray] | np.ndarray | None = None,
    force: bool = False,
) -> list[Path]:
    """Write ``model`` (a :class:`tconv.keras.Model`, anything with a ``graph``, or a
    :class:`tconv.graph.Graph`) as a C99 project into ``out_dir``; return the files written.

    ``style`` (``"fast"``, ``"reference"``, ``"scatter"``: :mod:`tconv.kernels.emit`) is the
    kernel of the steps run as transposed convolutions (transposed, stride-1 and dense
    layers); ``weights="file"`` writes ``NAME_weights.bin`` and a checking loader
    ``NAME_load_weights`` instead of the weights as C literals.  The test vectors are
    ``batch`` random items per input (uniform in [-1, 1), seeded) or ``test_input`` (one
    array per input, or an array for one input), and tconv's NumPy model's outputs for them.
    """
    return write_project(
        model, out_dir, name=name, style=style, weights=weights, batch=batch, seed=seed,
        test_input=test_input, force=force,
    )  # fmt: skip


def write_project(
    model: Any,
    out_dir: str | Path,
    *,
    name: str,
    style: str,
    weights: str,
    batch: int,
    seed: int,
    test_input: Sequence[np.ndarray] | np.ndarray | None,
    force: bool,
    layer_names: bool = False,
) -> list[Path]:
    """:func:`export_model_c`; ``layer_names`` names the test vectors as a layer's
    (:func:`vector_files`)."""
    graph = getattr(model, "graph", model)
    if not isinstance(graph, Graph):
        raise TypeError(
            f"model must be a tconv.keras.Model (tconv.keras.load_model) or a tconv.graph.Graph, "
            f"got {type(model).__name__}"
        )
    if not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be a non-negative int, got batch={batch!r}")
    ex = build_export(graph, name, style=style, weights=weights, layer_names=layer_names)
    xs = _test_inputs(graph, batch, seed, test_input)
    ys = executor.run(graph, xs)
    out = prepare_dir(out_dir, force)
    p = ex.name
    files = {
        f"{p}.h": header_source(ex),
        f"{p}.c": library_source(ex),
        f"{p}_weights.c": loader_source(p) if weights == "file" else weights_source(ex),
        f"test_{p}.c": harness_source(ex),
        "Makefile": makefile(
            p,
            fastest="-O3 -std=c99 -march=native -ffp-contract=fast -fopenmp",
            canary=True,
            clean=f"{p}_trace.bin",
        ),
        "CMakeLists.txt": cmake_lists(p, canary=True),
        "README.md": readme_source(ex),
    }
    written = []
    for fname, text in files.items():
        (out / fname).write_text(text)
        written.append(out / fname)
    if weights == "file":
        write_weights_file(out / f"{p}_weights.bin", ex.weights)
        written.append(out / f"{p}_weights.bin")
    for fname, x in zip(ex.vectors[0], xs, strict=True):
        written.append(_write(out / fname, x))
    for fname, o in zip(ex.vectors[1], graph.outputs, strict=True):
        written.append(_write(out / fname, ys[o]))
    return written


def _write(path: Path, data: np.ndarray) -> Path:
    path.write_bytes(np.ascontiguousarray(data, dtype="<f4").tobytes())
    return path


def _test_inputs(
    graph: Graph, batch: int, seed: int, test_input: Sequence[np.ndarray] | np.ndarray | None
) -> list[np.ndarray]:
    shapes = [graph.node(n).shape for n in graph.inputs]
    if test_input is None:
        rng = np.random.default_rng(seed)
        return [rng.uniform(-1, 1, (batch, *s)).astype(np.float32) for s in shapes]
    arrays = [test_input] if isinstance(test_input, np.ndarray) else list(test_input)
    if len(arrays) != len(shapes):
        raise ValueError(f"test_input must hold {len(shapes)} array(s), got {len(arrays)}")
    out = []
    for i, (a, s) in enumerate(zip(arrays, shapes, strict=True)):
        a = np.asarray(a, np.float32)
        if a.shape[1:] != s:
            raise ValueError(
                f"test_input[{i}] shape {a.shape} must be (N, {', '.join(map(str, s))})"
            )
        out.append(a)
    if len({a.shape[0] for a in out}) > 1:
        raise ValueError("test_input arrays must have the same batch size")
    return out


# --- verify --------------------------------------------------------------------------------


def read_trace(path: Path) -> list[tuple[int, np.ndarray]]:
    """The harness' trace: ``(step, values)`` per traced step, in the order they ran."""
    data = path.read_bytes()
    out, at = [], 0
    while at < len(data):
        step, count = np.frombuffer(data, "<i4", 2, at)
        at += 8
        out.append((int(step), np.frombuffer(data, "<f4", int(count), at).copy()))
        at += 4 * int(count)
    return out


def _represents(graph: Graph, step: Node) -> str:
    """The last node whose value a step's output holds: the step, then the chain of identities
    that are each the only reader of the one before (the layers fused into the step, and
    dropout-like identities, which change nothing)."""
    readers = graph.readers()
    name = step.name
    while len(readers[name]) == 1 and graph.node(readers[name][0]).op == "identity":
        name = readers[name][0]
    return name


def verify_model(
    model: Any,
    out_dir: str | Path,
    name: str = "model",
    *,
    cc: str | None = None,
    cflags: Sequence[str] = ("-O2", *STRICT_FLAGS, "-Werror"),
    keras: bool | None = None,
    canary: bool = False,
) -> tuple[bool, list[dict[str, Any]], str]:
    """Build the export in ``out_dir`` with every step traced, run it on its test vectors, and
    compare each step's output with tconv's NumPy model and (``keras`` True, or None when Keras
    is installed and the model came from a file) with Keras.

    Returns ``(passed, rows, harness output)``: a row per step with ``step``, ``node``,
    ``layer``, ``class``, ``values``, ``max_abs_vs_numpy``, ``max_abs_vs_keras`` (None when not
    compared) and ``bound``.
    """
    import importlib.util

    graph = getattr(model, "graph", model)
    out = Path(out_dir).resolve()
    p = check_name(name)
    layer_names = (out / f"{p}_input.bin").exists() and not (out / f"{p}_in0.bin").exists()
    ex = build_export(graph, name, layer_names=layer_names)
    u = p.upper()
    flags = [*cflags, f"-D{u}_TRACE_HOOK"]
    compile_c(
        [f"test_{p}.c", f"{p}.c", f"{p}_weights.c"], f"test_{p}", cc=cc, cflags=flags, cwd=out
    )
    args = [str(out / f"test_{p}"), "--dir", str(out)] + (["--canary"] if canary else [])
    done = subprocess.run(args, cwd=out, capture_output=True, text=True)
    text = (done.stdout + done.stderr).strip()
    xs = []
    for fname, n in zip(ex.vectors[0], graph.inputs, strict=True):
        raw = np.fromfile(out / fname, "<f4")
        xs.append(raw.reshape(-1, *graph.node(n).shape))
    batch = xs[0].shape[0] if xs else 0
    values = executor.run(graph, xs, keep="all")
    fused_values = executor.run(ex.graph, xs, keep="all")
    use_keras = keras
    path = str(getattr(model, "path", "") or "")
    if use_keras is None:
        use_keras = bool(path) and importlib.util.find_spec("keras") is not None
    expected_keras: dict[str, np.ndarray] = {}
    layer_of = {}
    if use_keras and path:
        for step in ex.plan.steps:
            rep = _represents(ex.graph, step)
            if rep not in values:  # a node the export added (space-to-depth)
                continue
            node = graph.node(rep)
            last = [n.name for n in graph if n.layer == node.layer][-1]
            if last == rep:
                layer_of[step.name] = node.layer
        from ..peers import keras_layer_outputs

        found = keras_layer_outputs(path, xs, sorted(set(layer_of.values())))
        if isinstance(found, str):
            raise RuntimeError(f"{path}: {found}")
        expected_keras = found
    traced: dict[int, list[np.ndarray]] = {}
    for index, data in read_trace(out / f"{p}_trace.bin"):
        traced.setdefault(index, []).append(data)
    rows = []
    passed = done.returncode == 0
    for i, step in enumerate(ex.plan.steps):
        rep = _represents(ex.graph, step)
        got = np.stack(traced.get(i, [])) if traced.get(i) else np.zeros((0, *step.shape))
        got = got.reshape(-1, *step.shape) if got.size else got
        ref = values[rep] if rep in values else fused_values[rep]  # export-time nodes
        scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
        bound = 1e-5 * scale + ex.terms * float(np.finfo(np.float32).eps) * scale
        row: dict[str, Any] = {
            "step": i,
            "node": step.name,
            "value_of": rep,
            "layer": ex.graph.node(rep).layer,
            "class": ex.graph.node(rep).layer_class,
            "values": int(ref.size),
            "max_abs_vs_numpy": None,
            "max_abs_vs_keras": None,
            "bound": bound,
        }
        if got.shape[0] == batch and got.shape[1:] == ref.shape[1:]:
            row["max_abs_vs_numpy"] = float(np.max(np.abs(got - ref), initial=0.0))
            fused_err = float(np.max(np.abs(got - fused_values[step.name]), initial=0.0))
            passed &= fused_err <= bound and row["max_abs_vs_numpy"] <= bound
        else:
            passed = False
        k = expected_keras.get(layer_of.get(step.name, ""))
        if k is not None and k.shape == got.shape:
            row["max_abs_vs_keras"] = float(np.max(np.abs(got - k), initial=0.0))
            passed &= row["max_abs_vs_keras"] <= bound
        rows.append(row)
    return passed, rows, text


def verify_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The per-layer table of :func:`verify_model` as text."""

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2e}"

    table = [("step", "layer", "class", "values", "vs NumPy", "vs Keras", "bound")]
    for r in rows:
        table.append(
            (
                str(r["step"]),
                r["value_of"],
                r["class"],
                f"{r['values']:,}",
                num(r["max_abs_vs_numpy"]),
                num(r["max_abs_vs_keras"]),
                f"{r['bound']:.2e}",
            )
        )
    widths = [max(len(t[i]) for t in table) for i in range(7)]
    return [
        "  ".join(
            c.ljust(w) if k in (1, 2) else c.rjust(w)
            for k, (c, w) in enumerate(zip(t, widths, strict=True))
        )
        for t in table
    ]
