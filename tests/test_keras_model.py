"""tconv.keras.load_model: every supported Keras layer class alone, against Keras.

Each group of cases is one Keras functional model with one branch per case (every branch reads
the group's input), random non-trivial weights, saved once as ``.keras`` and ``.h5``; each case
compares its branch's output in tconv's NumPy model with Keras' own.  TensorFlow on CPU cannot
run channels-first convolutions and pooling, so that group's expected outputs come from Keras
on its JAX backend, in a child process, reading the same file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import assert_close, peer

import tconv.keras as tk
from tconv.keras import zoo

INPUTS = {
    "vec": (6,),
    "1d": (11, 4),
    "2d": (7, 9, 4),
    "3d": (5, 6, 7, 3),
    "2d_cf": (4, 7, 9),
    "1d_cf": (4, 11),
    "merge": (7, 9, 4),
}
CASES = {
    "vec": [
        'Dense(4, activation="elu")',
        "Dense(3, use_bias=False)",
        "Reshape((2, 3))",
        "BatchNormalization()",
        "LayerNormalization()",
        "Softmax()",
        "PReLU()",
        "Activation('selu')",
    ],
    "1d": [
        'Conv1D(5, 3, padding="causal", dilation_rate=2)',
        'Conv1D(5, 4, strides=2, padding="same")',
        "Conv1D(6, 3, groups=2)",
        'Conv1DTranspose(3, 5, strides=3, padding="same")',
        'DepthwiseConv1D(3, depth_multiplier=3, padding="same")',
        'SeparableConv1D(4, 3, padding="same", dilation_rate=2)',
        "UpSampling1D(3)",
        'MaxPooling1D(3, padding="same")',
        "AveragePooling1D(2, strides=1)",
        'AveragePooling1D(4, strides=3, padding="same")',
        "GlobalMaxPooling1D()",
        "GlobalAveragePooling1D(keepdims=True)",
        "ZeroPadding1D((2, 1))",
        "Cropping1D((1, 3))",
        "SpatialDropout1D(0.2)",
        "Dense(3)",
        "BatchNormalization(axis=1)",
    ],
    "2d": [
        "Conv2D(5, 3)",
        'Conv2D(5, (3, 2), strides=2, padding="same", activation="relu")',
        'Conv2D(4, 3, dilation_rate=2, padding="same", use_bias=False)',
        'Conv2D(6, 3, groups=2, padding="same")',
        "Conv2D(4, 2, strides=(2, 3))",
        'Conv2DTranspose(3, 3, strides=2, padding="same")',
        "Conv2DTranspose(3, 4, strides=2, output_padding=1)",
        'DepthwiseConv2D(3, depth_multiplier=2, padding="same")',
        "DepthwiseConv2D(2, strides=2)",
        'SeparableConv2D(5, 3, padding="same", activation="tanh")',
        "SeparableConv2D(5, 3, depth_multiplier=2, strides=2, use_bias=False)",
        "BatchNormalization()",
        "BatchNormalization(axis=1, center=False, epsilon=0.1)",
        "BatchNormalization(scale=False)",
        "LayerNormalization()",
        "LayerNormalization(axis=[1, 2, 3], center=False)",
        "LayerNormalization(rms_scaling=True)",
        "LayerNormalization(axis=1, scale=False, epsilon=0.5)",
        'Activation("sigmoid")',
        'Activation("gelu")',
        "ReLU()",
        "ReLU(max_value=0.5)",
        "ReLU(negative_slope=0.1)",
        "ReLU(threshold=0.2, negative_slope=0.3, max_value=1.0)",
        "ReLU(max_value=6.0)",
        "ReLU(threshold=0.5)",
        "LeakyReLU()",
        "LeakyReLU(negative_slope=0.05)",
        "PReLU()",
        "PReLU(shared_axes=[1, 2])",
        "ELU()",
        "ELU(alpha=0.5)",
        "Softmax()",
        "Softmax(axis=1)",
        "Softmax(axis=[1, 2])",
        "Softmax(axis=[1, 3])",
        "LayerNormalization(axis=[1, 3], rms_scaling=True)",
        "Dropout(0.5)",
        "SpatialDropout2D(0.3)",
        "GaussianNoise(1.0)",
        "GaussianDropout(0.5)",
        "AlphaDropout(0.5)",
        "ActivityRegularization(l1=0.1)",
        "UpSampling2D()",
        'UpSampling2D((2, 3), interpolation="bilinear")',
        'UpSampling2D(3, interpolation="bilinear")',
        'UpSampling2D(2, data_format="channels_first")',
        "MaxPooling2D()",
        'MaxPooling2D(3, strides=2, padding="same")',
        "AveragePooling2D(2)",
        'AveragePooling2D(3, strides=2, padding="same")',
        'AveragePooling2D((2, 3), strides=1, padding="same")',
        "GlobalMaxPooling2D()",
        "GlobalAveragePooling2D(keepdims=True)",
        'GlobalAveragePooling2D(data_format="channels_first")',
        'GlobalMaxPooling2D(data_format="channels_first", keepdims=True)',
        "ZeroPadding2D()",
        "ZeroPadding2D(((1, 2), (0, 3)))",
        'ZeroPadding2D((2, 1), data_format="channels_first")',
        "Cropping2D(1)",
        "Cropping2D(((1, 2), (0, 3)))",
        'Cropping2D((2, 1), data_format="channels_first")',
        "Dense(5)",
        'Dense(3, activation="softmax", use_bias=False)',
        "Reshape((63, 4))",
        "Reshape((-1, 2))",
        "Flatten()",
        'Flatten(data_format="channels_first")',
        "Permute((3, 1, 2))",
        "Rescaling(1 / 127.5, offset=-1)",
        "Rescaling([0.5, 1.0, 2.0, 3.0])",
    ],
    "3d": [
        'Conv3D(4, 3, padding="same")',
        "Conv3D(2, 2, strides=2)",
        'Conv3DTranspose(2, 3, strides=2, padding="same")',
        "Conv3DTranspose(2, 2, strides=(1, 2, 1))",
        "UpSampling3D((1, 2, 2))",
        'MaxPooling3D(2, padding="same")',
        'AveragePooling3D(2, strides=(1, 2, 2), padding="same")',
        "GlobalAveragePooling3D()",
        "GlobalMaxPooling3D(keepdims=True)",
        "ZeroPadding3D(1)",
        "Cropping3D(((1, 0), (0, 2), (1, 1)))",
        "SpatialDropout3D(0.1)",
        "Dense(2)",
    ],
    "2d_cf": [
        'Conv2D(3, 3, data_format="channels_first", padding="same")',
        'Conv2D(4, 2, strides=2, groups=2, data_format="channels_first")',
        'MaxPooling2D(2, data_format="channels_first")',
        'AveragePooling2D(2, padding="same", data_format="channels_first")',
        'Conv2DTranspose(3, 3, strides=2, data_format="channels_first")',
        'DepthwiseConv2D(3, data_format="channels_first")',
        'SeparableConv2D(3, 2, data_format="channels_first")',
        'UpSampling2D(2, data_format="channels_first", interpolation="bilinear")',
    ],
    "1d_cf": [
        'Conv1D(4, 3, data_format="channels_first")',
        'MaxPooling1D(2, data_format="channels_first")',
        "UpSampling1D(2)",
    ],
    # a, b: the group's two (7, 9, 4) inputs; c: (7, 9, 2), from a 1x1 convolution of a;
    # d (1, 1, 4), e (4,) and f (7, 9, 1) broadcast against a (e: a lower rank, as in a
    # squeeze-and-excitation block)
    "merge": [
        "Add()([a, b])",
        "Add()([a, d])",
        "Multiply()([a, e])",
        "Subtract()([f, a])",
        "Maximum()([a, d, f])",
        "Average()([e, b])",
        "Minimum()([d, f])",
        "Add()([a, b, a])",
        "Subtract()([a, b])",
        "Multiply()([a, b, b])",
        "Average()([a, b])",
        "Maximum()([a, b])",
        "Minimum()([b, a])",
        "Concatenate()([a, c])",
        "Concatenate(axis=1)([a, b])",
        "Concatenate(axis=-2)([a, b, a])",
        "Concatenate(axis=3)([c, a, c])",
    ],
}
PARAMS = [(g, i) for g, cases in CASES.items() for i in range(len(cases))]
IDS = [f"{g}-{CASES[g][i]}" for g, i in PARAMS]
SEED = 20261201


def merge_operands(keras: Any, a: Any, b: Any) -> dict[str, Any]:
    """The names the merge cases use (see CASES["merge"])."""
    layers = keras.layers
    return {
        "a": a,
        "b": b,
        "c": layers.Conv2D(2, 1, name="c")(a),
        "d": layers.GlobalAveragePooling2D(keepdims=True, name="d")(a),
        "e": layers.GlobalMaxPooling2D(name="e")(b),
        "f": layers.Conv2D(1, 1, name="f")(b),
    }


def group_model(keras: Any, group: str, cases: list[str]) -> Any:
    """One Keras model with every case of ``group`` as an output, weights randomized."""
    inp = keras.Input(INPUTS[group], name=f"x_{group}")
    names = dict(vars(keras.layers))
    inputs = [inp]
    if group == "merge":
        inputs.append(keras.Input(INPUTS[group], name="b"))
        names.update(merge_operands(keras, inp, inputs[1]))
        outputs = [eval(case, {}, names) for case in cases]  # noqa: S307 - our strings
    else:
        outputs = [eval(case, {}, names)(inp) for case in cases]  # noqa: S307
    return zoo.randomize(keras.Model(inputs, outputs, name=f"m_{group}"), SEED)


def terms(model: tk.Model) -> int:
    """The longest sum of products of any node: the rounding bound's term count."""
    longest = 1
    for node in model.graph:
        if node.op in ("dense", "conv"):
            longest = max(longest, int(np.prod(node.weights["kernel"].shape[:-1])))
        elif node.op == "conv_transpose":
            op = node.params["op"]
            longest = max(longest, int(np.prod(op.kernel_size)) * op.kernel.shape[-1])
        elif node.op in ("layer_norm", "softmax", "global_pool", "pool"):
            longest = max(longest, node.size)
    return longest


