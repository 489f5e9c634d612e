"""Real Keras 3 and tf.keras 2.x model files, read by tconv without TensorFlow; `tconv inspect`."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import assert_close, peer

import tconv.keras as tk
from tconv.cli import main


@pytest.fixture(scope="module")
def keras():
    return peer("keras")


def _randomize(model, seed):
    """Give every weight (biases too) random values, so that loading them is tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.standard_normal(w.shape).astype(w.dtype) for w in weights])
    return model


def _keras3_model(keras):
    layers = keras.layers
    inner = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            layers.Conv2DTranspose(5, 3, strides=2, padding="same", name="up1"),
            layers.ReLU(),
            layers.Conv2DTranspose(4, 2, strides=2, use_bias=False, name="up1b"),
        ],
        name="inner",
    )
    inp = keras.Input((4, 4, 3), name="image")
    y = inner(inp)
    y = layers.Conv2DTranspose(
        2, 3, strides=2, padding="same", output_padding=1, activation="tanh", name="up2"
    )(y)
    z = layers.Conv2DTranspose(3, (2, 3), strides=(3, 1), name="side")(inp)
    z = layers.Dense(2, name="dense")(z)
    return _randomize(keras.Model(inp, [y, z], name="outer"), 1)


def _check_layers(loaded, real_layers, rng, expected_shapes):
    assert sorted(loaded) == sorted(real_layers)
    for name, real in real_layers.items():
        ours = loaded[name]
        assert ours.input_shape == expected_shapes[name], name
        for a, b in zip(ours.get_weights(), real.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        shape = ours.input_shape or (5,) * ours.rank + (ours.in_channels,)
        x = rng.standard_normal((2, *shape)).astype(np.float32)
        expected = np.asarray(real(x))
        for method in ("fast", "reference"):
            assert_close(ours(x, method=method), expected, int(np.prod(ours.kernel.shape[:-2])) * 5)
        assert ours.output_item_shape in (None, expected.shape[1:])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras3_files(keras, tmp_path, suffix):
    model = _keras3_model(keras)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    inner = model.get_layer("inner")
    real = {
        "up1": inner.get_layer("up1"),
        "up1b": inner.get_layer("up1b"),
        "up2": model.get_layer("up2"),
        "side": model.get_layer("side"),
    }
    shapes = {"up1": (4, 4, 3), "up1b": (8, 8, 5), "up2": (16, 16, 4), "side": (4, 4, 3)}
    if suffix == ".h5":
        shapes["up1b"] = None  # a legacy Sequential records only its input
    _check_layers(tk.load_layers(path), real, np.random.default_rng(0), shapes)
    assert tk.load_layers(str(path))["up2"].get_config() == real["up2"].get_config()


def test_keras3_sequential_1d_3d_and_layouts(keras, tmp_path):
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((6, 2)),
            layers.Conv1DTranspose(3, 3, strides=2, activation="gelu", name="c1"),
            layers.Conv1DTranspose(3, 3, strides=2, name="c1b"),
        ]
    )
    _randomize(model, 2)
    model.save(tmp_path / "s.keras")
    loaded = tk.load_layers(tmp_path / "s.keras")
    _check_layers(
        loaded,
        {"c1": model.layers[0], "c1b": model.layers[1]},
        np.random.default_rng(1),
        {"c1": (6, 2), "c1b": (13, 3)},
    )
    model3 = keras.Sequential(
        [
            keras.Input((3, 3, 2, 2)),
            layers.Conv3DTranspose(2, (3, 2, 2), strides=(2, 1, 2), padding="same", name="c3"),
        ]
    )
    _randomize(model3, 3)
    model3.save(tmp_path / "v.h5")
    loaded = tk.load_layers(tmp_path / "v.h5")
    _check_layers(loaded, {"c3": model3.layers[0]}, np.random.default_rng(2), {"c3": (3, 3, 2, 2)})
    # TF's CPU kernel runs neither channels_first nor dilation: check what the file holds.
    for kwargs in (dict(data_format="channels_first"), dict(dilation_rate=2)):
        model = keras.Sequential(
            [keras.Input((2, 5, 5)), layers.Conv2DTranspose(3, 3, name="x", **kwargs)]
        )
        _randomize(model, 4)
        model.save(tmp_path / "cf.keras")
        layer = tk.load_layers(tmp_path / "cf.keras")["x"]
        assert layer.get_config() == model.layers[0].get_config()
        assert layer.input_shape == (2, 5, 5)
        for a, b in zip(layer.get_weights(), model.layers[0].get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        assert layer.output_item_shape == tuple(
            model.layers[0].compute_output_shape((None, 2, 5, 5))[1:]
        )


def test_tf_keras_h5(tmp_path):
    tf_keras = peer("tf_keras")
    layers = tf_keras.layers
    inner = tf_keras.Sequential(
        [
            layers.Conv2DTranspose(
                5, 3, strides=2, padding="same", name="up1", input_shape=(4, 4, 3)
            ),
            layers.ReLU(),
        ],
        name="inner",
    )
    inp = tf_keras.Input((4, 4, 3))
    y = layers.Conv2DTranspose(2, 2, strides=2, output_padding=1, activation="relu", name="up2")(
        inner(inp)
    )
    z = layers.Conv2DTranspose(2, 3, strides=3, padding="same", use_bias=False, name="up3")(inp)
    model = _randomize(tf_keras.Model(inp, [y, z]), 5)
    model.save(tmp_path / "tf.h5")
    real = {
        "up1": inner.get_layer("up1"),
        "up2": model.get_layer("up2"),
        "up3": model.get_layer("up3"),
    }
    shapes = {"up1": (4, 4, 3), "up2": None, "up3": (4, 4, 3)}
    _check_layers(tk.load_layers(tmp_path / "tf.h5"), real, np.random.default_rng(3), shapes)
    seq = tf_keras.Sequential(
        [layers.Conv1DTranspose(2, 4, strides=2, padding="same", input_shape=(7, 3))]
    )
    _randomize(seq, 6)
    seq.save(tmp_path / "seq.h5")
    name = seq.layers[0].name
    _check_layers(
        tk.load_layers(tmp_path / "seq.h5"),
        {name: seq.layers[0]},
        np.random.default_rng(4),
        {name: (7, 3)},
    )


def test_bad_files(keras, tmp_path):
    with pytest.raises(FileNotFoundError):
        tk.load_layers(tmp_path / "missing.keras")
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.h5: not a Keras model file"):
        tk.load_layers(text)
    empty_zip = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty_zip, "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(ValueError, match=r"empty\.keras: not a Keras 3 \.keras archive.*readme"):
        tk.load_layers(empty_zip)
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    dense.save(tmp_path / "dense.keras")
    dense.save(tmp_path / "dense.h5")
    for suffix in (".keras", ".h5"):
        with pytest.raises(ValueError, match=rf"dense\{suffix}: no Conv1DTranspose.*Dense 'd'"):
            tk.load_layers(tmp_path / f"dense{suffix}")
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Conv1DTranspose(2, 3, name="t")])
    model.save_weights(tmp_path / "only.weights.h5")
    with pytest.raises(ValueError, match=r"only\.weights\.h5: an HDF5 file without a model config"):
        tk.load_layers(tmp_path / "only.weights.h5")
    # A .keras whose config names a layer the weights file does not hold.
    model.save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as src:
        config = json.loads(src.read("config.json"))
        weights = src.read("model.weights.h5")
    extra = json.loads(json.dumps(config["config"]["layers"][-1]))
    extra["config"]["name"] = "ghost"
    config["config"]["layers"].append(extra)
    with zipfile.ZipFile(tmp_path / "ghost.keras", "w") as dst:
        dst.writestr("config.json", json.dumps(config))
        dst.writestr("model.weights.h5", weights)
    with pytest.raises(ValueError, match=r"ghost\.keras: the config names layer 'ghost'"):
        tk.load_layers(tmp_path / "ghost.keras")
    with zipfile.ZipFile(tmp_path / "broken.keras", "w") as dst:
        dst.writestr("config.json", "{not json")
        dst.writestr("model.weights.h5", weights)
    with pytest.raises(ValueError, match=r"broken\.keras: config\.json is not valid JSON"):
        tk.load_layers(tmp_path / "broken.keras")
    with zipfile.ZipFile(tmp_path / "badweights.keras", "w") as dst:
        dst.writestr("config.json", json.dumps(config))
        dst.writestr("model.weights.h5", b"garbage")
    with pytest.raises(
        ValueError, match=r"badweights\.keras: model\.weights\.h5 is not a readable"
    ):
        tk.load_layers(tmp_path / "badweights.keras")
    # A truncated .keras (a copy that stopped half way) and a directory: said as such (they
    # used to be "not a Keras model file ... starts with b'PK..." and "no such file").
    data = (tmp_path / "good.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.keras: a damaged \.keras \(zip\) archive"):
        tk.load_layers(tmp_path / "cut.keras")
    with pytest.raises(ValueError, match=r": is a directory, not a \.keras or \.h5 model file"):
        tk.load_layers(tmp_path)


