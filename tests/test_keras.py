"""tconv.keras against the real Keras 3 (TensorFlow backend) and tf.keras 2.x: ops and layers.

TensorFlow's CPU kernel refuses ``dilation_rate > 1`` and ``channels_first``, and aborts on
``same`` with an even kernel and ``output_padding=0``; those cases are compared with Keras' own
JAX-backend implementation (``keras.src.backend.jax.nn.conv_transpose``), which Keras runs for
the ``jax`` and ``numpy`` backends.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from conftest import assert_close, peer
from hypothesis import given, settings
from hypothesis import strategies as st

import tconv.keras as tk

METHODS = ("fast", "reference")


@pytest.fixture(scope="module")
def keras():
    return peer("keras")


@pytest.fixture(scope="module")
def keras_jax():
    """Keras' JAX-backend conv_transpose (the formula Keras documents, run by JAX)."""
    peer("jax")
    peer("keras")
    from keras.src.backend.jax import nn

    def run(x, k, strides, padding, output_padding, data_format, dilation_rate):
        y = nn.conv_transpose(x, k, strides, padding, output_padding, data_format, dilation_rate)
        return np.asarray(y)

    return run


def _data(rng, shape, dtype="float32"):
    return rng.standard_normal(shape).astype(dtype)


def _terms(kernel_shape) -> int:
    return int(np.prod(kernel_shape[:-2])) * int(kernel_shape[-1])


# --- the rule itself ------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_output_length_matches_keras_shape_function(keras, padding):
    from keras.src.backend.common.backend_utils import compute_conv_transpose_output_shape

    for n, k, s, d in itertools.product(range(0, 6), range(1, 6), range(1, 5), range(1, 3)):
        for op in (None, *range(s)):
            ours = tk.output_length(n, k, s, d, padding, op)
            theirs = compute_conv_transpose_output_shape(
                (1, n, 1), (k,), 1, (s,), padding, op if op is None else (op,), dilation_rate=(d,)
            )[1]
            assert ours == theirs, (n, k, s, d, padding, op)


def test_tf_keras_length_rule_is_identical():
    peer("tf_keras")
    from tf_keras.src.utils.conv_utils import deconv_output_length

    for n, k, s, d in itertools.product(range(1, 6), range(1, 6), range(1, 5), range(1, 3)):
        for padding in ("valid", "same"):
            for op in (None, *range(s)):
                expected = deconv_output_length(n, k, padding, op, s, d)
                assert tk.output_length(n, k, s, d, padding, op) == expected


# --- keras.ops.conv_transpose over a systematic grid ----------------------------------------

KERNEL_STRIDE = [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2), (4, 2), (2, 3), (3, 3), (5, 3)]


def _grid():
    cases = []
    for (k, s), padding, op_kind, size in itertools.product(
        KERNEL_STRIDE, ("valid", "same"), ("none", "zero", "max"), (1, 4)
    ):
        op = {"none": None, "zero": 0, "max": s - 1}[op_kind]
        if padding == "same" and op is not None and k % 2 == 0 and op == 0:
            continue  # TensorFlow aborts here: see test_same_even_kernel_zero_output_padding
        cases.append((1, (size,), (k,), (s,), padding, op))
    rng = np.random.default_rng(7)
    for rank, count in ((2, 24), (3, 10)):
        for _ in range(count):
            pairs = [KERNEL_STRIDE[i] for i in rng.integers(len(KERNEL_STRIDE), size=rank)]
            padding = ("valid", "same")[int(rng.integers(2))]
            op_kind = int(rng.integers(3))
            ops = [None if op_kind == 0 else 0 if op_kind == 1 else s - 1 for _, s in pairs]
            if (
                padding == "same"
                and op_kind
                and any(k % 2 == 0 and o == 0 for (k, _), o in zip(pairs, ops, strict=True))
            ):
                ops = [s - 1 for _, s in pairs]
                if any(k % 2 == 0 and o == 0 for (k, _), o in zip(pairs, ops, strict=True)):
                    padding = "valid"
            sizes = tuple(int(v) for v in rng.integers(1, 5, size=rank))
            cases.append(
                (
                    rank,
                    sizes,
                    tuple(k for k, _ in pairs),
                    tuple(s for _, s in pairs),
                    padding,
                    None if op_kind == 0 else tuple(ops),
                )
            )
    return cases


