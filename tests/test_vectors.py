"""`tconv vectors`: the files, the manifest, agreement with the engine and the real frameworks,
and a C header that compiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close, peer

from tconv import cli
from tconv.cexport import compile_c, vectors
from tconv.cexport.project import expected_output


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("vectors")
    assert cli.main(["vectors", "--suite", "edge", "--out", str(out), "--force"]) == 0
    return out, json.loads((out / "manifest.json").read_text())


def load(out: Path, entry: dict, key: str, ext: str = "npy") -> np.ndarray:
    path = out / entry["files"][key][ext]
    if ext == "npy":
        return np.load(path)
    return np.fromfile(path, "<f4").reshape(entry["shapes"][key])


def test_suite_covers_the_edge_cases(edge: tuple[Path, dict]) -> None:
    _, manifest = edge
    cases = {c["name"]: c for c in manifest["cases"]}
    axes = [a for c in manifest["cases"] for a in c["geometry"]["axes"]]
    assert any(a["stride"] > a["kernel"] for a in axes)
    assert any(
        a["kernel"] % 2 == 0 and c["keras_config"]["padding"] == "same"
        for c in manifest["cases"]
        if "keras_config" in c
        for a in c["geometry"]["axes"]
    )
    assert any(a["crop_end"] < 0 for a in axes)  # output_padding / zero rows
    assert any(a["dilation"] > 1 for a in axes)
    assert any(all(a["size"] == 1 for a in c["geometry"]["axes"]) for c in manifest["cases"])
    assert any(c["geometry"]["in_channels"] == 1 for c in manifest["cases"])
    assert any(c["shapes"]["input"][0] > 1 for c in manifest["cases"])
    assert any(c["data_format"] == "channels_first" for c in manifest["cases"])
    assert {len(c["geometry"]["axes"]) for c in manifest["cases"]} == {1, 2, 3}
    assert cases["torch_groups_2"]["geometry"]["groups"] == 2


def test_files_agree_and_match_the_engine(edge: tuple[Path, dict]) -> None:
    out, manifest = edge
    suite = {name: layer for name, layer, _ in vectors.edge_suite()}
    for entry in manifest["cases"]:
        for key in entry["files"]:
            np.testing.assert_array_equal(load(out, entry, key), load(out, entry, key, "bin"))
            assert list(load(out, entry, key).shape) == entry["shapes"][key]
        layer = suite[entry["name"]]
        x = load(out, entry, "input")
        # the output length from the manifest's geometry, by the definition
        for a in entry["geometry"]["axes"]:
            full = (a["size"] - 1) * a["stride"] + a["dilation"] * (a["kernel"] - 1) + 1
            assert a["out"] == full - a["crop_start"] - a["crop_end"]
        np.testing.assert_array_equal(load(out, entry, "kernel"), layer.framework_kernel)
        y = layer.forward(x, method="reference")
        assert_close(load(out, entry, "expected"), y, terms=entry["max_terms"])


def test_keras_cases_match_keras(edge: tuple[Path, dict]) -> None:
    keras = peer("keras")
    out, manifest = edge
    checked = 0
    for entry in manifest["cases"]:
        if "keras_config" not in entry or not keras_runs_on_cpu(entry):
            continue  # checked against torch below
        config = entry["keras_config"]
        kind = getattr(keras.layers, f"Conv{len(entry['geometry']['axes'])}DTranspose")
        layer = kind.from_config(config)
        x = load(out, entry, "input")
        layer.build(x.shape)
        weights = [load(out, entry, "kernel")]
        if "bias" in entry["files"]:
            weights.append(load(out, entry, "bias"))
        layer.set_weights(weights)
        assert_close(load(out, entry, "expected"), np.asarray(layer(x)), terms=entry["max_terms"])
        checked += 1
    assert checked >= 12


def keras_runs_on_cpu(entry: dict) -> bool:
    """TF's CPU kernels have neither dilation > 1 nor channels_first transposed convolution."""
    dilated = any(a["dilation"] > 1 for a in entry["geometry"]["axes"])
    return not dilated and entry["data_format"] == "channels_last"


