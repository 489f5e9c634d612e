"""tconv.isolated: calls in a child process that may raise, die or hang, item by item."""

from __future__ import annotations

import os
import signal

import pytest

from tconv.isolated import run_each


def test_outcomes_in_order_and_the_child_is_replaced_after_each_death():
    outcomes = run_each("math:sqrt", [4, -1, "x", 9])
    assert outcomes[0] == {"status": "ok", "value": 2.0}
    assert outcomes[1]["status"] == "raised" and outcomes[1]["type"] == "ValueError"
    assert outcomes[2]["status"] == "raised" and outcomes[2]["type"] == "TypeError"
    assert outcomes[3] == {"status": "ok", "value": 3.0}
    died = run_each("signal:raise_signal", [int(signal.SIGABRT), int(signal.SIGSEGV)])
    assert [o["status"] for o in died] == ["died", "died"]
    assert [o["returncode"] for o in died] == [-signal.SIGABRT, -signal.SIGSEGV]
    exited = run_each("os:_exit", [3])
    assert exited[0]["status"] == "died" and exited[0]["returncode"] == 3


def test_a_hang_is_a_timeout_and_the_rest_still_run():
    outcomes = run_each("time:sleep", [0, 60, 0], timeout=3)
    assert [o["status"] for o in outcomes] == ["ok", "timeout", "ok"]


def test_values_that_are_not_json_come_back_as_their_repr():
    (outcome,) = run_each("builtins:frozenset", [[1]])
    assert outcome == {"status": "ok", "value": "frozenset({1})"}


def test_keras_children_compare_on_eigen_and_benchmark_on_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One rule (tconv.peers): a Keras child that compares numbers runs Eigen's kernels unless
    the environment says otherwise; a benchmark probe leaves TensorFlow's own choice."""
    from tconv import peers

    monkeypatch.setattr(os, "environ", dict(os.environ))  # the child's setdefaults stay here
    for eigen, expected in ((True, "0"), (False, None)):
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
        peers._child_environment(eigen)
        assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == expected
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    peers._child_environment(True)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
