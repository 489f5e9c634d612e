"""The whole-model side of the subcommands: ``tconv export-c MODEL`` (no ``--layer``),
``tconv inspect MODEL --all``, ``tconv explain MODEL --layer NAME --input x.npy`` with the
model's input, ``tconv bench --model MODEL``."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np


def _load(path: str) -> Any:
    from ..keras import load_model

    return load_model(path)


def export_c(args: argparse.Namespace) -> int:
    """``tconv export-c MODEL --out DIR [--style S] [--weights-file] [--verify]``: the whole
    model as one C project."""
    from ..cexport.model import (
        build_export,
        export_model_c,
        graph_rows,
        memory_lines,
        verify_lines,
        verify_model,
    )
    from ..graph.planner import describe

    model = _load(args.model)
    name = args.name or "model"
    test_input = None
    if args.input:
        test_input = model_inputs(model, args.input)
    weights = "file" if args.weights_file else "inline"
    files = export_model_c(
        model, args.out, name=name, style=args.style, weights=weights, force=args.force,
        test_input=test_input,
    )  # fmt: skip
    ex = build_export(model.graph, name, style=args.style, weights=weights)
    summary: dict[str, Any] = {
        "files": [str(f) for f in files],
        "name": name,
        "memory": describe(ex.plan),
        "graph": graph_rows(ex),
    }
    status = 0
    if args.verify:
        passed, rows, text = verify_model(model, args.out, name, cc=args.cc)
        summary["verify"] = {"passed": passed, "harness": text, "layers": rows}
        status = 0 if passed else 1
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return status
    print(f"wrote {len(files)} files to {args.out}: {', '.join(f.name for f in files)}")
    for line in memory_lines(ex):
        print(f"  {line}")
    if args.verify:
        print(summary["verify"]["harness"])
        print("per layer, max |C - NumPy model| and max |C - Keras| over the test batch:")
        for line in verify_lines(summary["verify"]["layers"]):
            print(f"  {line}")
        print("PASS" if summary["verify"]["passed"] else "FAIL")
    return status


def model_inputs(model: Any, path: str) -> list[np.ndarray]:
    """The arrays of ``--input``: one ``.npy`` (one input) or an ``.npz`` (one array per input,
    in order), batch axis added when missing, checked against the model's inputs."""
    data = np.load(path)
    arrays = [data[k] for k in data.files] if hasattr(data, "files") else [data]
    shapes = [model.graph.node(n).shape for n in model.graph.inputs]
    if len(arrays) != len(shapes):
        raise ValueError(f"--input {path}: the model takes {len(shapes)} inputs, got {len(arrays)}")
    out = []
    for a, s in zip(arrays, shapes, strict=True):
        a = np.asarray(a, np.float32)
        if a.shape == s:
            a = a[None]
        if a.shape[1:] != s:
            raise ValueError(
                f"--input {path}: items of shape {a.shape[1:]} but the model's input takes {s}"
            )
        out.append(a)
    return out


def layer_input(path: str, layer: str, x: np.ndarray) -> np.ndarray | None:
    """The input that reaches ``layer`` when the model of ``path`` runs on ``x``, if ``x``
    holds items of the model's (single) input shape; ``None`` otherwise (``x`` is then the
    layer's own input), or when tconv cannot load the whole model."""
    try:
        model = _load(path)
    except ValueError:
        return None
    if len(model.graph.inputs) != 1:
        return None
    item = model.graph.node(model.graph.inputs[0]).shape
    batch = x[None] if x.shape == item else x
    if batch.shape[1:] != item:
        return None
    return model.layer_input(batch, layer)


def inspect_all(args: argparse.Namespace) -> int:
    """``tconv inspect MODEL --all``: every layer (name, class, output shape, parameters,
    multiply-adds) and the C export's memory plan."""
    from ..cexport.model import build_export, graph_rows, memory_lines
    from ..graph.planner import describe
    from ..keras.model import summary_lines

    model = _load(args.model)
    ex = build_export(model.graph, "model")
    if args.json:
        print(
            json.dumps(
                {"layers": model.rows(), "memory": describe(ex.plan), "plan": graph_rows(ex)},
                indent=2,
                default=str,
            )
        )
        return 0
    for line in summary_lines(model.name, model.rows()):
        print(line)
    print()
    print("Memory plan of the C export (tconv export-c MODEL):")
    for line in memory_lines(ex):
        print(f"  {line}")
    for r in graph_rows(ex):
        where = f"arena +{r['offset_bytes']}" if r["place"] == "arena" else f"caller's {r['place']}"
        extra = " (in place)" if r["in_place"] else ""
        print(
            f"  [{r['step']:>3}] {r['node']:<28} {str(tuple(r['output_shape'])):<18} "
            f"{r['bytes']:>9,} B  {where}{extra}"
        )
    return 0