GRID = _grid()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", GRID, ids=[str(i) for i in range(len(GRID))])
def test_ops_grid_against_keras(keras, case, method):
    rank, sizes, kernel, strides, padding, op = case
    rng = np.random.default_rng(len(sizes) * 100 + sum(sizes) + sum(kernel))
    for batch in (0, 1, 3) if rank == 1 else (2,):
        x = _data(rng, (batch, *sizes, 3))
        w = _data(rng, (*kernel, 2, 3))
        expected = np.asarray(keras.ops.conv_transpose(x, w, strides, padding, op))
        actual = tk.conv_transpose(x, w, strides, padding, op, method=method)
        assert actual.dtype == np.float32
        assert_close(actual, expected, _terms(w.shape))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_ops_float64_and_float16(keras, rank, method):
    rng = np.random.default_rng(rank)
    w64 = _data(rng, (*(3,) * rank, 4, 5), "float64")
    x64 = _data(rng, (2, *(3,) * rank, 5), "float64")
    expected = np.asarray(keras.ops.conv_transpose(x64, w64, 2, "same", 1))
    actual = tk.conv_transpose(x64, w64, 2, "same", 1, method=method)
    assert actual.dtype == np.float64
    assert_close(actual, expected, _terms(w64.shape))
    x16, w16 = x64.astype(np.float16), w64.astype(np.float16)
    expected16 = np.asarray(keras.ops.conv_transpose(x16, w16, 2, "same", 1))
    actual16 = tk.conv_transpose(x16, w16, 2, "same", 1, method=method)
    assert actual16.dtype == np.float16
    # TensorFlow accumulates float16 its own way: allow a few float16 rounding steps.
    scale = max(1.0, float(np.abs(expected16.astype(np.float32)).max()))
    diff = np.abs(actual16.astype(np.float32) - expected16.astype(np.float32)).max()
    assert diff <= 4 * float(np.finfo(np.float16).eps) * scale


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_ops_channels_first_and_dilation(keras_jax, keras, rank, padding, method):
    """TF's CPU kernel supports neither: check against Keras' JAX backend and TF by transposing."""
    rng = np.random.default_rng(rank + 10)
    w = _data(rng, (*(3,) * rank, 2, 3))
    x = _data(rng, (2, 3, *(4,) * rank))
    cases = [
        (2, 1, None),
        (2, 1, 1),
        (1, 2, None),
        (1, (2, 3, 1)[:rank], 0),
        (2, 2, None),
        (3, 2, 2),
    ]
    for strides, dilation, op in cases:  # keras.ops allows strides > 1 with dilation > 1
        args = (strides, padding, op, "channels_first", dilation)
        expected = keras_jax(x, w, *args)
        actual = tk.conv_transpose(x, w, *args, method=method)
        assert_close(actual, expected, _terms(w.shape))
        if dilation == 1:
            last = np.asarray(
                keras.ops.conv_transpose(np.moveaxis(x, 1, -1), w, strides, padding, op)
            )
            assert_close(actual, np.moveaxis(last, -1, 1), _terms(w.shape))
        channels_last = tk.conv_transpose(
            np.moveaxis(x, 1, -1), w, strides, padding, op, None, dilation
        )
        np.testing.assert_array_equal(np.moveaxis(channels_last, -1, 1), actual)


@pytest.mark.parametrize("method", METHODS)
def test_same_even_kernel_zero_output_padding(keras, keras_jax, method):
    """TF aborts; tconv follows Keras' documented length, as Keras' JAX/NumPy backends do."""
    tf = peer("tensorflow")
    rng = np.random.default_rng(3)
    for k, s in ((2, 1), (4, 2), (2, 3)):
        x, w = _data(rng, (1, 4, 2)), _data(rng, (k, 3, 2))
        with pytest.raises(tf.errors.InvalidArgumentError):
            keras.ops.conv_transpose(x, w, s, "same", 0)
        expected = keras_jax(x, w, s, "same", 0, "channels_last", 1)
        actual = tk.conv_transpose(x, w, s, "same", 0, method=method)
        assert actual.shape == (1, 3 * s, 3)
        assert_close(actual, expected, _terms(w.shape))


