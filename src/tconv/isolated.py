"""Calls that may take the process down, run in a child Python process that can die instead.

Some peers abort the whole process on inputs they should refuse (TensorFlow's oneDNN kernels do,
on AVX-512 CPUs), and a damaged file can in principle crash a C library.  :func:`run_each` runs
one function on many items in a child process, one item after another, and reports each item's
outcome; when the child dies (a signal, ``abort()``) or hangs, that item is reported as such and
a new child carries on with the rest.  Only the standard library and the function's own module
are imported in the child.

Run as ``python -m tconv.isolated MODULE:FUNCTION``: JSON items on stdin, one per line; one JSON
outcome per item on stdout.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["run_each"]

_PREFIX = "tconv-isolated:"


def _outcome(function: Any, item: Any) -> dict[str, Any]:
    try:
        value = function(item)
    except Exception as err:  # the outcome is reported, whatever it is
        return {"status": "raised", "type": type(err).__name__, "message": str(err)}
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)[:500]
    return {"status": "ok", "value": value}


def _child(target: str) -> None:
    module, _, name = target.partition(":")
    function = getattr(importlib.import_module(module), name)
    for line in sys.stdin:
        outcome = _outcome(function, json.loads(line))
        sys.stdout.write(_PREFIX + json.dumps(outcome) + "\n")
        sys.stdout.flush()


def run_each(
    target: str,
    items: Sequence[Any],
    *,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run ``MODULE:FUNCTION`` (``target``) on each JSON-able item in a child process.

    Returns one outcome per item, in order: ``{"status": "ok", "value": ...}`` (the return
    value, or its ``repr`` when it is not JSON), ``{"status": "raised", "type": ...,
    "message": ...}``, ``{"status": "died", "returncode": ..., "stderr": ...}`` (a negative
    return code is the signal) or ``{"status": "timeout"}`` after ``timeout`` seconds for one
    item (the child's start counts towards its first item).  ``env`` replaces the child's
    environment (default: this process's).
    """
    outcomes: list[dict[str, Any]] = []
    while len(outcomes) < len(items):
        outcomes += _one_child(target, items[len(outcomes) :], timeout, env)
    return outcomes


def _one_child(
    target: str, items: Sequence[Any], timeout: float, env: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    """Outcomes of one child, up to and including the item it died or hung on."""
    stderr = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty child never blocks
    child = subprocess.Popen(
        [sys.executable, "-m", "tconv.isolated", target],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=dict(os.environ if env is None else env),
    )
    assert child.stdin is not None and child.stdout is not None
    outcomes: list[dict[str, Any]] = []
    selector = selectors.DefaultSelector()
    selector.register(child.stdout, selectors.EVENT_READ)
    try:
        for item in items:
            child.stdin.write(json.dumps(item) + "\n")
            child.stdin.flush()
            deadline = time.monotonic() + timeout
            line = ""
            while not line.startswith(_PREFIX):
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    child.kill()
                    child.wait()
                    return [*outcomes, {"status": "timeout", "seconds": timeout}]
                line = child.stdout.readline()
                if not line:  # the child died
                    return [*outcomes, _died(child, stderr)]
            outcomes.append(json.loads(line[len(_PREFIX) :]))
    except BrokenPipeError:  # died before reading the item
        return [*outcomes, _died(child, stderr)]
    finally:
        selector.close()
        if child.poll() is None:
            child.stdin.close()
            child.wait(timeout=30)
        child.stdout.close()
        stderr.close()
    return outcomes


def _died(child: subprocess.Popen[str], stderr: Any) -> dict[str, Any]:
    child.wait()
    stderr.seek(0)
    return {"status": "died", "returncode": child.returncode, "stderr": stderr.read()[-2000:]}


if __name__ == "__main__":
    _child(sys.argv[1])
