"""A whole model (a :class:`tconv.graph.Graph`, e.g. from :func:`tconv.keras.load_model`) as one
allocation-free C99 project.

:func:`export_model_c` fuses the graph (:func:`tconv.graph.fuse.fuse`), plans its memory
(:func:`tconv.graph.planner.plan`), and writes ``NAME.h``, ``NAME.c`` (one commented call per
layer), ``NAME_weights.c`` (every weight as an exact hex float), ``test_NAME.c`` (a harness
with the test vectors ``NAME_in<i>.bin``/``NAME_out<j>.bin``), ``Makefile``,
``CMakeLists.txt`` and ``README.md`` (the graph as a table, the memory plan).
:func:`verify_model` builds the harness with every intermediate traced and compares each with
tconv's NumPy model and, when Keras is installed, with Keras.
"""

from __future__ import annotations

import math
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
from ..kernels.spec import check_name
from .cops import Step, step_source
from .harness import cmake_lists, harness_helpers, makefile
from .project import prepare_dir

__all__ = ["ModelExport", "export_model_c", "plan_graph", "verify_model"]

GUARD = 64
"""Floats of canary on each side of the arena in the harness' ``--canary`` run."""


def plan_graph(graph: Graph) -> tuple[Graph, Plan]:
    """The fused graph and its memory plan, as the C export uses them."""
    fused = fuse(graph)
    return fused, plan(fused)


@dataclass
class ModelExport:
    """What :func:`export_model_c` generated: the fused graph, the plan, each step's C."""

    name: str
    graph: Graph  # the fused graph
    plan: Plan
    steps: list[Step]
    offsets: list[int]  # each step's weights offset, floats
    weights: np.ndarray
    terms: int  # the longest sum of products, for the rounding bound


def _location(plan: Plan, name: str) -> str:
    buf = plan.buffer_of[name]
    if buf.place == "input":
        return f"in[{buf.index}]"
    if buf.place == "output":  # a slice of a concatenation the caller gets starts inside it
        return f"out[{buf.index}] + {buf.offset}" if buf.offset else f"out[{buf.index}]"
    return f"A + {buf.offset}"


def _terms(graph: Graph) -> int:
    longest = 1
    for node in graph:
        if node.op in ("dense", "conv"):
            longest = max(longest, int(np.prod(node.weights["kernel"].shape[:-1])))
        elif node.op == "conv_transpose":
            op = node.params["op"]
            longest = max(longest, int(np.prod(op.kernel_size)) * int(op.kernel.shape[-1]))
        elif node.op in ("layer_norm", "softmax", "global_pool"):
            longest = max(longest, node.size)
    return longest


def build_export(graph: Graph, name: str) -> ModelExport:
    """Fuse, plan and generate the C of every step of ``graph``."""
    name = check_name(name)
    fused, memory = plan_graph(graph)
    shapes = {n.name: n.shape for n in fused}
    steps, offsets, blobs = [], [], []
    at = 0
    for i, node in enumerate(memory.steps):
        copied = memory.copied(node.name) if node.op == "concat" else None
        step = step_source(
            f"{name}_l{i}", node, [shapes[s] for s in node.inputs], memory.row_of(node.name), copied
        )
        steps.append(step)
        offsets.append(at)
        blobs.append(step.weights.astype(np.float32).reshape(-1))
        at += step.weights.size
    weights = np.concatenate(blobs) if blobs else np.zeros(0, np.float32)
    return ModelExport(name, fused, memory, steps, offsets, weights, _terms(graph))


# --- sources -------------------------------------------------------------------------------


def _shape_macros(u: str, kind: str, index: int, shape: tuple[int, ...]) -> list[str]:
    return [
        f"#define {u}_{kind}{index}_SHAPE {{{', '.join(map(str, shape))}}}",
        f"#define {u}_{kind}{index}_RANK {len(shape)}",
        f"#define {u}_{kind}{index}_COUNT {math.prod(shape)} /* floats per batch item */",
    ]


