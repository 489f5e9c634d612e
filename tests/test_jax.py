"""tconv.jax against jax.lax.conv_transpose (eager and jitted in batches, CPU, x64 enabled)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import assert_close, peer

import tconv.jax as tj


def _jax():
    jax = peer("jax")
    return jax, jax.lax


def _lax(x, w, strides, padding, **kw):
    jax, lax = _jax()
    with jax.enable_x64(True):
        return np.asarray(lax.conv_transpose(x, w, strides, padding, **kw))


def _terms(w):
    return int(np.prod(w.shape))


def _agree(x, w, strides, padding, methods=("fast", "reference"), **kw):
    expected = _lax(x, w, strides, padding, **kw)
    worst = 0.0
    for method in methods:
        got = tj.conv_transpose(x, w, strides, padding, method=method, **kw)
        assert got.dtype == x.dtype
        assert_close(got, expected, _terms(w))
        if got.size:
            worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - expected))))
    return worst


PADDINGS = ["SAME", "VALID", "same", "SAME_LOWER", ((1, 2),), ((0, 0),), ((-1, 3),)]
GRID = [
    (rank, size, k, s, padding, d, tk)
    for rank in (1, 2, 3)
    for size, k, s in [(1, 3, 2), (4, 2, 3), (3, 3, 3), (3, 4, 2), (2, 1, 1), (0, 3, 2)]
    for padding in PADDINGS
    for d in (1, 2)
    for tk in (False, True)
    if rank == 1 or (d == 1 and tk == (size == 3))
]


@pytest.mark.parametrize("rank,size,k,s,padding,d,tk", GRID)
def test_grid_against_lax(rank, size, k, s, padding, d, tk):
    rng = np.random.default_rng(size * 100 + k * 10 + s + rank)
    pad = padding if isinstance(padding, str) else padding * rank
    for dtype, n in [(np.float32, 3), (np.float64, 1)]:
        x = rng.standard_normal((n, *(size,) * rank, 2)).astype(dtype)
        w = rng.standard_normal((*(k,) * rank, 2, 3)[: rank + 2]).astype(dtype)
        if tk:
            w = rng.standard_normal((*(k,) * rank, 3, 2)).astype(dtype)
        kw = dict(rhs_dilation=(d,) * rank, transpose_kernel=tk)
        try:
            _lax(x, w, (s,) * rank, pad, **kw)
        except ValueError:
            with pytest.raises(ValueError):
                tj.conv_transpose(x, w, (s,) * rank, pad, **kw)
            continue
        _agree(x, w, (s,) * rank, pad, **kw)


@pytest.mark.parametrize(
    "dn",
    [
        ("NCHW", "OIHW", "NCHW"),
        ("NHWC", "IOHW", "NCHW"),
        ("NWHC", "HWIO", "NCWH"),
        ("CHWN", "WHOI", "NHWC"),
    ],
)
@pytest.mark.parametrize("tk", [False, True])
def test_dimension_numbers(dn, tk):
    rng = np.random.default_rng(9)
    lhs_spec, rhs_spec, _ = dn
    sizes = {"N": 2, "C": 3, "H": 3, "W": 4}
    ksizes = {"O": 2 if not tk else 3, "I": 3 if not tk else 2, "H": 2, "W": 3}
    x = rng.standard_normal([sizes[c] for c in lhs_spec])
    w = rng.standard_normal([ksizes[c] for c in rhs_spec])
    for padding in ("SAME", "VALID", ((1, 0), (2, 1))):
        _agree(x, w, (2, 3), padding, dimension_numbers=dn, transpose_kernel=tk)


def test_use_consistent_padding():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 5, 4, 3))
    w = rng.standard_normal((3, 2, 3, 2))
    for padding in (((1, 1), (0, 1)), "SAME", "VALID"):
        _agree(x, w, (2, 2), padding, use_consistent_padding=True)
    with pytest.raises(ValueError, match="Invalid padding mode"):
        tj.conv_transpose(x, w, (2, 2), "same", use_consistent_padding=True)


def test_keras_kernel_with_transpose_kernel_is_canonical():
    """Keras' kernel (kh, kw, filters, in) with transpose_kernel=True: the op is Keras' own."""
    w = np.random.default_rng(1).standard_normal((3, 3, 4, 2))
    conv = tj.op(w, (2, 2), "SAME", transpose_kernel=True)
    np.testing.assert_array_equal(conv.kernel, w)
    assert conv.output_shape((1, 8, 8, 2)) == (1, 16, 16, 4)
    plain = tj.op(w, (2, 2), "SAME")
    np.testing.assert_array_equal(plain.kernel, w[::-1, ::-1].swapaxes(-1, -2))
    with pytest.raises(ValueError, match="conv_transpose\\(\\) takes any"):
        tj.op(w, (2, 2), "SAME", dimension_numbers=("NWHC", "HWIO", "NHWC"))


def test_low_precision_and_dtype_rules():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 4, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3)).astype(np.float32)
    got = tj.conv_transpose(x.astype(np.float16), w.astype(np.float16), (2,), "SAME")
    assert got.dtype == np.float16
    exp = _lax(
        x.astype(np.float16).astype(np.float32),
        w.astype(np.float16).astype(np.float32),
        (2,),
        "SAME",
    )
    np.testing.assert_array_equal(got, exp.astype(np.float16))
    with pytest.raises(TypeError, match="same dtypes"):
        tj.conv_transpose(x.astype(np.float64), w, (2,), "SAME")


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_preferred_element_type_and_precision_as_lax(low):
    """preferred_element_type widens the result as in JAX; every precision JAX accepts leaves
    the CPU result alone, what JAX refuses is refused."""
    jax, lax = _jax()
    import ml_dtypes

    dtype = np.dtype(ml_dtypes.bfloat16) if low == "bfloat16" else np.dtype(low)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4, 3)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 2)).astype(dtype)
    dn = ("NHWC", "HWIO", "NHWC")
    expected = np.asarray(
        lax.conv_transpose(
            x, w, (2, 1), "SAME", dimension_numbers=dn, preferred_element_type=np.float32
        )
    )
    assert expected.dtype == np.float32
    for method in ("fast", "reference"):
        got = tj.conv_transpose(
            x, w, (2, 1), "SAME", None, dn, preferred_element_type=np.float32, method=method
        )
        assert got.dtype == np.float32
        assert_close(got, expected, _terms(w))
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    plain = tj.conv_transpose(x32, w32, (2, 1), "SAME", dimension_numbers=dn)
    for precision in [None, "highest", "fastest", "bfloat16", lax.Precision.HIGH]:
        kw = dict(dimension_numbers=dn, precision=precision)
        np.testing.assert_array_equal(tj.conv_transpose(x32, w32, (2, 1), "SAME", **kw), plain)
        assert_close(plain, np.asarray(lax.conv_transpose(x32, w32, (2, 1), "SAME", **kw)), 54)
    pair = (lax.Precision.HIGHEST, "default")
    tj.conv_transpose(x32, w32, (2, 1), "SAME", dimension_numbers=dn, precision=pair)
    for precision in ["HIGHEST", "bogus", 3, ("highest",)]:
        with pytest.raises(ValueError):
            lax.conv_transpose(x32, w32, (2, 1), "SAME", dimension_numbers=dn, precision=precision)
        with pytest.raises(ValueError, match=re.escape(f"precision={precision!r} is not a")):
            tj.conv_transpose(x32, w32, (2, 1), "SAME", dimension_numbers=dn, precision=precision)
    for preferred, message in [(np.float16, "must not be narrower"), (np.int32, "incompatible")]:
        with pytest.raises(TypeError):
            lax.conv_transpose(x32, w32, (2, 1), "SAME", preferred_element_type=preferred)
        with pytest.raises(TypeError, match=message):
            tj.conv_transpose(x32, w32, (2, 1), "SAME", preferred_element_type=preferred)


REJECT = [
    dict(strides=(0,)),
    dict(strides=(-1,)),
    dict(rhs_dilation=(0,)),
    dict(w=(0, 2, 3)),
    dict(x=(1, 5, 3)),
    dict(padding=((1, 1), (1, 1))),
    dict(padding=((-5, -5),)),
    dict(padding=((-3, -4),)),
    dict(padding="FOO"),
    dict(dimension_numbers=("NHC", "HIO")),
    dict(dimension_numbers=("NHC", "HIO", "NHW")),
    dict(x=(1, 0, 2), padding=((-1, 0),)),
    # non-integers: JAX refuses them, tconv used to truncate them silently
    dict(strides=(2.5,)),
    dict(rhs_dilation=(1.5,)),
    dict(padding=((1.5, 1),)),
    dict(padding=5),
    dict(padding=None),
    dict(padding=((1, 1, 1),)),
]


@pytest.mark.parametrize("case", REJECT)
def test_rejections_match_lax(case):
    jax, _ = _jax()
    case = dict(case)
    x = np.ones(case.pop("x", (1, 5, 2)), np.float32)
    w = np.ones(case.pop("w", (3, 2, 3)), np.float32)
    strides = case.pop("strides", (1,))
    padding = case.pop("padding", "VALID")
    try:
        expected = _lax(x, w, strides, padding, **case)
    except Exception:  # noqa: BLE001 - jax raises TypeError, ValueError or RuntimeError here
        with pytest.raises((ValueError, TypeError)):
            tj.conv_transpose(x, w, strides, padding, **case)
        return
    assert_close(tj.conv_transpose(x, w, strides, padding, **case), expected, 6)


def test_empty_axis_shapes_match_lax():
    """JAX returns zero rows, not an error, for an empty or over-cropped axis."""
    for xs, padding, strides in [
        ((1, 0, 2), "VALID", (2,)),
        ((1, 0, 2), "SAME", (3,)),
        ((1, 0, 2), ((0, 0),), (1,)),
        ((1, 5, 2), ((-3, -2),), (1,)),
        ((0, 4, 2), "SAME", (2,)),
    ]:
        x = np.ones(xs, np.float64)
        w = np.ones((3, 2, 3))
        assert_close(tj.conv_transpose(x, w, strides, padding), _lax(x, w, strides, padding))


def test_random_sweep_1000(capsys):
    """1000 random geometries, jitted 50 at a time so that XLA compiles once per batch."""
    jax, lax = _jax()
    rng = np.random.default_rng(4242)
    cases = []
    for case in range(1000):
        rank = int(rng.integers(1, 4))
        k = tuple(int(v) for v in rng.integers(1, 5, rank))
        s = tuple(int(v) for v in rng.integers(1, 4, rank))
        d = tuple(int(v) for v in rng.integers(1, 3, rank))
        size = tuple(int(v) for v in rng.integers(1, 5 if rank < 3 else 4, rank))
        mode = case % 4
        if mode == 0:
            padding: object = "SAME"
        elif mode == 1:
            padding = "VALID"
        else:
            pairs = [tuple(int(v) for v in rng.integers(-1, 4, 2)) for _ in range(rank)]
            # keep the padded input non-negative so that no case of a jitted batch raises
            padding = tuple((lo, hi if lo + hi >= -1 else 0) for lo, hi in pairs)
        tk = bool(case % 3 == 0)
        dtype = np.float32 if case % 2 else np.float64
        cin, cout = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        x = rng.standard_normal((int(rng.integers(0, 3)), *size, cin)).astype(dtype)
        w = rng.standard_normal((*k, cout, cin) if tk else (*k, cin, cout)).astype(dtype)
        cases.append((x, w, s, padding, d, tk))
    worst = {np.float32: 0.0, np.float64: 0.0}
    with jax.enable_x64(True):
        for start in range(0, len(cases), 50):
            batch = cases[start : start + 50]
            static = [(c[2], c[3], c[4], c[5]) for c in batch]

            def run(xs, ws, static=static):
                return [
                    lax.conv_transpose(x, w, s, p, rhs_dilation=d, transpose_kernel=tk)
                    for x, w, (s, p, d, tk) in zip(xs, ws, static, strict=True)
                ]

            outs = jax.jit(run)([c[0] for c in batch], [c[1] for c in batch])
            for i, ((x, w, s, p, d, tk), y) in enumerate(zip(batch, outs, strict=True)):
                methods = ("fast", "reference") if (start + i) % 10 == 0 else ("fast",)
                expected = np.asarray(y)
                for method in methods:
                    got = tj.conv_transpose(
                        x, w, s, p, rhs_dilation=d, transpose_kernel=tk, method=method
                    )
                    assert_close(got, expected, _terms(w))
                    if got.size:
                        err = float(np.max(np.abs(got.astype(np.float64) - expected)))
                        worst[x.dtype.type] = max(worst[x.dtype.type], err)
    with capsys.disabled():
        print(
            f"\njax sweep: 1000 geometries agree with lax.conv_transpose; worst |diff| float32 "
            f"{worst[np.float32]:.3e}, float64 {worst[np.float64]:.3e}"
        )


@pytest.mark.parametrize("rhs_spec", ["HWIO", "OIHW", "WHOI"])
@pytest.mark.parametrize("tk", [False, True])
def test_kernel_layout_index_follows_every_element(rhs_spec, tk):
    """KernelLayout.index (used by explanations and C export) names the JAX kernel element that
    each canonical weight comes from, flips included."""
    sizes = {"H": 2, "W": 3, "I": 4, "O": 5}
    rhs = np.arange(120, dtype=np.float64).reshape([sizes[c] for c in rhs_spec])
    layout = tj.kernel_layout(rhs_spec, tk)
    canonical = layout.to_canonical(rhs, 1)
    np.testing.assert_array_equal(layout.from_canonical(canonical, 1), rhs)
    index = layout.index(canonical.shape, 1)
    for pos in np.ndindex(*canonical.shape):
        assert canonical[pos] == rhs[tuple(index[pos])]


@pytest.mark.parametrize("padding", [5, None, ((1, 1, 1),), ((1.5, 1),)])
def test_bad_padding_is_named(padding):
    """Used to be a bare "'int' object is not iterable" (or a silent truncation of 1.5)."""
    with pytest.raises(ValueError, match="padding argument to conv_general_dilated"):
        tj.conv_transpose(
            np.ones((1, 5, 2), np.float32), np.ones((3, 2, 3), np.float32), (1,), padding
        )