@pytest.mark.parametrize("method", METHODS)
def test_zero_length_axes_and_nonfinite(keras, method):
    rng = np.random.default_rng(5)
    w = _data(rng, (3, 4, 2))
    for padding, op in (("valid", None), ("same", None), ("same", 1), ("valid", 0)):
        x = np.zeros((2, 0, 2), np.float32)
        expected = np.asarray(keras.ops.conv_transpose(x, w, 2, padding, op))
        actual = tk.conv_transpose(x, w, 2, padding, op, method=method)
        assert actual.shape == expected.shape
        np.testing.assert_array_equal(actual, expected)
    x = _data(rng, (1, 5, 2))
    x[0, 1, 0], x[0, 3, 1] = np.nan, np.inf
    expected = np.asarray(keras.ops.conv_transpose(x, w, 2, "same"))
    actual = tk.conv_transpose(x, w, 2, "same", method=method)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(actual), np.isposinf(expected))
    finite = np.isfinite(expected)
    assert_close(actual[finite], expected[finite], 6)


# --- rejections: tconv raises where Keras raises --------------------------------------------

OPS_REJECTED = [
    ("causal padding", (1, 5, 2), (3, 4, 2), {"padding": "causal"}, "padding"),
    ("bad data_format", (1, 5, 2), (3, 4, 2), {"data_format": "NHWC"}, "data_format"),
    ("channel mismatch", (1, 5, 3), (3, 4, 2), {}, "input channels"),
    ("rank 6", (1, 2, 2, 2, 2, 2), (1, 1, 1, 1, 4, 2), {}, "rank"),
    ("rank 2", (5, 2), (4, 2), {}, "rank"),
    ("kernel rank", (1, 5, 5, 2), (3, 4, 2), {}, "kernel"),
    ("zero kernel", (1, 5, 2), (0, 4, 2), {}, "kernel_size"),
    ("zero filters", (1, 5, 2), (3, 0, 2), {}, "filter"),
    ("zero stride", (1, 5, 2), (3, 4, 2), {"strides": 0}, "strides"),
    ("negative stride", (1, 5, 2), (3, 4, 2), {"strides": -1}, "strides"),
    ("strides length", (1, 5, 2), (3, 4, 2), {"strides": (2, 2)}, "strides"),
    ("zero dilation", (1, 5, 2), (3, 4, 2), {"dilation_rate": 0}, "dilation_rate"),
    ("negative op", (1, 5, 2), (3, 4, 2), {"strides": 2, "output_padding": -1}, "output_padding"),
    ("op = stride valid", (1, 5, 2), (3, 4, 2), {"strides": 2, "output_padding": 2}, "strictly"),
    (
        "op > stride same",
        (1, 5, 2),
        (3, 4, 2),
        {"strides": 2, "output_padding": 3, "padding": "same"},
        "strictly",
    ),
]


@pytest.mark.parametrize("case", OPS_REJECTED, ids=[c[0] for c in OPS_REJECTED])
def test_ops_rejections_match_keras(keras, case):
    _, xs, ks, kwargs, words = case
    x, w = np.ones(xs, np.float32), np.ones(ks, np.float32)
    with pytest.raises(Exception):  # noqa: B017 - Keras/TF raise assorted types
        keras.ops.conv_transpose(x, w, **kwargs)
    with pytest.raises(ValueError, match=words):
        tk.conv_transpose(x, w, **kwargs)


def test_ops_accepts_what_keras_accepts(keras):
    x, w = np.ones((1, 5, 2), np.float32), np.ones((3, 4, 2), np.float32)
    for kwargs in ({"padding": "SAME"}, {"data_format": "CHANNELS_LAST"}, {"strides": (2,)}):
        expected = np.asarray(keras.ops.conv_transpose(x, w, **kwargs))
        assert_close(tk.conv_transpose(x, w, **kwargs), expected, 6)
    with pytest.raises(TypeError, match="floating-point"):
        tk.conv_transpose(np.ones((1, 5, 2), np.int32), w)
    with pytest.raises(ValueError, match="method"):
        tk.conv_transpose(x, w, method="slow")


# --- the seeded random sweep ----------------------------------------------------------------