def _keras_outputs_jax(path: Path, x: np.ndarray, out: Path) -> list[np.ndarray]:
    """Run the saved model with Keras on its JAX backend in a child process."""
    np.save(out.with_suffix(".x.npy"), x)
    code = (
        "import sys, numpy as np, keras; "
        "m = keras.saving.load_model(sys.argv[1]); x = np.load(sys.argv[2]); "
        "ys = m(x); ys = ys if isinstance(ys, (list, tuple)) else [ys]; "
        "np.savez(sys.argv[3], *[np.asarray(y) for y in ys])"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    subprocess.run(
        [sys.executable, "-c", code, str(path), str(out.with_suffix(".x.npy")), str(out)],
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )
    with np.load(out) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    keras = peer("keras")
    peer("tensorflow")
    tmp = tmp_path_factory.mktemp("layers")
    rng = np.random.default_rng(SEED)
    built = {}
    for group, cases in CASES.items():
        model = group_model(keras, group, cases)
        xs = [rng.normal(0, 1, (2, *INPUTS[group])).astype(np.float32) for _ in model.inputs]
        x = xs if group == "merge" else xs[0]
        paths = {ext: tmp / f"{group}.{ext}" for ext in ("keras", "h5")}
        for path in paths.values():
            model.save(path)
        if group.endswith("_cf"):
            expected = _keras_outputs_jax(paths["keras"], x, tmp / f"{group}.npz")
            del paths["h5"]
        else:
            expected = [np.asarray(y) for y in model(x)]
        loaded = {ext: tk.load_model(path) for ext, path in paths.items()}
        got = {ext: m(x) for ext, m in loaded.items()}
        built[group] = (expected, got, loaded)
    return built


@pytest.mark.parametrize(("group", "index"), PARAMS, ids=IDS)
def test_layer_matches_keras(groups, group, index):
    expected, got, loaded = groups[group]
    for ext, outputs in got.items():
        assert outputs[index].dtype == np.float32
        assert_close(outputs[index], expected[index], terms=terms(loaded[ext]))


def test_every_supported_class_is_tested():
    tested = {case.split("(")[0] for cases in CASES.values() for case in cases}
    aliases = {f"Convolution{r}D" for r in (1, 2, 3)}
    assert set(tk.SUPPORTED_CLASSES) - tested - aliases == {"InputLayer"}


# --- architectures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_zoo(tmp_path_factory):
    keras = peer("keras")
    tmp = tmp_path_factory.mktemp("zoo")
    out = {}
    for name in zoo.ARCHITECTURES:
        model = zoo.build(name, keras, seed=SEED)
        x = np.random.default_rng(SEED).normal(0, 1, (2, *model.input_shape[1:]))
        x = x.astype(np.float32)
        paths = {}
        for ext in ("keras", "h5"):
            paths[ext] = tmp / f"{name}.{ext}"
            model.save(paths[ext])
        out[name] = (x, np.asarray(model(x)), paths)
    return out


@pytest.mark.parametrize("name", sorted(zoo.ARCHITECTURES))
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_architecture_matches_keras(saved_zoo, name, ext):
    x, expected, paths = saved_zoo[name]
    model = tk.load_model(paths[ext])
    assert_close(model(x), expected, terms=terms(model))
    assert model.output_shape == (None, *expected.shape[1:])


@pytest.mark.parametrize("name", ["dcgan", "pix2pix", "audio_decoder"])
def test_tf_keras_2_h5_matches(tmp_path, name):
    tf_keras = peer("tf_keras")
    model = zoo.build(name, tf_keras, seed=SEED)
    x = np.random.default_rng(1).normal(0, 1, (2, *model.input_shape[1:])).astype(np.float32)
    model.save(tmp_path / "m.h5")
    loaded = tk.load_model(tmp_path / "m.h5")
    assert_close(loaded(x), np.asarray(model(x, training=False)), terms=terms(loaded))


# --- the Model API -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """Two inputs, two outputs, a nested Sequential, a nested functional model called twice."""
    keras = peer("keras")
    L = keras.layers
    img = keras.Input((6, 6, 3), name="img")
    vec = keras.Input((4,), name="vec")
    inner = keras.Sequential(
        [keras.Input((6, 6, 3)), L.Conv2D(3, 1, name="inner_conv"), L.ReLU(name="inner_relu")],
        name="block",
    )
    t_in = keras.Input((4,))
    twice = keras.Model(
        t_in, L.Dense(4, activation="tanh", name="shared_dense")(t_in), name="twice"
    )
    a = inner(img)
    b = L.Add(name="add")([a, img])
    up = L.Conv2DTranspose(2, 3, strides=2, padding="same", name="up")(b)
    v = twice(twice(vec))
    flat = L.Flatten(name="flat")(up)
    out1 = L.Concatenate(name="cat")([L.Dense(3, name="head")(flat), v])
    model = zoo.randomize(keras.Model([img, vec], [out1, up], name="multi"), SEED)
    rng = np.random.default_rng(2)
    xs = [
        rng.normal(size=(3, 6, 6, 3)).astype(np.float32),
        rng.normal(size=(3, 4)).astype(np.float32),
    ]
    tmp = tmp_path_factory.mktemp("multi")
    model.save(tmp / "m.keras")
    model.save(tmp / "m.h5")
    return model, xs, tmp


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_several_inputs_outputs_and_nested_models(multi, ext):
    keras_model, xs, tmp = multi
    model = tk.load_model(tmp / f"m.{ext}")
    expected = [np.asarray(y) for y in keras_model(xs)]
    got = model(xs)
    assert isinstance(got, list) and len(got) == 2
    for g, e in zip(got, expected, strict=True):
        assert_close(g, e, terms=terms(model))
    assert model.input_shape == [(None, 6, 6, 3), (None, 4)]
    assert model.output_shape == [(None, 7), (None, 12, 12, 2)]
    assert model.get_layer("up").op is not None
    assert model.get_layer("up").op.filters == 2
    assert model.get_layer("inner_conv").class_name == "Conv2D"
    with pytest.raises(ValueError, match="No such layer: nope"):
        model.get_layer("nope")
    with pytest.raises(TypeError, match="pass a list"):
        model(xs[0])
    with pytest.raises(ValueError, match=r"input 'vec' .* must have shape \(batch, 4\)"):
        model([xs[0], xs[0]])
    # every layer's output, as Keras computes it
    keras = peer("keras")
    outs = model.layer_outputs(xs)
    probe = keras.Model(keras_model.inputs, keras_model.get_layer("up").output)
    assert_close(outs["up"], np.asarray(probe(xs)), terms=27)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_inputs_come_in_the_models_order_not_the_layers(tmp_path, ext):
    """Keras' model.inputs follow the config's input_layers, which need not be the order in
    which the InputLayers were made (and listed among the layers)."""
    keras = peer("keras")
    L = keras.layers
    wave, image, wide = keras.Input((8, 2), name="wave"), keras.Input((3, 3, 1)), keras.Input((5,))
    y = L.Concatenate()([L.Flatten()(image), L.Flatten()(wave), wide])
    model = zoo.randomize(keras.Model([wide, wave, image], L.Dense(3)(y)), SEED)
    model.save(tmp_path / f"m.{ext}")
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(2, *t.shape[1:])).astype(np.float32) for t in model.inputs]
    loaded = tk.load_model(tmp_path / f"m.{ext}")
    assert loaded.input_shape == [(None, 5), (None, 8, 2), (None, 3, 3, 1)]
    assert_close(loaded(xs), np.asarray(model(xs)), terms=terms(loaded))


