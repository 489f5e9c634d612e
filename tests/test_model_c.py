"""The whole-model C export: the memory plan, and the generated C against Keras.

- The plan: no two buffers live at the same time overlap, the arena is within 1.1x of the
  liveness lower bound on every test model, and running the graph in NumPy *inside the planned
  arena* (every step reading and writing its slices) gives every value of the plain run.
- The C of each test architecture and of every layer class alone (the branch models of
  tests/test_keras_model.py), built with ``-Wall -Wextra -Werror`` under ASan and UBSan, run
  against Keras' own outputs (the harness' expected files are Keras'), once with a NaN-filled
  arena with guard zones (``--canary``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close, peer
from test_keras_model import CASES, INPUTS, SEED, group_model, terms

import tconv
import tconv.keras as tk
from tconv import cexport
from tconv.cexport.model import build_export, read_trace, verify_model
from tconv.graph import Graph, Node, executor
from tconv.graph.planner import plan
from tconv.keras import zoo
from tconv.kernels.build import STRICT_FLAGS

SANITIZE = [
    "-O1",
    "-g",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    *STRICT_FLAGS,
    "-Werror",
]


def simulate(graph: Graph) -> None:
    """Run ``graph``'s fused form inside its planned arena and check every value."""
    ex = build_export(graph, "sim")
    memory, fused = ex.plan, ex.graph
    memory.check()
    rng = np.random.default_rng(0)
    xs = [rng.uniform(-1, 1, (1, *fused.node(n).shape)).astype(np.float32) for n in fused.inputs]
    expected = executor.run(fused, xs, keep="all")
    arena = np.full(memory.arena, np.nan, np.float32)
    caller = {("input", i): xs[i].reshape(-1).copy() for i in range(len(xs))}
    for j, name in enumerate(fused.outputs):
        caller[("output", j)] = np.full(fused.node(name).size, np.nan, np.float32)

    def where(name: str) -> tuple[np.ndarray, np.ndarray]:
        """The array holding ``name`` and the indices of its floats (a slice of a
        concatenation's buffer: every row-th run of its channels)."""
        buf = memory.buffer_of[name]
        data = arena if buf.place == "arena" else caller[(buf.place, buf.index)]
        return data, buf.root.offset + buf.indices()

    def view(name: str) -> np.ndarray:
        data, at = where(name)
        return data[at].reshape(1, *fused.node(name).shape)

    for node in memory.steps:
        result = executor.run_node(node, [view(s).copy() for s in node.inputs]).reshape(-1)
        data, at = where(node.name)
        if node.op == "concat":  # it writes only what its inputs did not write into their slices
            done = [where(n)[1] for n, (c, _) in memory.slice_of.items() if c == node.name]
            keep = ~np.isin(at, np.concatenate([np.zeros(0, np.int64), *done]))
            data[at[keep]] = result[keep]
        else:
            data[at] = result
        assert_close(view(node.name), expected[node.name])
    for name, j in memory.copies:
        caller[("output", j)][...] = view(name).reshape(-1)
    for j, name in enumerate(fused.outputs):
        assert_close(caller[("output", j)].reshape(1, *fused.node(name).shape), expected[name])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every test architecture saved as .keras, with Keras' output for a seeded batch."""
    keras = peer("keras")
    tmp = tmp_path_factory.mktemp("zoo_c")
    out = {}
    for name in zoo.ARCHITECTURES:
        model = zoo.build(name, keras, seed=SEED)
        x = np.random.default_rng(SEED).uniform(-1, 1, (2, *model.input_shape[1:]))
        x = x.astype(np.float32)
        model.save(tmp / f"{name}.keras")
        out[name] = (tmp / f"{name}.keras", x, np.asarray(model(x)))
    return out


@pytest.mark.parametrize("name", sorted(zoo.ARCHITECTURES))
def test_plan_of_architecture(saved, name):
    model = tk.load_model(saved[name][0])
    simulate(model.graph)
    memory = build_export(model.graph, "m").plan
    assert memory.arena <= 1.1 * memory.lower_bound
    assert memory.arena < memory.total  # reuse happened


def test_plan_reuses_in_place_and_aliases():
    """A hand-made chain: relu in place, reshape an alias, add into its dead operand."""
    w = {"kernel": np.ones((4, 4), np.float32)}
    nodes = [
        Node("x", "input", (), {"shape": (4,), "index": 0}, shape=(4,)),
        Node("d1", "dense", ("x",), {"activation": "linear"}, w, shape=(4,)),
        Node("act", "activation", ("d1",), {"name": "tanh"}, shape=(4,)),
        Node("r", "reshape", ("act",), {"shape": (2, 2)}, shape=(2, 2)),
        Node("back", "reshape", ("r",), {"shape": (4,)}, shape=(4,)),
        Node("d2", "dense", ("back",), {"activation": "linear"}, w, shape=(4,)),
        Node("sum", "add", ("d2", "back"), shape=(4,)),
        Node("y", "dense", ("sum",), {"activation": "linear"}, w, shape=(4,)),
    ]
    graph = Graph(nodes, ["x"], ["y"])
    memory = plan(graph)
    memory.check()
    b = memory.buffer_of
    assert b["act"] is b["d1"] and b["r"] is b["d1"] and b["back"] is b["d1"]
    assert "act" in memory.in_place and "sum" in memory.in_place
    assert b["sum"] in (b["d2"], b["d1"])
    assert b["y"].place == "output" and b["x"].place == "input"
    assert memory.arena == 8 == memory.lower_bound  # two live 4-float vectors at most
    simulate(graph)