def test_random_sweep_against_keras_ops(keras):
    """1,200 random geometries against keras.ops.conv_transpose (TensorFlow), worst error kept."""
    rng = np.random.default_rng(20261127)
    worst = {(d, m): 0.0 for d in ("float32", "float64") for m in METHODS}
    compared, refused, started = 0, 0, time.process_time()
    while compared < 1200:
        rank = int(rng.integers(1, 4))
        sizes = tuple(int(v) for v in rng.integers(0 if rng.random() < 0.03 else 1, 6, rank))
        kernel = tuple(int(v) for v in rng.integers(1, 6, rank))
        strides = tuple(int(v) for v in rng.integers(1, 5, rank))
        padding = ("valid", "same")[int(rng.integers(2))]
        op = None if rng.random() < 0.4 else tuple(int(rng.integers(s)) for s in strides)
        cin, cout, batch = (int(v) for v in rng.integers(1, 5, 3))
        batch = 0 if rng.random() < 0.03 else batch - 1 or 1
        dtype = "float64" if rng.random() < 0.3 else "float32"
        x, w = _data(rng, (batch, *sizes, cin), dtype), _data(rng, (*kernel, cout, cin), dtype)
        try:
            expected = np.asarray(keras.ops.conv_transpose(x, w, strides, padding, op))
        except Exception:  # noqa: BLE001 - TF raises its own error types
            refused += 1
            lengths = [
                tk.output_length(*a, 1, padding, o)
                for a, o in zip(
                    zip(sizes, kernel, strides, strict=True), op or (None,) * rank, strict=True
                )
            ]
            if min(lengths) < 0:  # a negative output length: tconv refuses too
                with pytest.raises(ValueError, match="negative"):
                    tk.conv_transpose(x, w, strides, padding, op)
            else:  # TF's same/even-kernel/op=0 abort, tested above
                assert padding == "same" and op is not None
                assert any(k % 2 == 0 and o == 0 for k, o in zip(kernel, op, strict=True))
            continue
        methods = METHODS if np.prod(expected.shape[1:-1]) <= 200 else ("fast",)
        for method in methods:
            actual = tk.conv_transpose(x, w, strides, padding, op, method=method)
            assert_close(actual, expected, _terms(w.shape))
            if expected.size:
                scale = max(1.0, float(np.abs(expected).max()))
                err = float(np.abs(actual.astype(np.float64) - expected).max()) / scale
                worst[dtype, method] = max(worst[dtype, method], err)
        compared += 1
    print(
        f"\nkeras.ops sweep: {compared} geometries ({refused} refused by TF), worst error "
        "|tconv - keras| / max(1, max|keras|):"
    )
    for (dtype, method), err in worst.items():
        print(f"  {dtype:8} {method:10} {err:.3e}")
    print(f"  {time.process_time() - started:.1f} s CPU")


def test_random_sweep_reference_against_fast():
    """Both methods agree on random Keras geometries, dilation and channels_first included."""
    rng = np.random.default_rng(11)
    for _ in range(150):
        rank = int(rng.integers(1, 3))
        sizes = tuple(int(v) for v in rng.integers(0, 5, rank))
        kernel = tuple(int(v) for v in rng.integers(1, 5, rank))
        strides = tuple(int(v) for v in rng.integers(1, 4, rank))
        dilation = tuple(int(v) for v in rng.integers(1, 3, rank))
        padding = ("valid", "same")[int(rng.integers(2))]
        op = None if rng.random() < 0.5 else tuple(int(rng.integers(s)) for s in strides)
        data_format = ("channels_last", "channels_first")[int(rng.integers(2))]
        x = _data(
            rng, (2, 3, *sizes) if data_format == "channels_first" else (2, *sizes, 3), "float64"
        )
        w = _data(rng, (*kernel, 2, 3), "float64")
        args = (strides, padding, op, data_format, dilation)
        try:
            fast = tk.conv_transpose(x, w, *args)
        except ValueError as err:
            assert "negative" in str(err)
            continue
        assert_close(tk.conv_transpose(x, w, *args, method="reference"), fast, _terms(w.shape))


# --- layers ---------------------------------------------------------------------------------

