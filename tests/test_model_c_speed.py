"""The model export's speed paths against Keras: the few-filter convolution
(``tconv.cexport.cops._few_filters``) in 1D and 2D with causal, valid, even-kernel and same
padding, a softmax over its filters, and the fallback to the fast kernel when its ring of input
rows would not fit; a 1x1 convolution moved before a nearest upsampling
(``tconv.graph.fuse``).  The C under ASan/UBSan against Keras, and an OpenMP build forced to
split every few-filter layer (``-DTCONV_PARALLEL_MACS=1``, 2 threads) bit-identical to the
sequential one, step by step.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import peer
from test_keras_model import SEED
from test_model_c import SANITIZE, _against_keras, _build, _run

import tconv
import tconv.keras as tk
from tconv.cexport.model import build_export, read_trace
from tconv.graph import executor
from tconv.keras import zoo
from tconv.kernels.build import STRICT_FLAGS


def _model(keras):
    L = keras.layers
    a = keras.Input((16, 5), name="wave")
    b = keras.Input((9, 11, 8), name="image")
    wide = keras.Input((6, 40, 48), name="wide")
    pre = L.Conv2D(8, 1, name="pre")(b)
    up_c = L.UpSampling2D(2, name="up_c")(b)
    outs = [
        L.Conv1D(2, 4, padding="causal", name="causal")(a),
        L.Conv1D(3, 3, padding="valid", activation="tanh", name="valid1d")(a),
        L.Conv2D(1, (2, 3), padding="same", name="even")(b),
        L.Conv2D(4, 5, padding="valid", activation="softmax", name="soft")(b),
        L.Conv2D(3, 3, padding="same", name="big_ring")(
            wide
        ),  # a ring of 3*48*42 floats: fast kernel
        L.Conv2D(2, 1, name="after_up")(L.UpSampling2D(2, name="up")(b)),
        L.Add(name="up_sum")(  # a merge of two upsamplings: the sum runs on 9x11 pixels
            [L.UpSampling2D(2, name="up_a")(b), L.UpSampling2D(2, name="up_b")(pre)]
        ),
        L.Subtract(name="kept")([up_c, L.UpSampling2D(2, name="up_d")(b)]),  # up_c read twice
        L.Conv2D(2, 1, name="after_c")(up_c),
    ]
    return keras.Model([a, b, wide], outs, name="few")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    keras = peer("keras")
    model = zoo.randomize(_model(keras), SEED)
    rng = np.random.default_rng(SEED)
    xs = {t.name: rng.uniform(-1, 1, (2, *t.shape[1:])).astype(np.float32) for t in model.inputs}
    path = tmp_path_factory.mktemp("few") / "few.keras"
    model.save(path)
    # by name: tconv's graph may list the inputs in another order than Keras' model.inputs
    order = tk.load_model(path).graph.inputs
    return path, [xs[n] for n in order], [np.asarray(y) for y in model(xs)]


def test_which_layers_take_the_speed_paths(saved):
    model = tk.load_model(saved[0])
    ex = build_export(model.graph, "m")
    how = {n.name: step.how for n, step in zip(ex.plan.steps, ex.steps, strict=True)}
    for name in ("causal", "valid1d", "even", "soft"):
        assert "vectorized over the pixels of a row" in how[name], how[name]
    assert "over each pixel's 4 values" in how["soft"]
    assert "fast stride-phase kernel" in how["big_ring"]
    # the 1x1 convolution runs on the 9x11 pixels, its output is upsampled
    assert ex.graph.node("after_up/before_upsample").shape == (9, 11, 2)
    assert ex.graph.node("after_up").op == "upsample"
    assert ex.graph.node("up_sum/before_upsample").inputs == ("image", "pre")
    assert ex.graph.node("up_sum").op == "upsample"
    assert ex.graph.node("kept").op == "subtract" and ex.graph.node("after_c").op == "conv"
    assert not {"up", "up_a", "up_b"} & set(ex.graph.names())
    assert {"up_c", "up_d"} <= set(ex.graph.names())
    xs = saved[1]
    plain = executor.run(model.graph, xs, keep="all")
    fused = executor.run(ex.graph, xs, keep="all")
    for name in ("after_up", "up_sum"):  # the same products and sums, the same bits
        assert np.array_equal(plain[name], fused[name])


def test_few_filter_c_matches_keras_and_openmp_is_bit_identical(saved, tmp_path):
    path, xs, expected = saved
    model = tk.load_model(path)
    tconv.export_c(model, tmp_path, name="few", test_input=xs)
    _against_keras(tmp_path, "few", expected)
    text = _run(_build(tmp_path, "few", SANITIZE), "--canary")
    assert text.count("PASS") == len(expected) and "FAIL" not in text
    traces = []
    for tag, flags in (("seq", []), ("omp", ["-fopenmp", "-DTCONV_PARALLEL_MACS=1"])):
        exe = _build(tmp_path, "few", ["-O2", *STRICT_FLAGS, "-Werror", "-DFEW_TRACE_HOOK", *flags])
        exe.rename(tmp_path / f"test_few_{tag}")
        done = subprocess.run(
            [str(tmp_path / f"test_few_{tag}")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={"OMP_NUM_THREADS": "2"},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        traces.append(read_trace(tmp_path / "few_trace.bin"))
    assert len(traces[0]) == len(traces[1]) > 0
    for (s0, a), (s1, b) in zip(*traces, strict=True):
        assert s0 == s1 and np.array_equal(a.view(np.uint32), b.view(np.uint32))
