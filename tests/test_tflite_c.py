"""Integer-only C of quantized TRANSPOSE_CONV layers (``tconv.export_c`` on a
``QuantizedTransposeConv``), against TensorFlow's TFLite reference kernel.

Layers come from converter-written ``.tflite`` files (int8 and 16x8, a grid of geometries and
activations, per-tensor and per-channel).  The test vectors are the worst cases (all minimum,
all maximum, alternating) plus random items; the reference interpreter's output for them is
checked equal to the vectors' expected output, then every export's harness checks its C
element for element, compiled with gcc and clang under -Wall -Wextra -Wpedantic -Werror and
AddressSanitizer + UndefinedBehaviorSanitizer.  The seed layer (Keras Conv2DTranspose(512, 3,
strides=2, padding="same") on 8x8x1024) quantized to int8 is checked optimised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_export_c import SANITIZE, STRICT, build_driver, run_driver, tool
from tflite_models import Spec, convert, keras_model, run_op_on

import tconv
from tconv import quant
from tconv.cexport.quantized import worst_case_inputs
from tconv.kernels import qemit
from tconv.tflite import geometry, load_layers

CASES = [
    ("int8", Spec(4, 5, 3, 4, (3, 3), (2, 2), "same", True, "relu"), True),
    ("int8", Spec(3, 4, 5, 6, (5, 2), (2, 3), "valid", False, None), True),
    ("int8", Spec(4, 3, 2, 3, (1, 4), (3, 1), "same", True, "relu6"), False),
    ("int8", Spec(3, 3, 4, 5, (4, 4), (4, 4), "valid", True, None, (1, 2)), True),
    ("int8", Spec(5, 5, 3, 2, (2, 2), (1, 1), "same", True, None), False),
    ("16x8", Spec(4, 5, 3, 4, (3, 3), (2, 2), "same", True, "relu"), True),
    ("16x8", Spec(3, 4, 5, 6, (5, 2), (2, 3), "valid", True, "relu6"), False),
    ("16x8", Spec(4, 3, 2, 3, (2, 5), (3, 2), "same", False, None), True),
    # Wide rows: blocks of qemit.PIXELS pixels of one phase, inside and at the edges.
    ("int8", Spec(2, 13, 4, 3, (3, 3), (1, 1), "same", True, "relu"), True),
    ("int8", Spec(2, 21, 3, 2, (3, 4), (2, 2), "valid", True, None), True),
    ("16x8", Spec(2, 11, 3, 3, (2, 3), (1, 2), "same", True, None), True),
]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("qc")
    rng = np.random.default_rng(31)
    found = []
    for k, (kind, spec, per_channel) in enumerate(CASES):
        path = root / f"m{k}.tflite"
        convert(keras_model([spec], rng), rng, kind, path, per_channel)
        (layer,) = load_layers(path).values()
        assert isinstance(layer, quant.QuantizedTransposeConv)
        x = worst_case_inputs(layer, 3, seed=k)
        assert np.array_equal(layer(x), run_op_on(path, x))  # the vectors are TFLite's
        name = f"q{k}"
        tconv.export_c(layer, root / name, name=name, batch=3, seed=k)
        found.append((root / name, name))
    return found


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_integer_c_bit_exact_under_sanitizers(
    cc: str, exports: list[tuple[Path, str]], tmp_path: Path
) -> None:
    tool(cc)
    exe = build_driver(exports, tmp_path, cc, [*STRICT, *SANITIZE])
    run_driver(exe, exports)


def test_cases_reach_the_pixel_blocks() -> None:
    wide = [s for _, s, _ in CASES if s.w >= qemit.PIXELS]  # about w outputs per phase
    assert len(wide) >= 3


def test_exported_files_and_integer_only(exports: list[tuple[Path, str]]) -> None:
    folder, name = exports[0]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            f"{name}.h",
            f"{name}.c",
            f"{name}_weights.c",
            f"test_{name}.c",
            "Makefile",
            "CMakeLists.txt",
            "README.md",
            f"{name}_input.bin",
            f"{name}_expected.bin",
        ]
    )
    header = (folder / f"{name}.h").read_text()
    assert f"int {name}(const int8_t *input, int8_t *output, int batch);" in header
    folder16, name16 = exports[5]  # the first 16x8 case
    assert (
        f"int {name16}(const int16_t *input, int16_t *output, int batch);"
        in (folder16 / f"{name16}.h").read_text()
    )
    for f, n in exports:
        library = (f / f"{n}.c").read_text() + (f / f"{n}_weights.c").read_text()
        assert "float" not in library and "double" not in library and "malloc" not in library


def test_seed_layer_quantized(tmp_path: Path) -> None:
    tool("gcc")
    rng = np.random.default_rng(0)
    spec = Spec(8, 8, 1024, 512, (3, 3), (2, 2), "same", True, None)
    path = tmp_path / "seed.tflite"
    convert(keras_model([spec], rng), rng, "int8", path)
    (layer,) = load_layers(path).values()
    assert isinstance(layer, quant.QuantizedTransposeConv)
    x = worst_case_inputs(layer, 1, seed=0)
    assert np.array_equal(layer(x), run_op_on(path, x))
    tconv.export_c(layer, tmp_path / "seed", name="seed_q", test_input=x)
    exports = [(tmp_path / "seed", "seed_q")]
    exe = build_driver(exports, tmp_path, "gcc", [*STRICT, "-O2"])
    run_driver(exe, exports)


def test_export_errors(tmp_path: Path) -> None:
    w = np.full((1, 1, 1, 70000), 127, np.int8)  # 255 * 127 * 70000 > 2**31: int32 overflows
    layer = quant.QuantizedTransposeConv(
        w,
        None,
        geometry((1, 1), (1, 1), (1, 1), (1, 1), "SAME", 70000, 1),
        input_scale=0.1,
        input_zero_point=-128,
        filter_scale=[0.01],
        output_scale=1.0,
        output_zero_point=0,
    )
    with pytest.raises(ValueError, match="beyond int32"):
        tconv.export_c(layer, tmp_path / "big")
    small = quant.QuantizedTransposeConv(
        w[..., :3],
        None,
        geometry((1, 1), (1, 1), (1, 1), (1, 1), "SAME", 3, 1),
        input_scale=0.1,
        input_zero_point=0,
        filter_scale=[0.01],
        output_scale=1.0,
        output_zero_point=0,
    )
    with pytest.raises(ValueError, match="one C style"):
        tconv.export_c(small, tmp_path / "a", style="reference")
    with pytest.raises(ValueError, match="inline"):
        tconv.export_c(small, tmp_path / "b", weights="file")
    with pytest.raises(ValueError, match="fixed input"):
        tconv.export_c(small, tmp_path / "e", input_shape=(2, 2, 3))
    with pytest.raises(ValueError, match="name"):
        tconv.export_c(small, tmp_path / "c", name="1bad")
    with pytest.raises(TypeError, match="int8"):
        tconv.export_c(small, tmp_path / "d", test_input=np.zeros((1, 1, 1, 3), np.int16))