def header_source(ex: ModelExport) -> str:
    p, u = ex.name, ex.name.upper()
    g = ex.graph
    lines = [f"#define {u}_INPUTS {len(g.inputs)}", f"#define {u}_OUTPUTS {len(g.outputs)}"]
    for i, n in enumerate(g.inputs):
        lines += _shape_macros(u, "IN", i, g.node(n).shape)
    for j, n in enumerate(g.outputs):
        lines += _shape_macros(u, "OUT", j, g.node(n).shape)
    single = len(g.inputs) == 1 and len(g.outputs) == 1
    if single:
        lines += [f"#define {u}_IN_COUNT {u}_IN0_COUNT", f"#define {u}_OUT_COUNT {u}_OUT0_COUNT"]
    shapes = {n.name: n.shape for n in g}
    total_macs = sum(macs(n, shapes) for n in g)
    lines += [
        f"#define {u}_ARENA_FLOATS {ex.plan.arena}",
        f"#define {u}_ARENA_BYTES {4 * ex.plan.arena} /* one batch item's intermediates */",
        f"#define {u}_WEIGHT_COUNT {ex.weights.size}",
        f"#define {u}_MACS {total_macs} /* multiply-adds per batch item */",
        f"#define {u}_ERR_BATCH (-1)",
        f"#define {u}_ERR_NULL (-2)",
    ]
    protos = []
    if single:
        protos += [
            f"/* One input, one output: batch x {u}_IN_COUNT floats in, batch x {u}_OUT_COUNT"
            " out,\n * Keras' layout (row-major, batch items contiguous).  Uses the static "
            f"arena: not\n * re-entrant (see {p}_with_arena).  Returns 0, {u}_ERR_BATCH for "
            f"batch < 0,\n * {u}_ERR_NULL for a NULL pointer. */",
            f"int {p}(const float *input, float *output, int batch);",
        ]
    protos += [
        f"/* Every input and output in the model's order: inputs[i] holds batch x "
        f"{u}_IN<i>_COUNT\n * floats, outputs[j] batch x {u}_OUT<j>_COUNT.  Static arena "
        "(not re-entrant). */",
        f"int {p}_run(const float *const *inputs, float *const *outputs, int batch);",
        f"/* The same in the caller's memory: `arena` holds {u}_ARENA_BYTES bytes, aligned "
        "for\n * float (16 bytes or more is best).  Re-entrant: no static state. */",
        f"int {p}_with_arena(const float *const *inputs, float *const *outputs, int batch, "
        "void *arena);",
    ]
    nl = "\n"
    return f"""\
/* {p}: the model {g.name!r} exported by tconv.  See README.md. */
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


def library_source(ex: ModelExport) -> str:
    p, u = ex.name, ex.name.upper()
    g, memory = ex.graph, ex.plan
    defs = []
    for i, (node, step) in enumerate(zip(memory.steps, ex.steps, strict=True)):
        defs.append(f"/* ---- [{i}] {node.name} ({node.layer_class}) ---- */\n{step.code}")
    body = []
    for i, (node, step) in enumerate(zip(memory.steps, ex.steps, strict=True)):
        decl = []
        if "(W," in step.call:
            decl.append(f"const float *W = {p}_weights + {ex.offsets[i]};")
        for k, source in enumerate(node.inputs):
            decl.append(f"const float *x{k} = {_location(memory, source)};")
        decl.append(f"float *y = {_location(memory, node.name)};")
        inner = "\n".join(f"            {d}" for d in decl)
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
    nl = "\n"
    ins = nl.join(
        f"        in[{i}] = inputs[{i}] + (ptrdiff_t)n * {u}_IN{i}_COUNT;"
        for i in range(len(g.inputs))
    )
    outs = nl.join(
        f"        out[{j}] = outputs[{j}] + (ptrdiff_t)n * {u}_OUT{j}_COUNT;"
        for j in range(len(g.outputs))
    )
    checks = " || ".join(
        [f"inputs[{i}] == NULL" for i in range(len(g.inputs))]
        + [f"outputs[{j}] == NULL" for j in range(len(g.outputs))]
    )
    single = ""
    if len(g.inputs) == 1 and len(g.outputs) == 1:
        single = f"""