def test_other_keras_cases_match_torch(edge: tuple[Path, dict]) -> None:
    """Where TF's CPU kernels refuse, compare with torch: full output, then the crops."""
    torch = peer("torch")
    from tconv.layer import TORCH

    out, manifest = edge
    checked = 0
    for entry in manifest["cases"]:
        if "keras_config" not in entry or keras_runs_on_cpu(entry):
            continue
        axes = entry["geometry"]["axes"]
        assert entry["activation"] == "linear" and all(a["crop_start"] >= 0 for a in axes)
        x = load(out, entry, "input")
        if entry["data_format"] == "channels_last":
            x = np.moveaxis(x, -1, 1)
        weight = TORCH.from_canonical(load(out, entry, "kernel"), 1)
        conv = getattr(torch.nn.functional, f"conv_transpose{len(axes)}d")
        full = conv(
            torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(np.ascontiguousarray(weight)),
            stride=tuple(a["stride"] for a in axes),
            dilation=tuple(a["dilation"] for a in axes),
        ).numpy()
        crop = tuple(slice(a["crop_start"], a["crop_start"] + a["out"]) for a in axes)
        y = full[(slice(None), slice(None)) + crop]
        y = y + load(out, entry, "bias").reshape(-1, *[1] * len(axes))
        if entry["data_format"] == "channels_last":
            y = np.moveaxis(y, 1, -1)
        assert_close(load(out, entry, "expected"), y, terms=entry["max_terms"])
        checked += 1
    assert checked == 2


def test_torch_case_matches_torch(edge: tuple[Path, dict]) -> None:
    torch = peer("torch")
    out, manifest = edge
    entry = next(c for c in manifest["cases"] if c["name"] == "torch_groups_2")
    y = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(load(out, entry, "input")),
        torch.from_numpy(load(out, entry, "kernel")),
        torch.from_numpy(load(out, entry, "bias")),
        stride=2,
        padding=1,
        output_padding=1,
        groups=2,
    )
    assert_close(load(out, entry, "expected"), y.numpy(), terms=entry["max_terms"])


def test_header_compiles(edge: tuple[Path, dict], tmp_path: Path) -> None:
    out, manifest = edge
    src = tmp_path / "use.c"
    name = manifest["cases"][0]["name"]
    src.write_text(
        "#define TCONV_VECTORS_IMPLEMENTATION\n"
        f'#include "{out / "tconv_vectors.h"}"\n#include <stdio.h>\n'
        f'int main(void) {{ printf("%.9g\\n", (double){name}_expected[0]); return 0; }}\n'
    )
    compile_c(
        [src], tmp_path / "use", cflags=["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    )
    import subprocess

    printed = float(subprocess.run([tmp_path / "use"], capture_output=True, text=True).stdout)
    assert np.float32(printed) == load(out, manifest["cases"][0], "expected").reshape(-1)[0]


def test_single_layer_from_parameters(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [
        "vectors",
        "--input-shape",
        "3,3,2",
        "--filters",
        "2",
        "--kernel-size",
        "3",
        "--strides",
        "2",
        "--padding",
        "same",
        "--out",
        str(tmp_path / "v"),
        "--json",
    ]
    assert cli.main(args) == 0
    cases = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cases] == ["layer"]
    assert cases[0]["shapes"]["expected"] == [1, 6, 6, 2]
    # writing again into the same folder is refused without --force
    assert cli.main(args) == 2
    assert "not empty; refusing to overwrite" in capsys.readouterr().err


def test_bad_case_names(tmp_path: Path) -> None:
    name, layer, x = vectors.edge_suite()[0]
    with pytest.raises(ValueError, match="not a C identifier"):
        vectors.write_vectors([("my case", layer, x)], tmp_path / "a")
    with pytest.raises(ValueError, match="two cases"):
        vectors.write_vectors([(name, layer, x), (name, layer, x)], tmp_path / "b")
    assert expected_output(layer, x).shape == layer.output_shape(x.shape)