LAYERS = {1: tk.Conv1DTranspose, 2: tk.Conv2DTranspose, 3: tk.Conv3DTranspose}
ACTIVATIONS = [
    "linear",
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "sigmoid",
    "hard_sigmoid",
    "tanh",
    "softplus",
    "softsign",
    "swish",
    "silu",
    "exponential",
    "celu",
    "hard_silu",
    "mish",
    "log_sigmoid",
    "hard_swish",
    "softmax",
    "log_softmax",
    None,
]


def _keras_layer(keras, rank, **kwargs):
    return getattr(keras.layers, f"Conv{rank}DTranspose")(**kwargs)


LAYER_CASES = [
    (1, dict(filters=3, kernel_size=3, strides=2, padding="same")),
    (1, dict(filters=2, kernel_size=4, strides=3, padding="valid", output_padding=2)),
    (1, dict(filters=2, kernel_size=2, strides=3, padding="valid", use_bias=False)),
    (2, dict(filters=4, kernel_size=3, strides=2, padding="same", output_padding=1)),
    (2, dict(filters=3, kernel_size=(2, 3), strides=(2, 1), padding="SAME")),
    (
        2,
        dict(filters=3, kernel_size=(1, 4), strides=(3, 2), padding="valid", output_padding=(1, 0)),
    ),
    (3, dict(filters=2, kernel_size=3, strides=2, padding="same", activation="relu")),
    (3, dict(filters=2, kernel_size=(2, 1, 3), strides=(1, 2, 3), padding="valid")),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", LAYER_CASES, ids=[str(i) for i in range(len(LAYER_CASES))])
def test_layers_against_keras(keras, case, method):
    rank, kwargs = case
    rng = np.random.default_rng(rank)
    ref = _keras_layer(keras, rank, name="t", **kwargs)
    x = _data(rng, (2, *(3,) * rank, 5))
    expected = np.asarray(ref(x))  # builds it: Keras draws the weights
    ours = LAYERS[rank](name="t", **kwargs)
    ours.set_weights(ref.get_weights())
    actual = ours(x, method=method)
    assert_close(actual, expected, _terms(ours.kernel.shape))
    assert ours.compute_output_shape((None, *(3,) * rank, 5)) == tuple(
        ref.compute_output_shape((None, *(3,) * rank, 5))
    )
    assert ours.get_config() == ref.get_config()
    for a, b in zip(ours.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert ours.count_params() == ref.count_params()


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_layer_activations_against_keras(keras, activation):
    rng = np.random.default_rng(1)
    ref = _keras_layer(
        keras, 2, filters=3, kernel_size=3, strides=2, activation=activation, name="a"
    )
    x = 3 * _data(rng, (1, 4, 4, 2))
    expected = np.asarray(ref(x))
    config = ref.get_config()
    ours = tk.Conv2DTranspose.from_config(config)
    ours.set_weights(ref.get_weights())
    assert ours.get_config() == config
    assert_close(ours(x), expected, 18)


def test_from_config_forms(keras):
    base = dict(filters=2, kernel_size=3)
    serialized = {
        "module": "keras.activations",
        "class_name": "function",
        "config": "relu",
        "registered_name": "function",
    }
    assert tk.Conv2DTranspose.from_config({**base, "activation": serialized}).activation == "relu"
    assert tk.Conv2DTranspose.from_config({**base, "activation": "swish"}).activation == "silu"
    for bad in ("softmax2", {"class_name": "MyAct", "config": {}}, 3):
        with pytest.raises(ValueError, match="Unknown activation"):
            tk.Conv2DTranspose.from_config({**base, "activation": bad})
    with pytest.raises(TypeError, match="Unrecognized keyword arguments"):
        tk.Conv2DTranspose(2, 3, colour="red")
    ref = _keras_layer(keras, 1, filters=2, kernel_size=3, output_padding=0, strides=2)
    ours = tk.Conv1DTranspose.from_config(ref.get_config())
    assert ours.get_config() == ref.get_config()


def test_layer_dilation_against_keras_jax_backend(keras_jax):
    """TF's CPU kernel has no dilation: compare with Keras' JAX backend plus bias."""
    rng = np.random.default_rng(2)
    layer = tk.Conv2DTranspose(3, (3, 2), dilation_rate=(2, 3), padding="same", activation="tanh")
    x = _data(rng, (2, 5, 4, 2))
    layer.build(x.shape, seed=0)
    kernel, bias = layer.get_weights()
    bias = _data(rng, bias.shape)
    layer.set_weights([kernel, bias])
    expected = np.tanh(keras_jax(x, kernel, 1, "same", None, "channels_last", (2, 3)) + bias)
    for method in METHODS:
        assert_close(layer(x, method=method), expected, 12)


@pytest.mark.parametrize("activation", ["softmax", "log_softmax"])
def test_softmax_of_channels_first_layer_uses_the_last_axis(keras, keras_jax, activation):
    """Keras' Conv*Transpose.call applies the activation to the output in the layer's layout,
    so a channels_first softmax normalises the last spatial axis (tconv used to normalise the
    channels).  TF's CPU kernel has no NCHW: the linear part comes from Keras' JAX backend,
    the activation from Keras itself."""
    rng = np.random.default_rng(4)
    layer = tk.Conv2DTranspose(
        3, 3, strides=2, padding="same", data_format="channels_first", activation=activation
    )
    x = _data(rng, (2, 4, 3, 5))
    layer.build(x.shape, seed=1)
    kernel, bias = layer.get_weights()
    bias = _data(rng, bias.shape)
    layer.set_weights([kernel, bias])
    linear = keras_jax(x, kernel, 2, "same", None, "channels_first", 1) + bias[:, None, None]
    expected = np.asarray(getattr(keras.activations, activation)(linear))
    for method in METHODS:
        assert_close(layer(x, method=method), expected, 12)


LAYER_REJECTED = [
    ("op >= stride", dict(filters=2, kernel_size=3, strides=2, output_padding=2), "strictly less"),
    ("stride and dilation", dict(filters=2, kernel_size=3, strides=2, dilation_rate=2), "dilation"),
    ("zero filters", dict(filters=0, kernel_size=3), "filters"),
    ("negative filters", dict(filters=-2, kernel_size=3), "filters"),
    ("zero kernel", dict(filters=2, kernel_size=0), "kernel_size"),
    ("kernel length", dict(filters=2, kernel_size=(3, 3, 3)), "kernel_size"),
    ("zero stride", dict(filters=2, kernel_size=3, strides=0), "strides"),
    ("negative op", dict(filters=2, kernel_size=3, strides=2, output_padding=-1), "output_padding"),
    ("causal", dict(filters=2, kernel_size=3, padding="causal"), "padding"),
    ("full", dict(filters=2, kernel_size=3, padding="full"), "padding"),
    ("data_format", dict(filters=2, kernel_size=3, data_format="NHWC"), "data_format"),
    ("activation", dict(filters=2, kernel_size=3, activation="nope"), "activation"),
]


@pytest.mark.parametrize("case", LAYER_REJECTED, ids=[c[0] for c in LAYER_REJECTED])
def test_layer_rejections_match_keras(keras, case):
    _, kwargs, words = case
    tf_keras = peer("tf_keras")
    with pytest.raises(ValueError):
        keras.layers.Conv2DTranspose(**kwargs)
    with pytest.raises(ValueError):
        tf_keras.layers.Conv2DTranspose(**kwargs)
    with pytest.raises(ValueError, match=words):
        tk.Conv2DTranspose(**kwargs)


def test_layer_accepts_what_keras_accepts(keras):
    for kwargs in (
        dict(filters=2, kernel_size=3, padding="Valid"),
        dict(filters=2, kernel_size=3, dilation_rate=2),
        dict(filters=2, kernel_size=3, strides=3, output_padding=0),
    ):
        ref = keras.layers.Conv2DTranspose(name="ok", **kwargs)
        assert tk.Conv2DTranspose(name="ok", **kwargs).get_config() == ref.get_config()


def test_weights_api(keras):
    ref = keras.layers.Conv2DTranspose(4, 3, strides=2, use_bias=False)
    ours = tk.Conv2DTranspose(4, 3, strides=2, use_bias=False)
    assert ours.get_weights() == ref.get_weights() == []
    assert not ours.built
    with pytest.raises(ValueError, match="no weights yet"):
        _ = ours.kernel
    ref.build((None, 5, 5, 3))
    ours.build((None, 5, 5, 3))
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in ref.get_weights()]
    with pytest.raises(ValueError):
        ref.set_weights([np.ones((3, 3, 4, 3)), np.ones(4)])
    with pytest.raises(ValueError, match="expecting 1 weights"):
        ours.set_weights([np.ones((3, 3, 4, 3)), np.ones(4)])
    with pytest.raises(ValueError):
        ref.set_weights([np.ones((3, 3, 4, 2))])
    with pytest.raises(ValueError, match="not compatible"):
        ours.set_weights([np.ones((3, 3, 4, 2))])
    with pytest.raises(ValueError, match="channels"):
        ours(np.ones((1, 5, 5, 2), np.float32))


def test_build_draws_glorot_uniform():
    layer = tk.Conv2DTranspose(64, 3)
    layer.build((None, 4, 4, 32), seed=1)
    kernel, bias = layer.get_weights()
    limit = math.sqrt(6 / ((64 + 32) * 9))
    assert kernel.dtype == np.float32 and kernel.shape == (3, 3, 64, 32)
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    assert abs(float(kernel.std()) - limit / math.sqrt(3)) < 0.02 * limit
    np.testing.assert_array_equal(bias, 0)
    again = tk.Conv2DTranspose(64, 3)
    again.build((None, 4, 4, 32), seed=1)
    np.testing.assert_array_equal(again.get_weights()[0], kernel)


def test_layer_is_a_transposed_conv_for_explain_and_export():
    from tconv.layer import KERAS, TransposedConv

    layer = tk.Conv2DTranspose(512, 3, strides=2, padding="same")
    layer.build((1, 8, 8, 1024), seed=0)
    assert isinstance(layer, TransposedConv)
    assert layer.framework == "keras" and layer.kernel_layout is KERAS
    geometry = layer.geometry((8, 8))
    assert geometry.out_shape == (16, 16)
    assert [(a.crop_start, a.crop_end) for a in geometry.axes] == [(0, 1), (0, 1)]
    assert layer.output_shape((1, 8, 8, 1024)) == (1, 16, 16, 512)


# --- tf.keras 2.x -----------------------------------------------------------------------------


TF_KERAS_CASES = [
    (1, dict(filters=2, kernel_size=3, strides=2, padding="same")),
    (1, dict(filters=2, kernel_size=2, strides=3, padding="valid")),
    (2, dict(filters=3, kernel_size=3, strides=2, padding="same", output_padding=1)),
    (2, dict(filters=3, kernel_size=(4, 3), strides=(2, 3), padding="same", output_padding=(1, 2))),
    (
        2,
        dict(filters=3, kernel_size=(1, 2), strides=(3, 2), padding="valid", output_padding=(2, 0)),
    ),
    (3, dict(filters=2, kernel_size=(3, 2, 2), strides=2, padding="same", activation="elu")),
]


@pytest.mark.parametrize("case", TF_KERAS_CASES, ids=[str(i) for i in range(len(TF_KERAS_CASES))])
def test_tf_keras_layers_identical(case):
    tf_keras = peer("tf_keras")
    rank, kwargs = case
    rng = np.random.default_rng(rank + 3)
    ref = getattr(tf_keras.layers, f"Conv{rank}DTranspose")(**kwargs)
    x = _data(rng, (2, *(4,) * rank, 3))
    expected = np.asarray(ref(x))
    ours = tk.LAYER_CLASSES[f"Conv{rank}DTranspose"].from_config(ref.get_config())
    ours.set_weights(ref.get_weights())
    for method in METHODS:
        assert_close(ours(x, method=method), expected, _terms(ours.kernel.shape))


@pytest.mark.parametrize("method", METHODS)
def test_float64_layer_against_keras(keras, method):
    rng = np.random.default_rng(9)
    ref = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", dtype="float64", name="d")
    x = _data(rng, (2, 4, 4, 2), "float64")
    ref.build(x.shape)
    ours = tk.Conv2DTranspose.from_config(ref.get_config())
    ours.set_weights([rng.standard_normal(w.shape) for w in ref.get_weights()])
    ref.set_weights(ours.get_weights())
    expected = np.asarray(ref(x))
    actual = ours(x, method=method)
    assert actual.dtype == expected.dtype == np.float64
    assert_close(actual, expected, 18)


@pytest.mark.parametrize(
    ("policy", "dtype", "eps"),
    [
        ("float16", "float16", 2.0**-10),
        ("mixed_float16", "float16", 2.0**-10),
        ("bfloat16", "bfloat16", 2.0**-7),
        ("mixed_bfloat16", "bfloat16", 2.0**-7),
        ("float64", "float64", 2.0**-52),
    ],
)
@pytest.mark.parametrize("input_dtype", ["float32", "float64", "int32"])
def test_dtype_policies_against_keras(keras, policy, dtype, eps, input_dtype):
    """A Keras layer casts a floating-point input and its weights to the policy's compute
    dtype (mixed policies keep float32 variables): the output dtype and values follow, and so
    does tconv.explain.  An integer input is refused by both."""
    import tconv

    rng = np.random.default_rng(12)
    ref = keras.layers.Conv2DTranspose(
        3, 3, strides=2, padding="same", activation="tanh", dtype=policy, name="p"
    )
    x = rng.uniform(-2, 2, (2, 4, 5, 2)).astype(input_dtype)
    ref.build(x.shape)
    ref.set_weights([rng.uniform(-1, 1, w.shape) for w in ref.get_weights()])
    ours = tk.Conv2DTranspose.from_config(ref.get_config())
    ours.set_weights(ref.get_weights())
    assert ours.compute_dtype.name == dtype == keras.backend.standardize_dtype(ref.compute_dtype)
    if input_dtype == "int32":
        with pytest.raises(Exception, match="conversion requested (to type|dtype) int32"):
            ref(x)
        with pytest.raises(TypeError, match="needs floating-point data"):
            ours(x)
        return
    expected = keras.ops.convert_to_numpy(ref(x))
    for method in METHODS:
        actual = ours(x, method=method)
        assert actual.dtype == expected.dtype and actual.dtype.name == dtype
        diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max()
        # |y| <= 1 after tanh; both round the sum, the bias and tanh in the compute dtype
        # (measured <= 3 eps over 5 seeds): a few roundings apart
        assert diff <= 8 * eps, (method, diff / eps)
    at = (1, 3, 2, 1)
    value = tconv.explain(ours, x, at).value
    assert abs(float(value) - float(expected[at])) <= 8 * eps


def test_legacy_config_keys():
    layer = tk.Conv1DTranspose.from_config(
        {
            "filters": 2,
            "kernel_size": 3,
            "groups": 1,
            "batch_input_shape": [None, 7, 3],
            "dtype": "float32",
        }
    )
    assert layer.input_shape == (7, 3)
    assert tk.Conv1DTranspose(2, 3, input_shape=(5, 2)).input_shape == (5, 2)
    with pytest.raises(ValueError, match="groups"):
        tk.Conv1DTranspose(2, 3, groups=2)


@st.composite
def _geometries(draw):
    rank = draw(st.integers(1, 3))
    ints = lambda lo, hi: st.tuples(*[st.integers(lo, hi)] * rank)  # noqa: E731
    kernel, strides = draw(ints(1, 5)), draw(ints(1, 4))
    padding = draw(st.sampled_from(["valid", "same"]))
    op = draw(st.none() | st.tuples(*[st.integers(0, s - 1) for s in strides]))
    if padding == "same" and op is not None:
        # TF aborts on an even kernel with op=0: use op=1 there, or None when the stride is 1.
        even = [int(k % 2 == 0) for k in kernel]
        op = tuple(max(o, e) if s > 1 else o for o, e, s in zip(op, even, strides, strict=True))
        if any(k % 2 == 0 and o == 0 for k, o in zip(kernel, op, strict=True)):
            op = None
    return draw(ints(1, 4)), kernel, strides, padding, op, draw(st.integers(0, 2))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(_geometries())
def test_hypothesis_against_keras_ops(geometry):
    keras = peer("keras")
    sizes, kernel, strides, padding, op, batch = geometry
    rng = np.random.default_rng(abs(hash(geometry)) % 2**32)
    x, w = _data(rng, (batch, *sizes, 2)), _data(rng, (*kernel, 3, 2))
    expected = np.asarray(keras.ops.conv_transpose(x, w, strides, padding, op))
    methods = METHODS if np.prod(expected.shape[1:-1]) <= 200 else ("fast",)
    for method in methods:
        assert_close(tk.conv_transpose(x, w, strides, padding, op, method=method), expected, 50)
