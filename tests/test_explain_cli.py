"""`tconv explain` on the command line: parameters, weights, model files, errors, outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close, peer

from tconv import keras as tk
from tconv.cli import main


def _run(capsys, *argv):
    code = main(["explain", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_parameters_weights_and_input(tmp_path, capsys):
    rng = np.random.default_rng(3)
    kernel, bias = rng.standard_normal((3, 3, 3, 8)), rng.standard_normal(3)
    x = rng.standard_normal((4, 4, 8)).astype(np.float32)  # no batch axis: one is added
    np.savez(tmp_path / "w.npz", kernel=kernel, bias=bias)
    np.save(tmp_path / "x.npy", x)
    args = ["--input-shape", "4,4,8", "--filters", "3", "--kernel-size", "3", "--strides", "2"]
    args += ["--padding", "same", "--activation", "relu", "--weights", str(tmp_path / "w.npz")]
    args += ["--input", str(tmp_path / "x.npy"), "--at", "0,3,4,1"]
    code, out, _ = _run(capsys, *args, "--json")
    assert code == 0
    data = json.loads(out)
    layer = tk.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu")
    layer.set_weights([kernel, bias])
    assert_close(np.float32(data["value"]), layer(x[None])[0, 3, 4, 1], 16)
    assert data["activation"] == "relu" and len(data["taps"]) == 2
    code, out, _ = _run(capsys, *args, "--all")
    assert code == 0 and out.count(" · W[") == 16 and "more channels" not in out


def test_default_element_and_output_files(tmp_path, capsys):
    html, png, gif = tmp_path / "r.html", tmp_path / "e.png", tmp_path / "s.gif"
    code, out, _ = _run(
        capsys,
        *["--input-shape", "3,3,2", "--filters", "2", "--strides", "2", "--padding", "same"],
        *["--html", str(html), "--png", str(png), "--gif", str(gif)],
    )
    assert code == 0
    assert out.startswith("y[0, 3, 3, 1] of keras")  # central element of (1, 6, 6, 2)
    assert html.read_text().startswith("<!DOCTYPE html>") and png.stat().st_size > 1000
    assert f"wrote scatter animation: {gif}" in out and gif.stat().st_size > 1000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--at", "0,9,0,0"], "--at: at=(0, 9, 0, 0): index 9 is out of bounds for axis 1"),
        (["--at", "0,1"], "has 2 indices but the output (1, 6, 6, 2) has 4 axes"),
        (["--at", "a,b"], "--at must be comma-separated integers"),
        (["--output-padding", "2"], "output_padding"),
        (["--padding", "full"], "padding"),
        (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
        (["--input-shape=-3,3,2"], "--input-shape -3,3,2: sizes must be >= 0"),
    ],
)
def test_errors(capsys, argv, message):
    base = ["--input-shape", "3,3,2", "--filters", "2", "--strides", "2", "--padding", "same"]
    code, _, err = _run(capsys, *base, *argv)
    assert code == 2 and err.startswith("tconv explain: error:") and message in err


def test_wrong_input_shape_and_missing_shape(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 3, 5), np.float32))
    code, _, err = _run(
        capsys, "--input-shape", "3,3,2", "--filters", "2", "--input", str(tmp_path / "x.npy")
    )
    assert code == 2 and "input has 5 channels but the kernel expects 2" in err
    code, _, err = _run(capsys, "--filters", "2")
    assert code == 2 and "give --input-shape" in err


def test_bad_files_name_the_option(tmp_path, capsys):
    """Each file problem is one line naming the option and the file (these used to be NumPy's
    pickle advice, a context-manager TypeError, or a silently used first array)."""
    t = tmp_path
    (t / "notes.txt").write_text("hello\n")
    np.save(t / "ints.npy", np.zeros((1, 3, 3, 2), np.int32))
    np.save(t / "x5.npy", np.zeros((1, 5, 5, 2), np.float32))
    np.save(t / "x.npy", np.zeros((1, 3, 3, 2), np.float32))
    np.savez(t / "foo.npz", foo=np.zeros((3, 3, 2, 2)))
    np.savez(t / "k.npz", kernel=np.zeros((3, 3, 2, 2)))
    np.savez(t / "bad.npz", kernel=np.zeros((3, 3, 5, 2)))
    cases = [
        (["--input", str(t / "notes.txt")], f"--input {t / 'notes.txt'}: not a NumPy .npy file"),
        (["--input", str(t / "none.npy")], f"--input {t / 'none.npy'}: no such file"),
        (["--input", str(t / "k.npz")], "expected a NumPy .npy file"),
        (["--input", str(t / "ints.npy")], "dtype int32 is not floating point"),
        (["--input", str(t / "x5.npy")], "holds items of shape (5, 5, 2) but --input-shape is"),
        (["--weights", str(t / "x.npy")], "expected a NumPy .npz file"),
        (["--weights", str(t / "foo.npz")], "no array named 'kernel'"),
        (["--weights", str(t / "k.npz")], "no array named 'bias'; add one or pass --no-use-bias"),
        (["--weights", str(t / "bad.npz"), "--no-use-bias"], f"--weights {t / 'bad.npz'}: "),
    ]
    for argv, message in cases:
        code, _, err = _run(capsys, "--input-shape", "3,3,2", "--filters", "2", *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    code, out, _ = _run(capsys, "--filters", "2", "--input", str(t / "x.npy"))
    assert code == 0 and out.startswith("y[0, 2, 2, 1] of keras")  # shape from the file
    code, out, _ = _run(capsys, "--filters", "2", "--weights", str(t / "k.npz"), "--no-use-bias")
    assert code == 2  # still needs a shape


def test_model_file_against_real_keras(tmp_path, capsys):
    keras = peer("keras")
    inputs = keras.Input((5, 5, 4))
    h = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", name="up1")(inputs)
    y = keras.layers.Conv2DTranspose(2, 4, strides=2, activation="relu", name="up2")(h)
    model = keras.Model(inputs, y)
    rng = np.random.default_rng(5)
    for layer in model.layers[1:]:
        layer.set_weights([rng.standard_normal(w.shape) for w in layer.get_weights()])
    path = str(tmp_path / "m.keras")
    model.save(path)
    x = rng.standard_normal((1, 10, 10, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = np.asarray(model.get_layer("up2")(x))
    for at in [(0, 10, 11, 1), (0, 0, 0, 0), (0, 21, 21, 1)]:
        code, out, _ = _run(
            capsys,
            path,
            "--layer",
            "up2",
            "--input",
            str(tmp_path / "x.npy"),
            "--at",
            ",".join(map(str, at)),
            "--json",
        )
        assert code == 0
        assert_close(np.float32(json.loads(out)["value"]), expected[at], 48)
    code, out, _ = _run(capsys, path, "--layer", "up1")  # input shape recorded in the file
    assert code == 0 and "y[0, 5, 5, 1]" in out
    code, _, err = _run(capsys, path, "--layer", "nope")
    assert code == 2 and "no transposed convolution named 'nope'" in err and "up1, up2" in err
    code, _, err = _run(capsys, path)
    assert code == 2 and "choose one with --layer: up1, up2" in err
    out_dir = str(tmp_path / "demo")
    assert main(["demo", "--model", path, "--layer", "up2", "--no-pictures", "--out", out_dir]) == 0
    out = capsys.readouterr().out
    assert "tconv demo: Conv2DTranspose 'up2'" in out and "-> output (1, 22, 22, 2)" in out


def test_entry_point_subprocess(tmp_path):
    exe = shutil.which("tconv") or os.path.join(os.path.dirname(sys.executable), "tconv")
    html = tmp_path / "page.html"
    run = subprocess.run(
        [
            exe,
            "explain",
            "--input-shape",
            "4,3",
            "--filters",
            "2",
            "--kernel-size",
            "3",
            "--strides",
            "2",
            "--at",
            "0,4,1",
            "--html",
            str(html),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "y[0, 4, 1] of keras" in run.stdout and html.exists()
    run = subprocess.run([exe, "explain", "--help"], capture_output=True, text=True, check=False)
    assert run.returncode == 0 and "--input-shape" in run.stdout
