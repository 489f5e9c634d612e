"""The C worker pool behind CompiledLayer.shared (tconv.kernels.pool): every call gives the
plain call's output bit for bit, whether the workers spin or sleep between calls, from several
Python threads at once, and in a forked child; a chunk's error code comes back."""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_export_c import make_layer

from tconv import cexport
from tconv.kernels import build, emit, pool


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[build.CompiledLayer, np.ndarray]:
    layer = make_layer((3, 3), 24, 40, strides=(2, 2), seed=3)  # 2 blocks of 32 filters
    lib = cexport.build_shared(layer, (6, 7, 24), cache_dir=tmp_path_factory.mktemp("pool"))
    x = np.random.default_rng(1).uniform(-1, 1, (3, 6, 7, 24)).astype(np.float32)
    return lib, x


@pytest.fixture(autouse=True)
def _shared_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emit, "PARALLEL_MACS", 0)  # small layers: shared all the same


def _pool(lib: build.CompiledLayer) -> pool.Pool:
    workers = build.thread_pool(lib.compiler, str(lib.path.parent.parent))
    assert workers is not None
    return workers


@pytest.mark.parametrize("spin_us", [0, 50, pool.SPIN_MICROSECONDS])
def test_every_call_is_the_plain_call(
    compiled: tuple[build.CompiledLayer, np.ndarray], spin_us: int
) -> None:
    """Workers that sleep at once (0), wake mid-call or spin: 300 calls, each bit for bit; some
    after a pause long enough for the workers to have gone to sleep."""
    lib, x = compiled
    expected = lib(x)
    workers = _pool(lib)
    before, workers.spin_us = workers.spin_us, spin_us
    try:
        for i in range(300):
            if i % 50 == 0:
                time.sleep(0.01)
            got = lib.shared(x, 2, out=np.full_like(expected, np.nan))
            np.testing.assert_array_equal(got, expected)
    finally:
        workers.spin_us = before


def test_calls_from_several_python_threads(
    compiled: tuple[build.CompiledLayer, np.ndarray],
) -> None:
    lib, x = compiled
    expected = lib(x)

    def calls(_: int) -> bool:
        return all(np.array_equal(lib.shared(x, 3), expected) for _ in range(40))

    with concurrent.futures.ThreadPoolExecutor(4) as threads:
        assert all(threads.map(calls, range(4)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_child_starts_its_own_workers(
    compiled: tuple[build.CompiledLayer, np.ndarray],
) -> None:
    """Forked while another thread of the parent is in a shared call: the parent's workers do
    not exist in the child, which resets the pool (pthread_atfork: its mutex could have been
    held at the fork; os.register_at_fork: the Python lock was) and starts its own; the
    child's calls are right and end (a hang is killed and fails)."""
    lib, x = compiled
    x = np.concatenate([x] * 40)  # calls long enough that the fork falls inside one
    expected = lib.shared(x, 2)  # the parent's workers are running
    stop = threading.Event()

    def calls() -> None:  # a parent's thread in shared calls while the fork happens
        while not stop.is_set():
            lib.shared(x, 2)

    busy = threading.Thread(target=calls)
    busy.start()
    time.sleep(0.05)
    pid = os.fork()
    if pid != 0:
        stop.set()
        busy.join()
    if pid == 0:  # the child: exit code 0 when its calls are right
        ok = all(np.array_equal(lib.shared(x, 2), expected) for _ in range(20))
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung in its shared call")


def test_a_chunks_error_code_comes_back(
    compiled: tuple[build.CompiledLayer, np.ndarray], tmp_path: Path
) -> None:
    lib, x = compiled
    out = np.empty_like(lib(x))
    _, run = lib._tasks
    task = ctypes.cast(run, ctypes.c_void_p).value or 0
    args = (lib._weights.ctypes.data, x.ctypes.data, out.ctypes.data, -1)  # batch -1: code -1
    assert _pool(lib).run(task, args, 12, 2) == -1
    with pytest.raises(ValueError, match="tasks must be at least 1, got 0"):
        _pool(lib).run(task, args, 0, 2)


def test_without_a_pool_a_call_is_one_plain_call(
    compiled: tuple[build.CompiledLayer, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A compiler that cannot build the pool (here: C that does not compile): shared calls
    are plain calls, right, and the build is not tried on every call."""
    lib, x = compiled
    expected = lib(x)
    monkeypatch.setattr(build, "_pool", None)
    monkeypatch.setattr(build, "_pool_failed", False)
    monkeypatch.setattr(pool, "SOURCE", "this is not C;\n")
    tries = []
    real = build._cached_library
    monkeypatch.setattr(build, "_cached_library", lambda *a: tries.append(a) or real(*a))
    monkeypatch.setattr(lib, "path", tmp_path / "key" / lib.path.name)  # a fresh pool cache
    for _ in range(3):
        np.testing.assert_array_equal(lib.shared(x, 2), expected)
    assert len(tries) == 1 and build.thread_pool(lib.compiler, str(tmp_path)) is None


def test_a_bad_spin_time_is_named(
    compiled: tuple[build.CompiledLayer, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    lib, _ = compiled
    monkeypatch.setenv("TCONV_SPIN_US", "2ms")
    with pytest.raises(ValueError, match="TCONV_SPIN_US must be a whole number .* got '2ms'"):
        pool.Pool(_pool(lib)._lib._name)  # type: ignore[attr-defined]
    monkeypatch.setenv("TCONV_SPIN_US", "0")
    assert pool.Pool(_pool(lib)._lib._name).spin_us == 0  # type: ignore[attr-defined]
