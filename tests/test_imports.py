"""``import tconv`` is light and reaches every public module; ``src/tconv`` has no import cycle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tconv"
HEAVY = ("tensorflow", "keras", "tf_keras", "torch", "jax", "onnx", "onnxruntime", "matplotlib")
PUBLIC = (
    "keras",
    "torch",
    "onnx",
    "jax",
    "layouts",
    "explanation",
    "cexport",
    "kernels",
    "tflite",
)


def _run(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


def test_import_tconv_loads_no_framework_and_no_adapter():
    got = _run(
        "import json, sys, tconv; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{HEAVY!r} or m.startswith('tconv.'))))"
    )
    assert got == [
        "tconv.activations",
        "tconv.checks",
        "tconv.geometry",
        "tconv.layer",
        "tconv.ops",
    ]


def test_every_public_module_is_an_attribute_of_tconv():
    got = _run(
        "import json, sys, types, tconv; "
        f"mods = {{n: isinstance(getattr(tconv, n), types.ModuleType) for n in {PUBLIC!r}}}; "
        "c = tconv.keras.Conv2DTranspose(4, 3, strides=2, padding='same'); "
        "print(json.dumps({'modules': mods, 'dir': sorted(set(dir(tconv)) & set(mods)), "
        "'class': type(c).__name__, "
        f"'heavy': sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})}}))"
    )
    assert got["modules"] == dict.fromkeys(PUBLIC, True)
    assert got["dir"] == sorted(PUBLIC)
    assert got["class"] == "Conv2DTranspose"
    assert got["heavy"] == []  # the adapters import their framework only when asked to


def test_unknown_attribute_is_an_attribute_error():
    import tconv

    with pytest.raises(AttributeError, match="no attribute 'kears'"):
        tconv.kears  # noqa: B018


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the tconv modules it imports anywhere in its file (function bodies and
    ``TYPE_CHECKING`` blocks too), including the packages a dotted import passes through."""
    mods = _modules()
    graph = {}
    for mod, (path, is_package) in mods.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if is_package else mod.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join([*here, *([node.module] if node.module else [])])
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                for i in range(2, len(parts) + 1):
                    name = ".".join(parts[:i])
                    # The importer's own packages are already being imported: no edge.
                    if name in mods and name != mod and not mod.startswith(name + "."):
                        edges.add(name)
        graph[mod] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_cycles():
    graph = import_graph()
    assert "tconv.geometry" in graph["tconv.ops"]  # edges are seen, lazy ones too
    assert "tconv.kernels" in graph["tconv.ops"]
    graph["tconv.geometry"] = {*graph["tconv.geometry"], "tconv.layer"}
    assert ["tconv.geometry", "tconv.layer"] in [
        [m for m in c if m in ("tconv.geometry", "tconv.layer")] for c in cycles(graph)
    ]


def test_the_definition_imports_none_of_its_consumers():
    graph = import_graph()
    below = {"tconv.geometry", "tconv.activations", "tconv.checks"}
    assert graph["tconv.geometry"] <= below
    consumers = {
        m for m in graph if m.split(".")[1:2] in (["cexport"], ["explanation"], ["commands"])
    }
    for mod in ("tconv.ops", "tconv.layer", "tconv.kernels.build", "tconv.kernels.emit"):
        assert not graph[mod] & consumers, mod
