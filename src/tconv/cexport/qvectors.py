"""``tconv vectors`` for a quantized layer: integer test vectors and their manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..kernels.spec import check_name
from ..quant import QuantizedTransposeConv
from .files import prepare_dir
from .quantized import quantized_input, worst_case_inputs


def write_vectors(
    name: str,
    layer: QuantizedTransposeConv,
    x: Any,
    out_dir: str | Path,
    *,
    force: bool = False,
) -> list[Path]:
    """Integer test vectors of a quantized layer: ``NAME_{input,filter,bias,multiplier,shift,
    expected}`` as ``.npy`` and raw little-endian ``.bin`` (int8 / int16 data, int8 filter in
    TFLite's ``(F, kh, kw, C)``, int32 / int64 bias, int32 multiplier and shift), and
    ``manifest.json`` with shapes, quantization, geometry and the definition.

    The input is the three worst cases (all minimum, all maximum, alternating) followed by
    ``x`` (quantized by the layer's input quantization when it is float).
    """
    check_name(name)
    xq = np.concatenate([worst_case_inputs(layer, 0, 0), quantized_input(layer, x)])
    out = prepare_dir(out_dir, force)
    data_type = "<i2" if layer.sixteen else "i1"
    arrays: dict[str, tuple[np.ndarray, str]] = {
        "input": (xq, data_type),
        "filter": (layer.filter, "i1"),
        "multiplier": (layer.multiplier, "<i4"),
        "shift": (layer.shift, "<i4"),
        "expected": (layer(xq), data_type),
    }
    if layer.bias is not None:
        arrays["bias"] = (layer.bias, "<i8" if layer.sixteen else "<i4")
    written: list[Path] = []
    files = {}
    for key, (data, dtype) in arrays.items():
        typed = np.ascontiguousarray(data, dtype=dtype)
        np.save(out / f"{name}_{key}.npy", typed)
        (out / f"{name}_{key}.bin").write_bytes(typed.tobytes())
        written += [out / f"{name}_{key}.npy", out / f"{name}_{key}.bin"]
        files[key] = {"npy": f"{name}_{key}.npy", "bin": f"{name}_{key}.bin", "dtype": dtype}
    g = layer.geometry
    manifest = {
        "format": "tconv-quantized-vectors-1",
        "byte_order": "little",
        "definition": "acc = bias[f] + sum over taps (i*stride + j - crop_start == o) and c of "
        "(x - zp_in) * filter[f, j, c] (int32; int64 for 16x8); y = clamp("
        "MultiplyByQuantizedMultiplier(acc, multiplier[f], shift[f]) + zp_out, act_min, act_max)",
        "cases": [
            {
                "name": name,
                "op": layer.name,
                "kind": "16x8" if layer.sixteen else "int8",
                "shapes": {k: list(v.shape) for k, (v, _) in arrays.items()},
                "input_scale": layer.input_scale,
                "input_zero_point": layer.input_zero_point,
                "filter_scale": layer.filter_scale.tolist(),
                "output_scale": layer.output_scale,
                "output_zero_point": layer.output_zero_point,
                "activation": layer.activation,
                "act_min": layer.act_min,
                "act_max": layer.act_max,
                "geometry": g.record(),
                "worst_case_items": 3,
                "files": files,
            }
        ],
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    written.append(path)
    return written