def _run(exe: Path, *args: str) -> str:
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=exe.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _build(out: Path, name: str, flags: list[str], cc: str = "gcc") -> Path:
    cexport.compile_c(
        [f"test_{name}.c", f"{name}.c", f"{name}_weights.c"],
        f"test_{name}",
        cc=cc,
        cflags=flags,
        cwd=out,
    )
    return out / f"test_{name}"


def _against_keras(out: Path, name: str, expected: list[np.ndarray]) -> None:
    """Make the harness compare with Keras: its expected files become Keras' outputs."""
    for j, y in enumerate(expected):
        path = out / f"{name}_out{j}.bin"
        assert path.stat().st_size == 4 * y.size
        path.write_bytes(np.ascontiguousarray(y, "<f4").tobytes())


@pytest.mark.parametrize("name", sorted(zoo.ARCHITECTURES))
def test_architecture_c_matches_keras_under_sanitizers(saved, tmp_path, name):
    path, x, expected = saved[name]
    model = tk.load_model(path)
    files = tconv.export_c(model, tmp_path, name="net", test_input=x)
    assert {f.name for f in files} >= {
        "net.h",
        "net.c",
        "net_weights.c",
        "test_net.c",
        "Makefile",
        "CMakeLists.txt",
        "README.md",
    }
    _against_keras(tmp_path, "net", [expected])
    exe = _build(tmp_path, "net", SANITIZE)
    for args in ((), ("--canary",)):
        text = _run(exe, *args)
        assert "PASS" in text and "FAIL" not in text
    header = (tmp_path / "net.h").read_text()
    assert "int net(const float *input, float *output, int batch);" in header
    assert "#define NET_ARENA_BYTES" in header
    readme = (tmp_path / "README.md").read_text()
    assert "lower bound" in readme and "| step | layer |" in readme


def test_c_verify_per_layer_against_numpy_and_keras(saved, tmp_path):
    peer("keras")
    path, x, _ = saved["unet"]
    model = tk.load_model(path)
    tconv.export_c(model, tmp_path, name="unet", test_input=x)
    passed, rows, text = verify_model(model, tmp_path, "unet", keras=True)
    assert passed, text
    compared = [r for r in rows if r["max_abs_vs_keras"] is not None]
    # every step that ends a Keras layer; the six UpSampling2D layers have no step of their
    # own: the export runs them after the 1x1 Conv2D or Add that reads them (graph.fuse), whose
    # upsampled outputs are compared (UpSampling2D alone: test_every_layer_class_in_c_...)
    assert len(compared) >= 28
    assert all(r["max_abs_vs_numpy"] <= r["bound"] for r in rows)
    classes = {r["class"] for r in compared}
    assert {"Add", "Concatenate", "BatchNormalization", "MaxPooling2D", "Conv2D"} <= classes


def test_openmp_is_bit_identical_and_clang_builds(saved, tmp_path):
    """The same trace with and without OpenMP (2 threads), and clang builds it warning-free."""
    path, x, _ = saved["dcgan"]
    model = tk.load_model(path)
    tconv.export_c(model, tmp_path, name="g", test_input=x)
    traces = []
    for tag, flags in (("seq", []), ("omp", ["-fopenmp"])):
        exe = _build(tmp_path, "g", ["-O2", *STRICT_FLAGS, "-Werror", "-DG_TRACE_HOOK", *flags])
        exe.rename(tmp_path / f"test_g_{tag}")
        subprocess.run(
            [str(tmp_path / f"test_g_{tag}")],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            env={"OMP_NUM_THREADS": "2"},
        )
        traces.append(read_trace(tmp_path / "g_trace.bin"))
    assert len(traces[0]) == len(traces[1]) > 0
    for (s0, a), (s1, b) in zip(*traces, strict=True):
        assert s0 == s1 and np.array_equal(a.view(np.uint32), b.view(np.uint32))
    clang = subprocess.run(["which", "clang"], capture_output=True, text=True).stdout.strip()
    if not clang:
        pytest.skip("clang not installed")
    exe = _build(tmp_path, "g", ["-O2", *STRICT_FLAGS, "-Werror"], cc="clang")
    assert "PASS" in _run(exe)


# --- every layer class alone, in C ---------------------------------------------------------


@pytest.fixture(scope="module")
def groups_c(tmp_path_factory):
    keras = peer("keras")
    tmp = tmp_path_factory.mktemp("groups_c")
    built = {}
    rng = np.random.default_rng(SEED)
    for group in ("vec", "1d", "2d", "3d", "merge"):
        model = group_model(keras, group, CASES[group])
        xs = [rng.uniform(-1, 1, (2, *INPUTS[group])).astype(np.float32) for _ in model.inputs]
        model.save(tmp / f"{group}.keras")
        expected = [np.asarray(y) for y in model(xs if len(xs) > 1 else xs[0])]
        built[group] = (tmp / f"{group}.keras", xs, expected)
    return built


