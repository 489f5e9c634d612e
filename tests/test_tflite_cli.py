"""`tconv inspect`, `explain`, `vectors` and `export-c` on converter-written .tflite files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_export_c import tool
from tflite_models import Spec, convert, keras_model, run_op_on

from tconv.cli import main
from tconv.tflite import load_layers


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(8)
    specs = [
        Spec(4, 4, 3, 5, (3, 3), (2, 2), "same", True, "relu"),
        Spec(4, 4, 3, 2, (2, 2), (3, 3), "valid", False, None),
    ]
    found = {}
    for kind in ("int8", "16x8", "float32"):
        path = root / f"{kind}.tflite"
        convert(keras_model(specs[: 1 if kind != "float32" else 2], rng), rng, kind, path)
        found[kind] = path
    return found


def test_inspect(models: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", str(models["int8"]), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["layers"]
    assert row["kind"] == "int8" and row["input"] == [1, 4, 4, 3] and row["output"] == [1, 8, 8, 5]
    assert row["filter"] == [5, 3, 3, 3] and row["strides"] == [2, 2] and row["padding"] == "SAME"
    assert row["activation"] == "RELU" and row["filter_scales"] == "per-channel"
    assert row["params"] == 5 * 27 + 5 and row["bias"] is True
    assert main(["inspect", str(models["float32"])]) == 0
    text = capsys.readouterr().out
    assert "float32" in text and "VALID" in text and "2 TRANSPOSE_CONV op(s)" in text


def test_explain_vectors_export(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = models["16x8"]
    assert main(["explain", str(path), "--at", "0,3,4,2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "16x8" and data["at"] == [0, 3, 4, 2]
    x = np.random.default_rng(0).normal(0, 1, (1, 4, 4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["explain", str(path), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    (layer,) = load_layers(path).values()
    assert json.loads(capsys.readouterr().out)["value"] == layer(layer.quantize(x))[0, 4, 4, 2]
    assert main(["explain", str(path), "--html", str(tmp_path / "p.html")]) != 0
    assert "a quantized op is explained as text" in capsys.readouterr().err
    out = tmp_path / "vec"
    assert main(["vectors", str(path), "--out", str(out)]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    (case,) = manifest["cases"]
    x, y = np.load(out / "layer_input.npy"), np.load(out / "layer_expected.npy")
    assert x.dtype == np.int16 and x.shape == (4, 4, 4, 3) and case["worst_case_items"] == 3
    assert np.array_equal(y, run_op_on(path, x))  # the vectors are TFLite's reference output
    assert np.array_equal(
        np.load(out / "layer_filter.npy"), next(iter(load_layers(path).values())).filter
    )
    tool("gcc")
    c_out = tmp_path / "c"
    assert (
        main(
            [
                "export-c",
                str(models["int8"]),
                "--out",
                str(c_out),
                "--name",
                "q",
                "--verify",
                "--cc",
                "gcc",
            ]
        )
        == 0
    )
    assert "0 differ (max 0 LSB): PASS" in capsys.readouterr().out


def test_bench_tflite_runs_and_checks(capsys: pytest.CaptureFixture) -> None:
    # The comparison's machinery (TensorFlow in a child, the C compiled and checked), not its
    # speed: one timed run each.
    tool("gcc")
    from tconv import benchmark_tflite

    result = benchmark_tflite.run(repeats=1, cc="gcc")
    assert result["c_bit_exact"], result["c_harness"]
    assert all(v is not None and v > 0 for v in result["seconds"].values())
    for d in result["tflite_vs_reference_definition"].values():
        assert d["max_lsb"] <= 1  # TFLite's optimized kernels round a few halves differently
    assert "C / XNNPACK" in benchmark_tflite.table(result)
