"""Test vectors: inputs, weights and expected outputs for checking your own implementation.

For each case :func:`write_vectors` writes ``CASE_{input,kernel,bias,expected}`` as ``.npy`` and
as raw little-endian float32 ``.bin``, a ``manifest.json`` (geometry, layouts, shapes, files)
and ``tconv_vectors.h`` with the arrays of the small cases (stb style: define
``TCONV_VECTORS_IMPLEMENTATION`` in one C file before including it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..kernels.emit import c_floats
from ..layer import TransposedConv
from .files import prepare_dir
from .project import expected_output
from .spec import from_layer

Case = tuple[str, TransposedConv, np.ndarray]
"""(name, layer, input with the batch axis in the layer's layout)."""

HEADER_LIMIT = 4096
"""Cases with at most this many values in all their arrays go into the C header."""


def _keras_case(
    name: str, rank: int, shape: Sequence[int], filters: int, seed: int, batch: int = 1, **kw: Any
) -> Case:
    from .. import keras

    kind = {1: keras.Conv1DTranspose, 2: keras.Conv2DTranspose, 3: keras.Conv3DTranspose}[rank]
    layer = kind(filters, **kw)
    layer.build((batch, *shape), seed=seed)
    rng = np.random.default_rng(seed)
    weights = layer.get_weights()
    if layer.use_bias:
        weights[1] = rng.uniform(-0.5, 0.5, filters).astype(np.float32)
    layer.set_weights(weights)
    layer.input_shape = tuple(shape)
    x = rng.uniform(-1, 1, (batch, *shape)).astype(np.float32)
    return name, layer, x


def edge_suite() -> list[Case]:
    """The curated edge cases: Keras layers (and a grouped PyTorch one), seeded."""
    from .. import torch

    cases = [
        _keras_case("stride_gt_kernel_valid", 2, (3, 3, 2), 3, 1, kernel_size=2, strides=3),
        _keras_case(
            "stride_gt_kernel_same", 2, (3, 2, 2), 2, 2, kernel_size=2, strides=3, padding="same"
        ),
        _keras_case(
            "even_kernel_same", 2, (4, 4, 3), 2, 3, kernel_size=4, strides=2, padding="same"
        ),
        _keras_case(
            "output_padding_same",
            2,
            (3, 3, 2),
            2,
            4,
            kernel_size=3,
            strides=2,
            padding="same",
            output_padding=1,
        ),
        _keras_case(
            "output_padding_valid", 1, (4, 2), 3, 5, kernel_size=3, strides=3, output_padding=2
        ),
        _keras_case(
            "dilation_same", 2, (5, 4, 2), 2, 6, kernel_size=3, dilation_rate=2, padding="same"
        ),
        _keras_case("one_pixel", 2, (1, 1, 4), 3, 7, kernel_size=3, strides=2, padding="same"),
        _keras_case("single_channel", 2, (4, 4, 1), 1, 8, kernel_size=3, strides=2, padding="same"),
        _keras_case(
            "batch_3", 2, (3, 3, 2), 2, 9, batch=3, kernel_size=3, strides=2, padding="same"
        ),
        _keras_case(
            "channels_first",
            2,
            (3, 4, 3),
            2,
            10,
            kernel_size=3,
            strides=2,
            padding="same",
            data_format="channels_first",
        ),
        _keras_case("conv1d_k5_s2", 1, (6, 3), 2, 11, kernel_size=5, strides=2, padding="same"),
        _keras_case(
            "conv3d_k3_s2", 3, (2, 3, 2, 2), 2, 12, kernel_size=3, strides=2, padding="same"
        ),
        _keras_case(
            "relu_no_bias",
            2,
            (3, 3, 2),
            3,
            13,
            kernel_size=3,
            strides=2,
            padding="same",
            activation="relu",
            use_bias=False,
        ),
        _keras_case("seed_like_k3", 2, (4, 4, 16), 8, 14, kernel_size=3, strides=2, padding="same"),
    ]
    rng = np.random.default_rng(15)
    weight = rng.uniform(-1, 1, (4, 3, 3, 3)).astype(np.float32)  # (in, out/groups, kh, kw)
    bias = rng.uniform(-0.5, 0.5, 6).astype(np.float32)
    grouped = torch.op(weight, bias, stride=2, padding=1, output_padding=1, groups=2)
    x = rng.uniform(-1, 1, (1, 4, 3, 3)).astype(np.float32)
    cases.append(("torch_groups_2", grouped, x))
    return cases


def _c_array(name: str, values: np.ndarray) -> str:
    flat = c_floats(values) or ["0.0f"]
    rows = [", ".join(flat[i : i + 6]) for i in range(0, len(flat), 6)]
    return f"const float {name}[{len(flat)}] = {{\n    " + ",\n    ".join(rows) + "\n};"


def write_vectors(
    cases: Sequence[Case],
    out_dir: str | Path,
    *,
    force: bool = False,
    header_limit: int = HEADER_LIMIT,
) -> list[Path]:
    """Write the test vectors of ``cases`` into ``out_dir``; return the files written.

    The kernel is written in the layer's framework layout (``kernel_layout`` in the manifest,
    e.g. Keras ``(*kernel_size, filters, in_channels)``), and as ``kernel_canonical`` in the
    Keras layout too when the framework's differs; data are in the layer's ``data_format``,
    batch axis first.
    """
    out = prepare_dir(out_dir, force)
    written: list[Path] = []
    manifest: dict[str, Any] = {
        "format": "tconv-vectors-1",
        "dtype": "float32",
        "byte_order": "little",
        "definition": "per axis: full[i*stride + j*dilation] += x[i]*w[j]; "
        "y[o] = full[o + crop_start] (0 outside full); then + bias, then activation",
        "cases": [],
    }
    declarations: list[str] = []
    definitions: list[str] = []
    seen = set()
    for name, layer, x in cases:
        spec = from_layer(layer, x.shape[1:], name)  # checks the name is a C identifier
        if name in seen:
            raise ValueError(f"two cases are named {name!r}")
        seen.add(name)
        x = np.asarray(x, np.float32)
        arrays = {
            "input": x,
            "kernel": np.asarray(layer.framework_kernel, np.float32),
            "bias": None if layer.bias is None else np.asarray(layer.bias, np.float32),
            "expected": expected_output(layer, x),
        }
        if layer.kernel_layout.name != "keras":  # also in tconv's canonical (= Keras) layout
            arrays["kernel_canonical"] = np.asarray(layer.kernel, np.float32)
        files: dict[str, dict[str, str]] = {}
        for key, data in arrays.items():
            if data is None:
                continue
            for ext in ("npy", "bin"):
                path = out / f"{name}_{key}.{ext}"
                if ext == "npy":
                    np.save(path, data)
                else:
                    path.write_bytes(np.ascontiguousarray(data, dtype="<f4").tobytes())
                written.append(path)
            files[key] = {"npy": f"{name}_{key}.npy", "bin": f"{name}_{key}.bin"}
        g = spec.geometry
        entry: dict[str, Any] = {
            "name": name,
            "framework": layer.framework,
            "data_format": spec.data_format_name,
            "activation": layer.activation,
            "kernel_layout": f"{layer.kernel_layout.name} {layer.kernel_layout.axes}",
            "shapes": {k: None if v is None else list(v.shape) for k, v in arrays.items()},
            "geometry": g.record(),
            "max_terms": spec.max_terms,
            "files": files,
        }
        if hasattr(layer, "get_config"):
            entry["keras_config"] = layer.get_config()
        total = sum(v.size for v in arrays.values() if v is not None)
        entry["in_c_header"] = total <= header_limit
        if entry["in_c_header"]:
            u = name.upper()
            for key, data in arrays.items():
                if data is None:
                    continue
                declarations.append(f"extern const float {name}_{key}[{max(1, data.size)}];")
                declarations.append(f"#define {u}_{key.upper()}_COUNT {data.size}")
                definitions.append(_c_array(f"{name}_{key}", data))
            declarations.append(f"#define {u}_BATCH {x.shape[0]}")
            for a, axis in enumerate(g.axes):
                for field in ("size", "kernel", "stride", "dilation", "crop_start", "crop_end"):
                    declarations.append(f"#define {u}_{field.upper()}{a} {getattr(axis, field)}")
            declarations.append(f"#define {u}_IN_CHANNELS {g.in_channels}")
            declarations.append(f"#define {u}_OUT_CHANNELS {g.out_channels}")
            declarations.append(f"#define {u}_GROUPS {g.groups}")
            declarations.append(f"#define {u}_RANK {g.rank}")
            declarations.append(f"#define {u}_CHANNELS_FIRST {int(spec.channels_first)}")
            declarations.append(f'#define {u}_ACTIVATION "{layer.activation}"')
            declarations.append("")
        manifest["cases"].append(entry)
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    written.append(path)
    header = out / "tconv_vectors.h"
    header.write_text(
        "/* tconv test vectors (see manifest.json): float32 arrays, layouts as in the manifest.\n"
        " * Define TCONV_VECTORS_IMPLEMENTATION in exactly one C file before including this. */\n"
        "#ifndef TCONV_VECTORS_H\n#define TCONV_VECTORS_H\n\n"
        + "\n".join(declarations)
        + "\n#endif\n\n#ifdef TCONV_VECTORS_IMPLEMENTATION\n"
        + "\n".join(definitions)
        + "\n#endif\n"
    )
    written.append(header)
    return written