@pytest.mark.parametrize("group", ["vec", "1d", "2d", "3d", "merge"])
def test_every_layer_class_in_c_matches_keras(groups_c, tmp_path, group):
    path, xs, expected = groups_c[group]
    model = tk.load_model(path)
    simulate(model.graph)
    tconv.export_c(model, tmp_path, name="g", test_input=xs)
    _against_keras(tmp_path, "g", expected)
    exe = _build(tmp_path, "g", SANITIZE)
    text = _run(exe, "--canary")
    assert text.count("PASS") == len(expected) and "FAIL" not in text
    assert terms(model) >= 1


def test_export_c_command_whole_model(saved, tmp_path, capsys):
    from tconv import cli

    path = saved["vae_decoder"][0]
    out = tmp_path / "vae"
    assert cli.main(["export-c", str(path), "--out", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "lower bound" in text and "vs Keras" in text
    assert cli.main(["inspect", str(path), "--all"]) == 0
    text = capsys.readouterr().out
    assert "Conv2DTranspose" in text and "Memory plan" in text and "arena" in text
    argv = ["export-c", str(path), "--out", str(tmp_path / "x"), "--style", "reference"]
    assert cli.main([*argv, "--weights-file"]) == 0  # options of the one pipeline (issue 10)
    capsys.readouterr()
    assert (tmp_path / "x" / "model_weights.bin").exists()
    assert '(style "reference", weights "file")' in (tmp_path / "x" / "model.h").read_text()
    import json

    x = saved["vae_decoder"][1]
    np.save(tmp_path / "x.npy", x)
    argv = [
        "export-c",
        str(path),
        "--out",
        str(tmp_path / "j"),
        "--input",
        str(tmp_path / "x.npy"),
        "--name",
        "vae",
        "--json",
    ]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["name"] == "vae" and summary["memory"]["arena_bytes"] > 0
    assert [r["class"] for r in summary["graph"]][-1] == "Conv2DTranspose"
    assert np.array_equal(np.fromfile(tmp_path / "j" / "vae_in0.bin", "<f4"), x.reshape(-1))
    assert cli.main(["inspect", str(path), "--all", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in found["layers"]][:2] == ["z", "dense"]
    assert found["memory"]["arena_bytes"] == summary["memory"]["arena_bytes"]


def test_tf_keras_2_h5_model_c_matches_tf_keras(tmp_path):
    tf_keras = peer("tf_keras")
    model = zoo.build("pix2pix", tf_keras, seed=SEED)
    x = np.random.default_rng(3).uniform(-1, 1, (2, *model.input_shape[1:])).astype(np.float32)
    model.save(tmp_path / "p.h5")
    loaded = tk.load_model(tmp_path / "p.h5")
    tconv.export_c(loaded, tmp_path / "c", name="p2p", test_input=x)
    _against_keras(tmp_path / "c", "p2p", [np.asarray(model(x, training=False))])
    text = _run(_build(tmp_path / "c", "p2p", SANITIZE), "--canary")
    assert "PASS" in text and "FAIL" not in text


def test_bench_model_runs_every_peer(saved, tmp_path, capsys):
    peer("tensorflow")
    from tconv import cli

    report_path = tmp_path / "r.json"
    argv = [
        "bench",
        "--model",
        str(saved["autoencoder"][0]),
        "--repeats",
        "1",
        "--json",
        str(report_path),
    ]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "tconv C ms" in text and "TFLite tensors" in text
    import json

    report = json.loads(report_path.read_text())
    assert set(report["c_seconds"]) == {"1", "2"}
    for threads in ("1", "2"):
        found = report["peers"][threads]
        assert found["keras_max_abs_vs_tconv"] < 1e-5
        assert found["tflite_max_abs_vs_tconv"] < 1e-5
        assert 0 < found["tflite_activation_bytes"] <= found["tflite_total_bytes"]
    assert report["memory"]["arena_bytes"] == report["memory"]["lower_bound_bytes"]


def test_strided_convolutions_run_on_space_to_depth(saved):
    """pix2pix's stride-2 4x4 convolutions become space-to-depth + stride-1 2x2 ones (the
    same values: the C tests above run them against Keras); a 1x1 stride-2 one (4x the
    multiply-adds that way) stays a direct loop."""
    fused = build_export(tk.load_model(saved["pix2pix"][0]).graph, "p").graph
    s2d = [n for n in fused if n.op == "space_to_depth"]
    assert [n.name for n in s2d] == [
        "down0/space_to_depth",
        "down1/space_to_depth",
        "down2/space_to_depth",
    ]
    conv = fused.node("down0")
    assert conv.params["strides"] == (1, 1) and conv.weights["kernel"].shape[:2] == (2, 2)
    unet = build_export(tk.load_model(saved["unet"][0]).graph, "u").graph
    assert unet.node("down0_res").params["strides"] == (2, 2)
    assert "stem/space_to_depth" in unet.names()