def test_inspect_command(keras, tmp_path, capsys):
    model = _keras3_model(keras)
    model.save(tmp_path / "m.keras")
    assert main(["inspect", str(tmp_path / "m.keras")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "name",
        "layer",
        "input",
        "output",
        "filters",
        "kernel",
        "strides",
        "padding",
        "out_pad",
        "dilation",
        "activation",
        "params",
    ]
    up2 = next(line.split() for line in lines if line.startswith("up2 "))
    assert up2 == [
        "up2",
        "Conv2DTranspose",
        "16x16x4",
        "32x32x2",
        "2",
        "3x3",
        "2x2",
        "same",
        "1x1",
        "1x1",
        "tanh",
        "74",
    ]
    assert main(["inspect", str(tmp_path / "m.keras"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in data["layers"]}
    assert rows["side"]["output_shape"] == [12, 6, 3]
    assert rows["up1b"]["params"] == 2 * 2 * 4 * 5
    assert (
        sum(r["params"] for r in rows.values())
        == sum(model.get_layer("inner").get_layer(n).count_params() for n in ("up1", "up1b"))
        + model.get_layer("up2").count_params()
        + model.get_layer("side").count_params()
    )
    (tmp_path / "x.txt").write_text("nope")
    assert main(["inspect", str(tmp_path / "x.txt")]) == 2
    assert "tconv inspect: error:" in capsys.readouterr().err


def test_files_load_without_tensorflow(keras, tmp_path):
    """load_layers imports neither TensorFlow nor Keras; a missing h5py names the extra."""
    import subprocess
    import sys

    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Conv1DTranspose(2, 3, name="t")])
    model.save(tmp_path / "m.keras")
    code = (
        "import sys, tconv.keras as tk\n"
        f"layers = tk.load_layers({str(tmp_path / 'm.keras')!r})\n"
        "assert list(layers) == ['t'], layers\n"
        "bad = {'tensorflow', 'keras', 'tf_keras', 'jax', 'torch'} & set(sys.modules)\n"
        "assert not bad, bad\n"
        "sys.modules['h5py'] = None\n"
        "try:\n"
        f"    tk.load_layers({str(tmp_path / 'm.keras')!r})\n"
        "except ImportError as err:\n"
        "    assert 'tconv[models]' in str(err), err\n"
        "else:\n"
        "    raise AssertionError('no ImportError without h5py')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_keras_archive_without_layer_names(keras, tmp_path):
    """Older Keras 3 writes no ``name`` attribute on ``vars``: layers are found by position."""
    h5py = peer("h5py")
    layers = keras.layers
    inp = keras.Input((3, 3, 2))
    branch = keras.Model(inp, layers.Conv2DTranspose(2, 2, strides=2, name="b")(inp), name="branch")
    model = keras.Sequential(
        [
            keras.Input((3, 3, 2)),
            layers.Conv2DTranspose(2, 3, padding="same", name="a"),
            branch,
            layers.Conv2DTranspose(3, 3, strides=2, padding="same", name="c"),
        ]
    )
    _randomize(model, 7)
    _randomize(branch, 8)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as src:
        config, weights = src.read("config.json"), src.read("model.weights.h5")
    (tmp_path / "w.h5").write_bytes(weights)
    with h5py.File(tmp_path / "w.h5", "a") as f:
        stripped = []
        f.visititems(lambda n, o: stripped.append(n) if "name" in o.attrs else None)
        for name in stripped:
            del f[name].attrs["name"]
    assert stripped
    with zipfile.ZipFile(tmp_path / "old.keras", "w") as dst:
        dst.writestr("config.json", config)
        dst.writestr("model.weights.h5", (tmp_path / "w.h5").read_bytes())
    real = {"a": model.layers[0], "b": branch.get_layer("b"), "c": model.layers[2]}
    shapes = {"a": (3, 3, 2), "b": (3, 3, 2), "c": (6, 6, 2)}
    for path in (tmp_path / "m.keras", tmp_path / "old.keras"):
        _check_layers(tk.load_layers(path), real, np.random.default_rng(5), shapes)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_same_name_in_two_nested_models(keras, tmp_path, suffix):
    def block(name, filters):
        return keras.Sequential(
            [keras.Input((3, 2)), keras.layers.Conv1DTranspose(filters, 3, name="up")], name=name
        )

    first, second = block("first", 2), block("second", 4)
    inp = keras.Input((3, 2))
    model = _randomize(keras.Model(inp, [first(inp), second(inp)]), 9)
    _randomize(first, 10)
    _randomize(second, 11)
    model.save(tmp_path / f"m{suffix}")
    real = {"up": first.get_layer("up"), "second/up": second.get_layer("up")}
    shapes = {"up": (3, 2), "second/up": (3, 2)}
    _check_layers(tk.load_layers(tmp_path / f"m{suffix}"), real, np.random.default_rng(6), shapes)
