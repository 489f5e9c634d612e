"""Issue 10's design item: the single-layer C export is the one-node case of the model export.

- A layer exported by itself and the same layer saved as a one-layer Keras model and exported
  as a model (``tconv.keras.load_model``) have the same step code in ``NAME.c`` and compute the
  same numbers, bit for bit (traced), which agree with Keras.
- The options of the layer export are options of the one pipeline: a model exported with
  ``weights="file"`` and ``style="reference"`` (and a two-input, two-output one with
  ``style="scatter"``) builds under the sanitizers, runs with a canary arena and verifies.
- A channels-first (PyTorch) layer is one node in its own layout (no transposes) and verifies
  against PyTorch.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close, peer
from test_model_c import SANITIZE, _build, _run

import tconv
import tconv.keras as tk
from tconv import cexport
from tconv.cexport.model import read_trace, verify_model
from tconv.graph import Graph
from tconv.keras import zoo
from tconv.kernels.build import STRICT_FLAGS

TRACE = ["-O2", *STRICT_FLAGS, "-Werror"]


def _steps(source: str, name: str) -> str:
    """The step definitions of ``NAME.c``: from the first step to the entry points."""
    start = source.index("/* ---- [0]")
    return source[start : source.index(f"int {name}_run_with_weights(")]


def _traced(out: Path, name: str) -> list[np.ndarray]:
    u = name.upper()
    exe = _build(out, name, [*TRACE, f"-D{u}_TRACE_HOOK"])
    assert "PASS" in _run(exe)
    return [data for _, data in read_trace(out / f"{name}_trace.bin")]


def test_layer_and_one_layer_model_are_the_same_c(tmp_path: Path) -> None:
    keras = peer("keras")
    model = keras.Sequential(
        [
            keras.Input((5, 6, 8)),
            keras.layers.Conv2DTranspose(
                12, 3, strides=2, padding="same", activation="relu", name="up"
            ),
        ]
    )
    zoo.randomize(model, 3)
    path = tmp_path / "one.keras"
    model.save(path)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 5, 6, 8)).astype(np.float32)
    expected = np.asarray(model(x))
    layer = tk.load_layers(path)["up"]
    files = tconv.export_c(layer, tmp_path / "layer", name="up", test_input=x)
    assert {f.name for f in files} >= {"up_input.bin", "up_expected.bin", "up_weights.c"}
    tconv.export_c(tk.load_model(path), tmp_path / "model", name="up", test_input=x)
    layer_c = (tmp_path / "layer" / "up.c").read_text()
    model_c = (tmp_path / "model" / "up.c").read_text()
    assert _steps(layer_c, "up") == _steps(model_c, "up")
    assert "up_l0_compute(W, x0, y, batch);" in layer_c  # the batch in one call, no loop
    for f in ("up.h", "up_weights.c"):  # same macros and weights; only the titles differ
        a, b = ((tmp_path / d / f).read_text().split("\n")[2:] for d in ("layer", "model"))
        assert a == b, f
    header = (tmp_path / "layer" / "up.h").read_text()
    for macro in ("UP_RANK 2", "UP_IN_DIM2 8", "UP_OUT_COUNT 1440", "UP_ARENA_BYTES 0"):
        assert f"#define {macro}" in header
    counts = dict(re.findall(r"#define UP_(KERNEL|WEIGHT)_COUNT (\d+)", header))
    assert int(counts["WEIGHT"]) == int(counts["KERNEL"]) + 12  # the kernel, then the bias
    assert "/* kernel data, then 12 bias values */" in header
    for proto in ("up(const float *input", "up_with_weights(", "up_run(", "up_with_arena("):
        assert f"int {proto}" in header
    readme = (tmp_path / "layer" / "README.md").read_text()
    assert "## Step 0: `up` (Conv2DTranspose)" in readme and 'Style "fast" uses' in readme
    assert "## Step 0: `up` (Conv2DTranspose)" in (tmp_path / "model" / "README.md").read_text()
    # the same numbers, bit for bit, within the bound of Keras
    layer_y, model_y = _traced(tmp_path / "layer", "up"), _traced(tmp_path / "model", "up")
    assert len(layer_y) == len(model_y) == 2  # one trace per item
    for a, b in zip(layer_y, model_y, strict=True):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    assert_close(np.stack(layer_y).reshape(expected.shape), expected, terms=9 * 8)
    ok, text = cexport.verify(tmp_path / "layer", "up")
    assert ok and re.search(r"up: batch 2, 2880 outputs, max abs error \S+ \(bound", text), text
    _tasks_are_the_call(tmp_path / "layer", x)


def _tasks_are_the_call(out: Path, x: np.ndarray) -> None:
    """The layer project keeps the fast style's task entry points: any split of a call's tasks
    gives the output of ``up(...)`` bit for bit."""
    import ctypes

    cexport.compile_c(["up.c", "up_weights.c"], "libup.so", cflags=["-O2"], shared=True, cwd=out)
    lib = ctypes.CDLL(str(out / "libup.so"))
    fp = ctypes.POINTER(ctypes.c_float)
    lib.up_task_count.restype = ctypes.c_long
    lib.up_tasks_with_weights.argtypes = [fp, fp, fp, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    count = int(re.search(r"#define UP_WEIGHT_COUNT (\d+)", (out / "up.h").read_text())[1])
    weights = np.frombuffer((ctypes.c_float * count).in_dll(lib, "up_weights"), np.float32)
    whole = np.empty((2, 10, 12, 12), np.float32)
    assert lib.up(x.ctypes.data_as(fp), whole.ctypes.data_as(fp), 2) == 0
    total = lib.up_task_count(2)
    parts = np.full_like(whole, np.nan)
    args = [weights.ctypes.data_as(fp), x.ctypes.data_as(fp), parts.ctypes.data_as(fp), 2]
    for first, last in ((0, total // 3), (total // 3, total)):
        assert lib.up_tasks_with_weights(*args, first, last) == 0
    assert total > 1 and np.array_equal(parts, whole)


@pytest.fixture(scope="module")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list]]:
    keras = peer("keras")
    tmp = tmp_path_factory.mktemp("options")
    layers = keras.layers
    z = keras.Input((6,), name="z")
    h = layers.Reshape((2, 2, 4))(layers.Dense(16, name="dense")(z))
    h = layers.Conv2DTranspose(6, 3, strides=2, padding="same", name="up")(h)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.ReLU(name="relu")(h)
    h = layers.Conv2D(5, 3, padding="same", name="conv")(h)
    h = layers.Conv2D(4, 2, strides=2, name="down")(h)
    decoder = zoo.randomize(keras.Model(z, layers.Activation("tanh", name="out")(h)), 5)
    a, b = keras.Input((4, 3), name="a"), keras.Input((4, 3), name="b")
    s = layers.Add(name="sum")([layers.Dense(3, name="da")(a), b])
    t = layers.Conv1DTranspose(2, 3, strides=2, padding="same", activation="elu", name="t")(s)
    merge = zoo.randomize(keras.Model([a, b], [t, layers.Softmax(name="soft")(s)]), 6)
    rng = np.random.default_rng(2)
    built = {}
    for key, model in (("decoder", decoder), ("merge", merge)):
        model.save(tmp / f"{key}.keras")
        xs = [rng.uniform(-1, 1, (2, *i.shape[1:])).astype(np.float32) for i in model.inputs]
        built[key] = (tmp / f"{key}.keras", xs)
    return built


@pytest.mark.parametrize(("key", "style"), [("decoder", "reference"), ("merge", "scatter")])
def test_model_with_weights_file_and_a_style_verifies(small_models, tmp_path, key, style) -> None:  # noqa: ANN001
    path, xs = small_models[key]
    model = tk.load_model(path)
    files = tconv.export_c(model, tmp_path, name="m", style=style, weights="file", test_input=xs)
    names = {f.name for f in files}
    assert {"m_weights.bin", "m_in0.bin", "m_out0.bin"} <= names
    assert "m_weights[" not in (tmp_path / "m_weights.c").read_text()  # the loader, no literals
    header = (tmp_path / "m.h").read_text()
    assert "int m_load_weights(const char *path, float *weights);" in header
    assert "int m_run_with_weights(" in header and "int m_run(" not in header
    source = (tmp_path / "m.c").read_text()
    kernel = {"reference": "reference gather loops", "scatter": "scatter loops"}[style]
    assert kernel in source and "fast stride-phase" not in source
    passed, rows, text = verify_model(model, tmp_path, "m", keras=True)
    assert passed, text
    assert sum(r["max_abs_vs_keras"] is not None for r in rows) >= 3
    text = _run(_build(tmp_path, "m", SANITIZE), "--canary")
    assert "arena guards intact" in text and "FAIL" not in text
    assert text.count("PASS") == len(model.graph.outputs)
    (tmp_path / "m_weights.bin").write_bytes(b"NOTTCONV")
    done = subprocess.run(["./test_m"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "bad magic" in done.stderr


def test_every_step_s_weights_start_on_a_cache_line(small_models, tmp_path) -> None:  # noqa: ANN001
    """Each step's weights start at a multiple of 16 floats (64 bytes) of the weight array
    (zeros between steps), and gcc puts the inline array on a 64-byte line: an AVX2 build's
    weight loads 16 bytes past a line straddle two (seed_k5_b8 6 % slower on a Zen 4)."""
    import ctypes

    path, xs = small_models["decoder"]
    tconv.export_c(tk.load_model(path), tmp_path, name="m", test_input=xs)
    source = (tmp_path / "m.c").read_text()
    offsets = [int(n) for n in re.findall(r"const float \*W = weights \+ (\d+);", source)]
    assert len(offsets) >= 3 and offsets[-1] > 0 and all(o % 16 == 0 for o in offsets)
    cexport.compile_c(["m.c", "m_weights.c"], "libmw.so", cflags=["-O2"], shared=True, cwd=tmp_path)
    lib = ctypes.CDLL(str(tmp_path / "libmw.so"))
    assert ctypes.addressof(ctypes.c_float.in_dll(lib, "m_weights")) % 64 == 0
    assert verify_model(tk.load_model(path), tmp_path, "m", keras=True)[0]


def test_channels_first_torch_layer_is_one_node_and_verifies(tmp_path: Path) -> None:
    torch = peer("torch")
    from tconv.torch import ConvTranspose2d

    torch.manual_seed(0)
    module = torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
    layer = ConvTranspose2d.from_torch(module).op()
    assert layer.channels_first
    graph = Graph.of_layer(layer, (6, 5, 7))
    assert [n.op for n in graph] == ["input", "conv_transpose"]  # no transposes
    assert graph.node(graph.outputs[0]).shape == (4, 10, 14)
    with pytest.raises(ValueError, match="channels"):
        Graph.of_layer(layer, (5, 7, 6))
    x = np.random.default_rng(0).uniform(-1, 1, (3, 6, 5, 7)).astype(np.float32)
    for style in ("fast", "reference"):
        out = tmp_path / style
        cexport.export_c(layer, out, name="pt", style=style, input_shape=(6, 5, 7), test_input=x)
        assert "(C, *spatial) per item" in (out / "pt.h").read_text()
        assert "channels_first" in (out / "README.md").read_text()
        exe = _build(out, "pt", [*SANITIZE, "-DPT_TRACE_HOOK"])
        assert "PASS" in _run(exe)
        got = np.stack([d for _, d in read_trace(out / "pt_trace.bin")]).reshape(3, 4, 10, 14)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        assert_close(got, expected, terms=9 * 3)