def test_summary_table(multi):
    _, _, tmp = multi
    model = tk.load_model(tmp / "m.keras")
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0] == 'Model: "multi"'
    assert "Conv2DTranspose" in text and "(None, 12, 12, 2)" in text
    up = next(r for r in model.rows() if r["name"] == "up")
    assert up["params"] == 3 * 3 * 2 * 3 + 2
    assert up["macs"] == 6 * 6 * 9 * 3 * 2  # every input pixel, tap, channel, filter
    assert f"Total params: {model.count_params():,}" in text
    json.dumps(model.rows())  # data for --json


def test_unsupported_layer_is_a_clear_error(tmp_path):
    keras = peer("keras")
    inp = keras.Input((5,), dtype="int32")
    model = keras.Model(inp, keras.layers.Embedding(10, 3, name="emb")(inp))
    model.save(tmp_path / "e.keras")
    with pytest.raises(
        ValueError, match=r"layer 'emb' is a Embedding.*supported classes: .*Conv2DTranspose"
    ):
        tk.load_model(tmp_path / "e.keras")


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        tk.load_model(tmp_path / "missing.keras")
    (tmp_path / "x.keras").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a Keras model file"):
        tk.load_model(tmp_path / "x.keras")


def test_explain_a_layer_inside_the_model(saved_zoo, tmp_path, capsys):
    import tconv
    from tconv import cli

    x, _, paths = saved_zoo["dcgan"]
    model = tk.load_model(paths["keras"])
    at = (1, 3, 5, 2)
    e = tconv.explain(model, x, at, layer="up1")
    y = model.layer_outputs(x)["up1"]
    assert_close(np.float32(e.value), y[at], terms=4 * 4 * 32)
    fed = model.layer_input(x, "up1")
    assert fed.shape == (2, 8, 8, 32)
    assert tconv.explain(model.get_layer("up1").op, fed, at).value == e.value
    with pytest.raises(ValueError, match="'bn1' is a BatchNormalization, not a transposed"):
        tconv.explain(model, x, at, layer="bn1")
    with pytest.raises(ValueError, match="layer=NAME"):
        tconv.explain(model.get_layer("up1").op, fed, at, layer="up1")
    np.save(tmp_path / "z.npy", x[:1])
    argv = [
        "explain",
        str(paths["keras"]),
        "--layer",
        "up1",
        "--input",
        str(tmp_path / "z.npy"),
        "--at",
        "0,3,5,2",
        "--json",
    ]
    assert cli.main(argv) == 0
    got = json.loads(capsys.readouterr().out)
    expected = tconv.explain(model, x[:1], (0, 3, 5, 2), layer="up1").value
    assert got["value"] == pytest.approx(float(expected), rel=1e-6)


def test_keras_ops_in_a_functional_model_are_refused(tmp_path):
    """``x * 2.0`` in a functional model is a keras.ops Multiply, not the Multiply layer: its
    constant is no tensor, so tconv refuses it rather than computing something else."""
    keras = peer("keras")
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, name="d")(inp) * 2.0)
    model.save(tmp_path / "o.keras")
    with pytest.raises(ValueError, match=r"is a Multiply operation \(keras.src.ops"):
        tk.load_model(tmp_path / "o.keras")
