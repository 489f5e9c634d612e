"""``tconv bench``: the CI smoke run (every path runs and agrees), case syntax, error reporting.

Never a speed threshold: timings on a shared machine say nothing in a unit test.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from conftest import REQUIRE_PEERS

from tconv import benchmark
from tconv.cli import main

PEER_NAMES = ("Keras", "PyTorch", "ONNX Runtime", "JAX")


def test_quick_runs_every_path_and_all_agree(tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # compiled C goes there
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    rc = main(
        ["bench", "--quick", "--repeats", "1", "--json", str(out_json), "--plot", str(out_png)]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    data = json.loads(out_json.read_text())
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["machine"]["cpu"] and "blas" in data["machine"]
    assert [c["case"]["name"] for c in data["cases"]] == [c.name for c in benchmark.QUICK]
    for case in data["cases"]:
        results = case["results"]
        by_status = {r["status"] for r in results}
        assert by_status <= {"ok", "missing"}, results
        names = " | ".join(r["path"] for r in results)
        for expected in ("tconv fast", "tconv reference", "tconv native", "bound", *PEER_NAMES):
            assert expected in names, f"{expected} neither timed nor listed as missing"
        for r in results:
            if r["status"] == "missing":
                assert r["note"], "a missing path says why"
                assert not (REQUIRE_PEERS and r["kind"] == "peer"), r
                continue
            assert r["ms"] > 0 and r["gflops"] > 0 and 1 <= r["calls"] <= benchmark.MAX_CALLS
            if r["kind"] != "bound":
                assert r["max_error"] <= r["error_bound"], r
        c_paths = [r for r in results if r["kind"] == "c"]
        assert {r["status"] for r in c_paths} == {"ok"}, "the C export must build here"
        avx512 = "avx512f" in data["machine"]["simd"]  # then the AVX2 build runs too
        assert len(c_paths) == 4 + 2 * avx512
        for r in c_paths:  # every C path names the instruction set it was built for
            assert re.search(r" \[(avx512|avx2|neon|portable)\]$", r["path"]), r["path"]
        if avx512:
            avx2 = [r for r in results if "[avx2]" in r["path"] or "Haswell]" in r["path"]]
            assert len(avx2) == 4 and all("BLAS Haswell" in r["note"] for r in avx2), avx2
        default = next(r for r in results if r["path"].startswith("tconv default"))
        assert re.match(r"-> (native C \[\w+\]|fast \(.+\)); first call \d+ ms", default["note"])
        memory = case["memory"]  # plus 64 KiB for Python objects, which dominate tiny cases
        assert memory["fast_extra_bytes"] < (
            memory["output_bytes"] + memory["gemm_result_bytes"] + 2**16
        )
    assert "| quick_2d | tconv fast (NumPy) |" in printed


def _fake_peer(offset: float):  # noqa: ANN202
    def make(layer, geometry, case, x):  # noqa: ANN001, ANN202
        y = layer(x) + np.float32(offset)
        return benchmark.Path("fake peer", "peer", lambda: y)

    return make


def _fail_peer(*args):  # noqa: ANN002, ANN202
    raise benchmark.Missing("not installed here")


def test_disagreement_is_an_error_and_missing_peers_are_listed(monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.setattr(
        benchmark, "PEERS", (("fake peer", _fake_peer(0.5)), ("absent peer", _fail_peer))
    )
    monkeypatch.setattr(benchmark, "_c_paths", _fail_peer)
    rc = main(["bench", "--case", "tiny=1x4x3x2:3:3:2", "--repeats", "1", "--cool-down", "0"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "**WRONG**" in captured.out
    assert "tiny: fake peer (wrong" in captured.err
    assert "| tiny | absent peer | " in captured.out and "not installed here" in captured.out


def test_agreeing_fake_peer_passes(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(benchmark, "PEERS", (("fake peer", _fake_peer(0.0)),))
    monkeypatch.setattr(benchmark, "_c_paths", _fail_peer)
    info, reports = benchmark.run([benchmark.parse_case("1x5x2:2:4:3:valid")], 2, cool_down=0)
    (report,) = reports
    statuses = {r.path: r.status for r in report.results}
    assert statuses["fake peer"] == "ok" and statuses["tconv fast (NumPy)"] == "ok"
    assert benchmark.failed(reports) == []
    peer = next(r for r in report.results if r.path == "fake peer")
    assert peer.vs_best_peer == pytest.approx(1.0)


def test_rounds_time_back_to_back_calls(monkeypatch) -> None:  # noqa: ANN001
    """A quick path runs MAX_CALLS times per round, one slower than a round once."""
    counts = {"quick peer": 0, "slow peer": 0}

    def counted(name: str, pause: float):  # noqa: ANN202
        def make(layer, geometry, case, x):  # noqa: ANN001, ANN202
            y = layer(x)

            def run() -> np.ndarray:
                counts[name] += 1
                time.sleep(pause)
                return y

            run.instant = pause == 0  # type: ignore[attr-defined]
            return benchmark.Path(name, "peer", run)

        return make

    timed = benchmark._timed

    def sized(call):  # noqa: ANN001, ANN202
        """The real timing, except that the instant peer always measures 1 µs (on a loaded
        machine a trivial call can take more than the 0.5 ms that sizes MAX_CALLS)."""
        out, seconds = timed(call)
        return out, 1e-6 if getattr(call, "instant", False) else seconds

    monkeypatch.setattr(benchmark, "_timed", sized)
    slow = 1.2 * benchmark.ROUND_SECONDS
    monkeypatch.setattr(
        benchmark,
        "PEERS",
        (("quick peer", counted("quick peer", 0)), ("slow", counted("slow peer", slow))),
    )
    monkeypatch.setattr(benchmark, "_c_paths", _fail_peer)
    monkeypatch.setattr(benchmark, "WARM_SECONDS", 0.0)  # one untimed call per round
    _, (report,) = benchmark.run([benchmark.parse_case("1x5x2:2:4:3:valid")], 3, cool_down=0)
    calls = {r.path: r.calls for r in report.results}
    assert calls["quick peer"] == benchmark.MAX_CALLS and calls["slow peer"] == 1
    # a warm-up call, a call that sizes the rounds, an untimed call before each round that
    # wakes the path's threads (only for a path quicker than a round), the timed calls
    assert counts == {"quick peer": 2 + 3 * (1 + benchmark.MAX_CALLS), "slow peer": 2 + 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1x8x8x1024:512:3:2", ("1x8x8x1024_512_3x3_2x2_same", 1, (8, 8), 1024, 512, (3, 3))),
        ("a=2x16x4:8:16:8:valid", ("a", 2, (16,), 4, 8, (16,))),
        ("v=1x4x5x6x3:2:3x2x1:2:same", ("v", 1, (4, 5, 6), 3, 2, (3, 2, 1))),
    ],
)
def test_parse_case(text: str, expected: tuple) -> None:
    case = benchmark.parse_case(text)
    assert (case.name, case.batch, case.spatial, case.in_channels, case.filters, case.kernel) == (
        expected
    )
    assert benchmark.parse_case(case.spec).spec == case.spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1x8x8:512:3:2:full", "does not match"),
        ("8x1024:512:3:2", "input shape needs N"),
        ("1x8x8x16:4:3x3x3:2", "kernel size must be one positive int or 2"),
        ("1x8x8x16:4:3:0", "strides must be one positive int"),
        ("1x0x8x16:4:3:2", "sizes and channels must be positive"),
    ],
)
def test_bad_case_is_a_clear_cli_error(text: str, message: str, capsys) -> None:  # noqa: ANN001
    assert main(["bench", "--case", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tconv bench: error: --case") and message in err


def test_suite_is_the_issue_suite() -> None:
    specs = {c.name: c.spec for c in benchmark.SUITE}
    assert specs == {
        "seed_k3": "1x8x8x1024:512:3x3:2x2:same",
        "seed_k4": "1x8x8x1024:512:4x4:2x2:same",
        "seed_k5_b8": "8x8x8x1024:512:5x5:2x2:same",
        "unet_k3": "1x64x64x128:64:3x3:2x2:same",
        "dcgan_k4_b16": "16x16x16x256:128:4x4:2x2:same",
        "audio1d_k16s8": "1x2048x256:128:16:8:same",
        "vol3d_k3": "1x8x8x8x64:32:3x3x3:2x2x2:same",
    }


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--repeats", "0"], "--repeats must be >= 1"), (["--cool-down", "-1"], "--cool-down must")],
)
def test_bad_options_are_clear_cli_errors(option: list[str], message: str, capsys) -> None:  # noqa: ANN001
    assert main(["bench", "--quick", *option]) == 2
    assert message in capsys.readouterr().err


def test_keras_that_dies_in_its_child_is_reported_not_fatal(monkeypatch) -> None:  # noqa: ANN001
    """Where TensorFlow takes its process down (oneDNN kernels, on some CPUs), the benchmark
    learns it from a child process and reports Keras as missing, with the reason."""
    seen = []

    def dying_child(calls, timeout=300.0, eigen=True):  # noqa: ANN001, ANN202
        assert not eigen  # the probe runs the kernels the timed call will get
        seen.extend(calls)
        return ["Keras took its process down (signal 6; TensorFlow's oneDNN kernels do so)"]

    monkeypatch.setattr(benchmark, "keras_outputs", dying_child)
    monkeypatch.setattr(benchmark, "PEERS", benchmark.PEERS[:1])  # Keras only
    monkeypatch.setattr(benchmark, "_c_paths", _fail_peer)
    case = benchmark.parse_case("dies=1x4x3x2:3:3:2")
    monkeypatch.setattr(benchmark, "_KERAS_TRIED", {})
    _, (report,) = benchmark.run([case], 1, cool_down=0)
    assert [c.class_name for c in seen] == ["Conv2DTranspose"]
    assert seen[0].config["strides"] == (2, 2) and seen[0].x.shape == (1, 4, 3, 2)
    keras = next(r for r in report.results if r.path == "Keras (TensorFlow)")
    assert keras.status == "missing" and "signal 6" in keras.note
    assert {r.path: r.status for r in report.results}["tconv fast (NumPy)"] == "ok"
