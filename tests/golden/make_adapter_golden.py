"""Write tests/golden/{torch,onnx,jax}_golden.npz from the real PyTorch, onnxruntime and JAX.

Run from the repository root: ``.venv/bin/python tests/golden/make_adapter_golden.py``.
Each file stores, per case, ``<case>_x``, ``<case>_w``, optionally ``<case>_b``, and the
framework's output ``<case>_y``; ``cases`` (JSON) lists the cases' names and keyword arguments
(as passed to the framework and to tconv's function of the same signature).
tests/test_{torch,onnx,jax}_golden.py check tconv against them without the frameworks.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).parent
RNG = np.random.default_rng(2026)


def _data(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# (name, x shape, w shape, bias?, kwargs, dtype)
TORCH = [
    (
        "seed_like_p1_op1",
        (1, 4, 4, 4),
        (4, 3, 3, 3),
        True,
        dict(stride=2, padding=1, output_padding=1),
    ),
    ("k4_s2_p1", (2, 2, 3, 3), (2, 3, 4, 4), True, dict(stride=2, padding=1)),
    (
        "groups2_dil2_op1",
        (1, 4, 3, 4),
        (4, 2, 3, 2),
        True,
        dict(stride=1, dilation=2, output_padding=1, groups=2),
    ),
    ("1d_k2_s3_op2", (2, 3, 4), (3, 2, 2), False, dict(stride=3, output_padding=2)),
    ("1d_one_pixel", (1, 2, 1), (2, 2, 3), True, dict(stride=2, padding=1)),
    (
        "3d_mixed",
        (1, 2, 2, 3, 2),
        (2, 2, 3, 2, 2),
        True,
        dict(stride=(2, 1, 3), padding=(1, 0, 1), output_padding=(1, 0, 2)),
    ),
    ("float64_k3_s2", (1, 3, 3, 3), (3, 2, 3, 3), True, dict(stride=2, padding=1), np.float64),
    ("unbatched", (2, 3, 3), (2, 3, 2, 2), True, dict(stride=2)),
]

ONNX = [
    ("pads_asym", (1, 2, 5), (2, 3, 3), True, dict(strides=[2], pads=[2, 0])),
    (
        "pads_negative",
        (1, 2, 4),
        (2, 2, 3),
        False,
        dict(strides=[2], pads=[-1, 1], output_padding=[1]),
    ),
    (
        "same_upper_odd",
        (1, 2, 4, 4),
        (2, 3, 3, 3),
        True,
        dict(strides=[2, 2], auto_pad="SAME_UPPER"),
    ),
    (
        "same_lower_odd",
        (1, 2, 4, 4),
        (2, 3, 3, 3),
        True,
        dict(strides=[2, 2], auto_pad="SAME_LOWER"),
    ),
    (
        "same_upper_k4_op1",
        (1, 2, 5),
        (2, 2, 4),
        False,
        dict(strides=[2], auto_pad="SAME_UPPER", output_padding=[1]),
    ),
    ("same_stride_gt_kernel", (1, 1, 5), (1, 2, 2), True, dict(strides=[3], auto_pad="SAME_UPPER")),
    (
        "valid_op1",
        (1, 2, 3),
        (2, 2, 3),
        True,
        dict(strides=[2], auto_pad="VALID", output_padding=[1]),
    ),
    (
        "output_shape_odd",
        (1, 2, 5, 3),
        (2, 2, 3, 3),
        True,
        dict(strides=[2, 2], output_shape=[10, 6]),
    ),
    (
        "output_shape_upper",
        (1, 2, 5),
        (2, 2, 3),
        True,
        dict(strides=[2], output_shape=[10], auto_pad="SAME_UPPER"),
    ),
    ("output_shape_grow", (1, 2, 5), (2, 2, 3), False, dict(strides=[2], output_shape=[12])),
    (
        "group2_dil2",
        (2, 4, 3, 3),
        (4, 1, 2, 3),
        True,
        dict(group=2, dilations=[2, 1], strides=[1, 2]),
    ),
    (
        "3d_pads",
        (1, 2, 2, 2, 3),
        (2, 2, 2, 3, 2),
        True,
        dict(strides=[2, 1, 2], pads=[1, 0, 0, 0, 1, 1]),
    ),
]

JAX = [
    ("same_s2_k3", (1, 4, 4, 2), (3, 3, 2, 3), False, dict(strides=(2, 2), padding="SAME")),
    ("valid_s3_k2", (2, 3, 2), (2, 2, 3), False, dict(strides=(3,), padding="VALID")),
    (
        "pairs_negative",
        (1, 4, 3, 2),
        (3, 2, 2, 2),
        False,
        dict(strides=(2, 1), padding=((-1, 2), (3, 0))),
    ),
    (
        "transpose_kernel",
        (1, 3, 3, 2),
        (3, 3, 4, 2),
        False,
        dict(strides=(2, 2), padding="SAME", transpose_kernel=True),
    ),
    (
        "nchw_oihw",
        (1, 2, 3, 4),
        (3, 2, 2, 3),
        False,
        dict(strides=(2, 3), padding="VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")),
    ),
    ("lowercase_same_s1", (1, 5, 2), (4, 2, 2), False, dict(strides=(1,), padding="same")),
    (
        "consistent_padding",
        (1, 4, 2),
        (3, 2, 2),
        False,
        dict(strides=(2,), padding=((1, 1),), use_consistent_padding=True),
    ),
    (
        "dilation_same",
        (1, 4, 2),
        (3, 2, 2),
        False,
        dict(strides=(1,), padding="SAME", rhs_dilation=(2,)),
    ),
    ("empty_axis_valid", (1, 0, 2), (3, 2, 2), False, dict(strides=(2,), padding="VALID")),
    ("3d_same", (1, 2, 3, 2, 2), (2, 3, 2, 2, 2), False, dict(strides=(2, 1, 2), padding="SAME")),
]


def _ort(x, w, b, attrs):
    helper, tp = onnx.helper, onnx.TensorProto
    names = ["X", "W"] + ([] if b is None else ["B"])
    feeds = dict(zip(names, [x, w] + ([] if b is None else [b]), strict=True))
    inputs = [helper.make_tensor_value_info(n, tp.FLOAT, None) for n in names]
    node = helper.make_node("ConvTranspose", names, ["Y"], **attrs)
    out = [helper.make_tensor_value_info("Y", tp.FLOAT, None)]
    model = helper.make_model(
        helper.make_graph([node], "g", inputs, out), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _save(name, arrays, cases):
    path = HERE / f"{name}_golden.npz"
    np.savez_compressed(path, cases=json.dumps(cases), **arrays)
    print(f"{path}: {len(cases)} cases, {path.stat().st_size} bytes")


def _torch(x, w, b, kw):
    fn = getattr(torch.nn.functional, f"conv_transpose{w.ndim - 2}d")
    tb = None if b is None else torch.from_numpy(b)
    return fn(torch.from_numpy(x), torch.from_numpy(w), tb, **kw).numpy()


def _jax(x, w, b, kw):
    return np.asarray(jax.lax.conv_transpose(x, w, **kw))


def main() -> int:
    # convention: (cases, runner, name of the groups keyword)
    for convention, (table, run, groups_key) in {
        "torch": (TORCH, _torch, "groups"),
        "onnx": (ONNX, _ort, "group"),
        "jax": (JAX, _jax, "-"),
    }.items():
        arrays, cases = {}, []
        for name, xs, ws, bias, kw, *dtype in table:
            dt = dtype[0] if dtype else np.float32
            x, w = _data(xs, dt), _data(ws, dt)
            b = _data(ws[1] * kw.get(groups_key, 1), dt) if bias else None
            arrays.update({f"{name}_x": x, f"{name}_w": w, f"{name}_y": run(x, w, b, kw)})
            if b is not None:
                arrays[f"{name}_b"] = b
            cases.append({"name": name, "kwargs": kw})
        _save(convention, arrays, cases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