int {p}(const float *input, float *output, int batch)
{{
    const float *inputs[1];
    float *outputs[1];
    inputs[0] = input;
    outputs[0] = output;
    return {p}_run(inputs, outputs, batch);
}}
"""
    uses_a = "A +" in "".join(body)
    arena_decl = "    float *A = (float *)arena;\n" if uses_a else "    (void)arena;\n"
    return f"""\
/* {p}: the model {g.name!r}, generated by tconv.
 *
 * One call per layer, in order, on one batch item at a time.  Every intermediate value lives
 * in the arena at the offset the liveness planner gave it (README.md, "Memory"); the model's
 * inputs and outputs stay in the caller's buffers.  No allocation, no recursion, no VLA.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "{p}.h"

extern const float {p}_weights[{u}_WEIGHT_COUNT > 0 ? {u}_WEIGHT_COUNT : 1];

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
int {p}_with_arena(const float *const *inputs, float *const *outputs, int batch, void *arena)
{{
{arena_decl}    const float *in[{u}_INPUTS];
    float *out[{u}_OUTPUTS];
    int n;
    if (batch < 0) return {u}_ERR_BATCH;
    if (inputs == NULL || outputs == NULL || arena == NULL) return {u}_ERR_NULL;
    if ({checks}) return {u}_ERR_NULL;
    for (n = 0; n < batch; ++n) {{
{ins}
{outs}
{nl.join(body)}
    }}
    return 0;
}}

int {p}_run(const float *const *inputs, float *const *outputs, int batch)
{{
    /* the one static buffer of the export: {u}_ARENA_BYTES bytes */
    static float arena[{u}_ARENA_FLOATS > 0 ? {u}_ARENA_FLOATS : 1];
    return {p}_with_arena(inputs, outputs, batch, arena);
}}
{single}"""


def weights_source(ex: ModelExport) -> str:
    p, u = ex.name, ex.name.upper()
    values = [emit.c_float(v) for v in ex.weights.astype(np.float64).tolist()] or ["0.0f"]
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

extern const float {p}_weights[{u}_WEIGHT_COUNT > 0 ? {u}_WEIGHT_COUNT : 1];
const float {p}_weights[{u}_WEIGHT_COUNT > 0 ? {u}_WEIGHT_COUNT : 1] = {{
    {body}
}};
"""


