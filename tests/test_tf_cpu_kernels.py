"""TensorFlow's two CPU kernel families for conv_transpose, each in child processes.

TensorFlow runs oneDNN kernels on CPUs with AVX-512 (and wherever TF_ENABLE_ONEDNN_OPTS=1) and
Eigen's elsewhere (TF_ENABLE_ONEDNN_OPTS=0).  They differ where the call should be refused, and
oneDNN's sometimes abort the whole process, so the rest of the suite compares tconv with Eigen's
only (tests/conftest.py pins it) and this file runs both in children (tconv.isolated), never in
the test process.  Eigen's answers are the same on every CPU and are asserted; oneDNN's are
recorded (printed with -s) and checked only where they are a number: then they equal tconv's.
The README's discrepancy list states what this shows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close, peer
from tf_kernel_calls import data

import tconv.keras as tk
from tconv.isolated import run_each

CASES = {
    # name: the call, as tf_kernel_calls.conv_transpose takes it
    "negative stride": dict(x=[1, 5, 2], w=[3, 4, 2], strides=-1, padding="valid"),
    "same, even kernel, output_padding=0": dict(
        x=[1, 4, 2], w=[4, 3, 2], strides=2, padding="same", output_padding=0
    ),
    "zero kernel size": dict(x=[1, 4, 4, 3], w=[0, 3, 2, 3], strides=1, padding="valid"),
    "zero filters": dict(x=[1, 4, 4, 3], w=[3, 3, 0, 3], strides=1, padding="valid"),
    "negative output length": dict(
        x=[1, 0, 1, 2], w=[3, 3, 2, 2], strides=[4, 1], padding="same", output_padding=[0, 0]
    ),
    "output length 0": dict(x=[1, 1, 2], w=[4, 2, 2], strides=1, padding="same", output_padding=0),
    "ordinary": dict(x=[2, 3, 4, 3], w=[3, 3, 2, 3], strides=2, padding="same"),
}
TESTS = str(Path(__file__).parent)


@pytest.fixture(scope="module")
def outcomes():
    """{"eigen" | "onednn": {case name: outcome}}, one child process per kernel family (a new
    one after each death)."""
    peer("tensorflow")
    found = {}
    for family, flag in (("eigen", "0"), ("onednn", "1")):
        path = os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": flag, "PYTHONPATH": path}
        results = run_each("tf_kernel_calls:conv_transpose", list(CASES.values()), env=env)
        found[family] = dict(zip(CASES, results, strict=True))
    print()
    for name in CASES:
        for family in found:
            o = found[family][name]
            what = o.get("type") or o.get("returncode") or o.get("value", {}).get("shape")
            print(f"  {name:38} {family:7} {o['status']:7} {what}")
    return found


def _tconv(call: dict) -> np.ndarray:
    x, w = data(call)
    return tk.conv_transpose(x, w, call["strides"], call["padding"], call.get("output_padding"))


REFUSED = [n for n in CASES if n not in ("ordinary", "output length 0")]


@pytest.mark.parametrize("name", REFUSED)
def test_eigen_refuses_and_so_does_tconv(outcomes, name):
    eigen = outcomes["eigen"][name]
    assert eigen["status"] == "raised" and eigen["type"] == "InvalidArgumentError", eigen
    if name == "same, even kernel, output_padding=0":  # tconv follows Keras' documented length
        assert _tconv(CASES[name]).shape == (1, 6, 3)
    else:
        with pytest.raises(ValueError):
            _tconv(CASES[name])


@pytest.mark.parametrize("name", list(CASES))
def test_onednn_never_takes_the_test_process_down_and_its_numbers_are_tconvs(outcomes, name):
    onednn = outcomes["onednn"][name]
    assert onednn["status"] in ("ok", "raised", "died"), onednn
    if onednn["status"] == "ok" and name not in REFUSED:
        expected = np.array(onednn["value"]["y"], np.float32).reshape(onednn["value"]["shape"])
        assert_close(_tconv(CASES[name]), expected, 27)


def test_both_agree_with_tconv_on_ordinary_calls(outcomes):
    for family in ("eigen", "onednn"):
        got = outcomes[family]["ordinary"]
        assert got["status"] == "ok", (family, got)
        expected = np.array(got["value"]["y"], np.float32).reshape(got["value"]["shape"])
        assert_close(_tconv(CASES["ordinary"]), expected, 27)
    eigen = outcomes["eigen"]["output length 0"]  # Eigen refuses what Keras' rule allows
    assert eigen["status"] == "raised" and _tconv(CASES["output length 0"]).shape == (1, 0, 2)
