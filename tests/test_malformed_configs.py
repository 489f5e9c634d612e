"""Seeded fuzz of model *configs*: a file whose JSON is well formed but says something wrong
(a key missing, a value of another type or out of range) must load, or raise a ``ValueError``
whose message starts with the file's path; never a ``KeyError``/``ZeroDivisionError``/... from
inside the loader, never a wrong model.  (tests/test_malformed_files.py damages the bytes.)

Each mutation deletes one entry of the config or replaces it with one of a few values of
every JSON type, at a seeded random place; ``tconv.keras.load_model`` runs it and the loaded
model is called on zeros.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import peer

import tconv.keras as tk

VALUES = [None, -1, 0, 3, 1e9, "x", [], {}, [1, 2], True, "same", -3.5, [None], {"a": 1}]
MUTATIONS = 120  # per file; about 10 s in all


def _paths(value: Any, at: tuple = ()) -> list[tuple]:
    out = [at] if at else []
    if isinstance(value, (dict, list)):
        for key, v in value.items() if isinstance(value, dict) else enumerate(value):
            out += _paths(v, (*at, key))
    return out


def _mutate(config: dict, rng: random.Random) -> dict:
    config = copy.deepcopy(config)
    where = rng.choice(_paths(config))
    parent = config
    for key in where[:-1]:
        parent = parent[key]
    if rng.random() < 0.5:
        del parent[where[-1]]
    else:
        parent[where[-1]] = rng.choice(VALUES)
    return config


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    keras = peer("keras")
    out = tmp_path_factory.mktemp("configs")
    layers = keras.layers
    inp = keras.Input((6, 6, 3))
    a = layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    b = layers.BatchNormalization(name="bn")(layers.MaxPooling2D(name="pool")(a))
    c = layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(b)
    cat = layers.Concatenate(name="cat")([c, a])
    y = layers.Add(name="add")([layers.Conv2D(4, 1, name="mix")(cat), a])
    model = keras.Model(inp, layers.Dense(2, name="dense")(y))
    model.save(out / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # .h5 is a legacy format
        model.save(out / "m.h5")
    return out


def _write(original: Path, config: dict, target: Path) -> None:
    if original.suffix == ".keras":
        with zipfile.ZipFile(original) as src, zipfile.ZipFile(target, "w") as dst:
            for name in src.namelist():
                data = json.dumps(config) if name == "config.json" else src.read(name)
                dst.writestr(name, data)
        return
    h5py = pytest.importorskip("h5py")
    shutil.copy(original, target)
    with h5py.File(target, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)


def _config(original: Path) -> dict:
    if original.suffix == ".keras":
        with zipfile.ZipFile(original) as z:
            return json.loads(z.read("config.json"))
    import h5py

    with h5py.File(original) as f:
        return json.loads(f.attrs["model_config"])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_every_mutated_config_loads_or_is_a_value_error_naming_the_file(
    model_files, tmp_path, suffix
):
    original = model_files / f"m{suffix}"
    config = _config(original)
    rng = random.Random(20261202)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(MUTATIONS):
        target = tmp_path / f"{i}{suffix}"
        _write(original, _mutate(config, rng), target)
        try:
            model = tk.load_model(target)
            with np.errstate(all="ignore"):  # a mutated epsilon may make NaNs, as in Keras
                model(np.zeros((1, *model.input_shape[1:]), np.float32))
        except ValueError as err:
            assert str(err).startswith(str(target)), (i, str(err))
            outcomes["refused"] += 1
        else:
            outcomes["loaded"] += 1
    assert outcomes["refused"] > 10 and outcomes["loaded"] > 10, outcomes