def harness_source(ex: ModelExport) -> str:
    p, u = ex.name, ex.name.upper()
    g = ex.graph
    n_in, n_out = len(g.inputs), len(g.outputs)
    nl = "\n"
    reads = nl.join(
        f'    sprintf(path, "%s/{p}_in{i}.bin", dir);\n'
        f"    inputs[{i}] = {p}_read(path, &count);\n"
        f"    if (inputs[{i}] == NULL || count % {u}_IN{i}_COUNT != 0)\n"
        f'        return {p}_fail("cannot read {p}_in{i}.bin");\n'
        + (
            "    batch = (int)(count / " + f"{u}_IN{i}_COUNT);"
            if i == 0
            else f"    if (count / {u}_IN{i}_COUNT != batch)\n"
            f'        return {p}_fail("inputs disagree on the batch");'
        )
        for i in range(n_in)
    )
    expects = nl.join(
        f'    sprintf(path, "%s/{p}_out{j}.bin", dir);\n'
        f"    expected[{j}] = {p}_read(path, &count);\n"
        f"    if (expected[{j}] == NULL || count != (long)batch * {u}_OUT{j}_COUNT)\n"
        f'        return {p}_fail("cannot read {p}_out{j}.bin");\n'
        f"    outputs[{j}] = (float *)malloc(sizeof(float) * (size_t)(count > 0 ? count : 1));\n"
        f'    if (outputs[{j}] == NULL) return {p}_fail("out of memory");'
        for j in range(n_out)
    )
    compare = nl.join(
        f"    rc |= {p}_compare({j}, outputs[{j}], expected[{j}], (long)batch * {u}_OUT{j}_COUNT);"
        for j in range(n_out)
    )
    frees = nl.join(
        [f"    free(inputs[{i}]);" for i in range(n_in)]
        + [f"    free(expected[{j}]);\n    free(outputs[{j}]);" for j in range(n_out)]
    )
    return f"""\
/* Test harness for {p}: runs the model on {p}_in<i>.bin and compares every output with
 * {p}_out<j>.bin (tconv's NumPy model; raw float32, the batch follows from the size).
 * Prints the max abs error per output and PASS/FAIL, exits 0/1.
 *   --dir D      read the files from folder D
 *   --bench R    print the median time of R runs
 *   --canary     run in a malloc'd arena filled with NaN, with {GUARD} NaN floats on each side,
 *                and check that the guards are untouched (no step writes outside its slice;
 *                a step reading a slice before it is written turns the outputs into NaN)
 * Bound: |c - e| <= 1e-5 * s + TERMS * FLT_EPSILON * s, s = max(1, max |e|). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 199309L
#endif
#include <float.h>
#include <math.h>
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

{harness_helpers(p)}static int {p}_compare(int j, const float *c, const float *e, long count)
{{
    double err = 0.0, scale = 1.0, bound;
    long i;
    int nan = 0;
    for (i = 0; i < count; ++i) {{
        if (isnan(c[i]) || isnan(e[i])) {{
            nan |= isnan(c[i]) != isnan(e[i]);
            continue;
        }}
        if (fabs(e[i]) > scale) scale = fabs(e[i]);
        if (fabs((double)c[i] - e[i]) > err) err = fabs((double)c[i] - e[i]);
    }}
    bound = 1e-5 * scale + {u}_TERMS * (double)FLT_EPSILON * scale;
    printf("{p}: output %d, %ld values, max abs error %.3g (bound %.3g): %s\\n", j, count, err,
           bound, err <= bound && !nan ? "PASS" : "FAIL");
    return err <= bound && !nan ? 0 : 1;
}}

int main(int argc, char **argv)
{{
    const char *dir = ".";
    char path[4096];
    float *inputs[{n_in}], *expected[{n_out}], *outputs[{n_out}];
    float *arena = NULL;
    long count = 0, i;
    int batch = 0, bench = 0, canary = 0, rc = 0, a;
    for (a = 1; a < argc; ++a) {{
        if (strcmp(argv[a], "--bench") == 0 && a + 1 < argc) bench = atoi(argv[++a]);
        else if (strcmp(argv[a], "--dir") == 0 && a + 1 < argc) dir = argv[++a];
        else if (strcmp(argv[a], "--canary") == 0) canary = 1;
        else {{
            fprintf(stderr, "usage: %s [--bench R] [--dir D] [--canary]\\n", argv[0]);
            return 2;
        }}
    }}
    if (strlen(dir) > 4000) return {p}_fail("--dir is too long");
{reads}
{expects}
#ifdef {u}_TRACE_HOOK
    sprintf(path, "%s/{p}_trace.bin", dir);
    {p}_trace_file = fopen(path, "wb");
    if ({p}_trace_file == NULL) return {p}_fail("cannot write {p}_trace.bin");
#endif
    if (canary) {{
        const long floats = {u}_ARENA_FLOATS + 2 * {u}_GUARD;
        arena = (float *)malloc(sizeof(float) * (size_t)floats);
        if (arena == NULL) return {p}_fail("out of memory");
        for (i = 0; i < floats; ++i) arena[i] = NAN;
        rc = {p}_with_arena((const float *const *)inputs, outputs, batch, arena + {u}_GUARD);
        for (i = 0; i < {u}_GUARD; ++i)
            if (!isnan(arena[i]) || !isnan(arena[{u}_GUARD + {u}_ARENA_FLOATS + i]))
                return {p}_fail("a step wrote outside the arena (guard changed): FAIL");
        printf("{p}: canary run, arena guards intact\\n");
    }} else {{
        rc = {p}_run((const float *const *)inputs, outputs, batch);
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
        (void){p}_run((const float *const *)inputs, outputs, batch); /* warm-up */
        for (r = 0; r < bench; ++r) {{
            const double t0 = {p}_now();
            (void){p}_run((const float *const *)inputs, outputs, batch);
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
    return rc;
}}
"""


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


