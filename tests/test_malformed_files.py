"""Seeded fuzz: damaged model files always give a ValueError naming the file (issue 9).

Real files are written by the frameworks (Keras 3 ``.keras``/``.h5``, tf.keras 2 ``.h5``/``.keras``,
an ONNX file exported by PyTorch), then damaged four ways: truncated, bits flipped, a block
zeroed, bytes inserted.  Each is loaded in a child process (:func:`tconv.isolated.run_each`), so
that a crash or a hang inside a C library is reported as such instead of killing the test run.
Every outcome must be a clean load (a flipped bit in a weight is still a model) or a
``ValueError`` whose message starts with the file's path.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from conftest import peer

from tconv.cli import main
from tconv.isolated import run_each

KINDS = ("truncate", "flip", "zero", "insert")
PER_KIND = 12  # 5 files x 4 kinds x 12 = 240 damaged files


def damage(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """``data`` truncated, with 1-8 bits flipped, with a block of 1-2048 bytes zeroed, or with
    1-64 random bytes inserted, at random places."""
    n = len(data)
    if kind == "truncate":
        return data[: int(rng.integers(0, n))]
    if kind == "flip":
        out = bytearray(data)
        for pos in rng.integers(0, n, int(rng.integers(1, 9))):
            out[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(out)
    start = int(rng.integers(0, n))
    if kind == "zero":
        size = min(int(rng.integers(1, 2049)), n - start)
        return data[:start] + bytes(size) + data[start + size :]
    extra = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    return data[:start] + extra + data[start:]


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """The five real files: name -> path."""
    keras, tf_keras, torch = peer("keras"), peer("tf_keras"), peer("torch")
    out = tmp_path_factory.mktemp("originals")
    layers = keras.layers
    inp = keras.Input((4, 4, 3))
    y = layers.Conv2DTranspose(5, 3, strides=2, padding="same", name="up")(inp)
    y = layers.Conv2DTranspose(2, 2, strides=2, name="up2")(layers.ReLU()(y))
    model = keras.Model(inp, y)
    model.save(out / "keras3.keras")
    model.save(out / "keras3.h5")
    legacy = tf_keras.Sequential(
        [
            tf_keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same", input_shape=(4, 4, 3)),
            tf_keras.layers.Conv2DTranspose(2, 2, strides=2),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.keras warns that .h5 is a legacy format
        legacy.save(out / "tf_keras.h5")
        legacy.save(out / "tf_keras.keras")
        net = torch.nn.Sequential(
            torch.nn.ConvTranspose2d(4, 6, 3, 2, padding=1, output_padding=1),
            torch.nn.ConvTranspose2d(6, 2, 3, 2, groups=2),
        ).eval()
        torch.onnx.export(net, (torch.randn(1, 4, 5, 5),), str(out / "torch.onnx"), dynamo=False)
    return {p.name: p for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def damaged(originals, tmp_path_factory):
    """(original name, kind, path) of every damaged file, seeded."""
    out = tmp_path_factory.mktemp("damaged")
    rng = np.random.default_rng(9)
    cases = []
    for name, path in originals.items():
        data = path.read_bytes()
        for kind in KINDS:
            for i in range(PER_KIND):
                target = out / f"{kind}{i}-{name}"
                target.write_bytes(damage(data, kind, rng))
                cases.append((name, kind, target))
    return cases


def _loader(path) -> str:
    return "tconv.onnx:load_layers" if str(path).endswith(".onnx") else "tconv.keras:load_layers"


def test_originals_load(originals):
    for path in originals.values():
        (outcome,) = run_each(_loader(path), [str(path)], timeout=120)
        assert outcome["status"] == "ok", (path.name, outcome)


def test_every_damaged_file_loads_or_is_a_value_error_naming_it(damaged):
    bad = []
    kinds_refused = set()
    for loader in ("tconv.keras:load_layers", "tconv.onnx:load_layers"):
        cases = [c for c in damaged if _loader(c[2]) == loader]
        outcomes = run_each(loader, [str(c[2]) for c in cases], timeout=60)
        for (name, kind, path), outcome in zip(cases, outcomes, strict=True):
            refused = outcome["status"] == "raised" and outcome["type"] == "ValueError"
            if refused and outcome["message"].startswith(f"{path}: "):
                kinds_refused.add((name, kind))
            elif outcome["status"] != "ok":
                bad.append((path.name, outcome))
    assert bad == [], f"{len(bad)} of {len(damaged)}: {bad[:5]}"
    assert len(damaged) == 5 * len(KINDS) * PER_KIND
    # The damage is real: every file and kind has refused cases (truncation always refuses).
    assert {(n, "truncate") for n, _, _ in damaged} <= kinds_refused
    assert len(kinds_refused) >= 15


def test_a_zeroed_heap_object_is_refused_not_a_hang(originals, tmp_path):
    """libhdf5 loops forever on a global heap collection whose object headers were zeroed
    (found by this fuzz): tconv checks the collections first."""
    data = bytearray(originals["tf_keras.h5"].read_bytes())
    start = data.find(b"GCOL")
    assert start > 0
    second = start + 16 + 16 + -(-int.from_bytes(data[start + 24 : start + 32], "little") // 8) * 8
    data[second : second + 64] = bytes(64)  # the header of the collection's second object
    path = tmp_path / "zeroed.h5"
    path.write_bytes(bytes(data))
    (outcome,) = run_each("tconv.keras:load_layers", [str(path)], timeout=60)
    assert outcome["status"] == "raised" and outcome["type"] == "ValueError", outcome
    assert outcome["message"].startswith(f"{path}: a damaged HDF5 file: the global heap")


@pytest.mark.parametrize("command", ["inspect", "explain", "export-c", "vectors"])
def test_cli_commands_print_the_error(damaged, command, tmp_path, capsys):
    refused = [
        c[2]
        for c in damaged
        if c[1] == "truncate" and os.path.getsize(c[2]) > 100 and c[0] != "torch.onnx"
    ]
    for path in refused[:3]:
        argv = {
            "inspect": ["inspect", str(path)],
            "explain": ["explain", str(path)],
            "export-c": ["export-c", str(path), "--out", str(tmp_path / "c"), "--force"],
            "vectors": ["vectors", str(path), "--out", str(tmp_path / "v"), "--force"],
        }[command]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"tconv {command}: error: {path}: "), err
        assert "Traceback" not in err