def readme_source(ex: ModelExport) -> str:
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
    api = (
        f"`int {p}(const float *input, float *output, int batch)`, "
        if (len(g.inputs) == 1 and len(g.outputs) == 1)
        else ""
    )
    nl = "\n"
    return f"""\
# {p}: the model `{g.name}` in C99

Generated by tconv.  Inputs: {ins}.  Outputs: {outs} (one item each, Keras' layout,
row-major; a batch is items one after another).

- API: {api}`int {p}_run(const float *const *inputs, float *const *outputs, int batch)` and
  `int {p}_with_arena(..., void *arena)` (re-entrant, the caller's {u}_ARENA_BYTES bytes).
  0 on success, `{u}_ERR_BATCH` for batch < 0, `{u}_ERR_NULL` for a NULL pointer.
- Memory: no malloc, no VLA, no recursion.  `{p}` and `{p}_run` use one static arena of
  `{u}_ARENA_BYTES` bytes (so they are not re-entrant); batch items run one at a time.
- Build: `make` (runs the test against tconv's NumPy model), `make canary`, `make bench`,
  or CMake.  OpenMP inside layers: add `-fopenmp`; results are bit-identical without it.

## Memory

{nl.join("- " + line for line in memory_lines(ex))}

## The graph

{nl.join(table)}

Accuracy: the harness passes when `|c - e| <= 1e-5*s + TERMS*FLT_EPSILON*s` with
`s = max(1, max|e|)` and TERMS = {ex.terms} (the longest sum of products in the model).
"""


def export_model_c(
    model: Any,
    out_dir: str | Path,
    *,
    name: str = "model",
    batch: int = 2,
    seed: int = 0,
    test_input: Sequence[np.ndarray] | np.ndarray | None = None,
    force: bool = False,
) -> list[Path]:
    """Write ``model`` (a :class:`tconv.keras.Model` or anything with a ``graph``) as a C99
    project into ``out_dir``; return the files written.

    The test vectors are ``batch`` random items per input (uniform in [-1, 1), seeded) or
    ``test_input`` (one array per input, or an array for one input), and tconv's NumPy
    model's outputs for them.
    """
    graph = getattr(model, "graph", model)
    if not isinstance(graph, Graph):
        raise TypeError(
            f"model must be a tconv.keras.Model (tconv.keras.load_model) or a tconv.graph.Graph, "
            f"got {type(model).__name__}"
        )
    if not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be a non-negative int, got batch={batch!r}")
    ex = build_export(graph, name)
    xs = _test_inputs(graph, batch, seed, test_input)
    ys = executor.run(graph, xs)
    out = prepare_dir(out_dir, force)
    p = ex.name
    files = {
        f"{p}.h": header_source(ex),
        f"{p}.c": library_source(ex),
        f"{p}_weights.c": weights_source(ex),
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
    for i, x in enumerate(xs):
        written.append(_write(out / f"{p}_in{i}.bin", x))
    for j, o in enumerate(graph.outputs):
        written.append(_write(out / f"{p}_out{j}.bin", ys[o]))
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
    ex = build_export(graph, name)
    p, u = ex.name, ex.name.upper()
    flags = [*cflags, f"-D{u}_TRACE_HOOK"]
    compile_c(
        [f"test_{p}.c", f"{p}.c", f"{p}_weights.c"], f"test_{p}", cc=cc, cflags=flags, cwd=out
    )
    args = [str(out / f"test_{p}"), "--dir", str(out)] + (["--canary"] if canary else [])
    done = subprocess.run(args, cwd=out, capture_output=True, text=True)
    text = (done.stdout + done.stderr).strip()
    xs = []
    for i, n in enumerate(graph.inputs):
        raw = np.fromfile(out / f"{p}_in{i}.bin", "<f4")
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
