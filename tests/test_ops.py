"""The fast path against the reference (the definition), and both against PyTorch."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import assert_close, peer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tconv import ops
from tconv.geometry import Axis, Geometry


@st.composite
def axes(draw: st.DrawFn) -> Axis:
    size = draw(st.integers(0, 5))
    kernel = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 3))
    full = (size - 1) * stride + dilation * (kernel - 1) + 1
    crop_start = draw(st.integers(-2, full + 2))
    crop_end = draw(st.integers(-2, full - crop_start))
    return Axis(size, kernel, stride, dilation, crop_start, crop_end)


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, Geometry, np.ndarray | None, str]:
    rank = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    geometry = Geometry(
        tuple(draw(axes()) for _ in range(rank)),
        groups * draw(st.integers(1, 3)),
        groups * draw(st.integers(1, 3)),
        groups,
    )
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    batch = draw(st.integers(0, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((batch, *geometry.in_shape, geometry.in_channels)).astype(dtype)
    kernel = rng.standard_normal(geometry.kernel_shape).astype(dtype)
    bias = draw(st.sampled_from([None, rng.standard_normal(geometry.out_channels).astype(dtype)]))
    activation = draw(st.sampled_from([None, "relu", "tanh"]))
    return x, kernel, geometry, bias, activation


def _terms(geometry: Geometry) -> int:
    return geometry.in_per_group * int(np.prod([a.kernel for a in geometry.axes])) + 1


@pytest.mark.parametrize(
    ("wide_macs", "split", "chunk"),
    [
        (0, None, 1 << 40),
        (0, None, 1),
        (10**12, None, 1 << 40),
        (0, "channels", 1 << 40),
        (0, "batch", 1),
        (0, "rows", 1 << 40),
        (0, "rows", 1),
    ],
    ids=[
        "per-tap",
        "per-tap-row-chunks",
        "wide",
        "channels",
        "batch-row-chunks",
        "rows",
        "rows-row-chunks",
    ],
)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_fast_matches_reference(wide_macs: int, split: str | None, chunk: int, problem) -> None:  # noqa: ANN001
    """Every strategy: one wide GEMM, or per-tap GEMMs (on all input rows at once or one input
    row at a time) alone or shared out among threads by output channels, batch items or output
    rows."""
    x, kernel, geometry, bias, activation = problem
    expected = ops.reference(x, kernel, geometry, bias, activation)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ops, "_WIDE_GEMM_MACS", wide_macs)
        patch.setattr(ops, "_MIN_CHANNELS_PER_THREAD", 1)
        patch.setattr(ops, "_PARALLEL_MACS", 0)
        patch.setattr(ops, "_CHUNK", chunk)
        patch.setattr(ops, "_jobs", ops._jobs if split else lambda *args: [])
        patch.setattr(ops, "_split_kind", lambda *args: split)
        actual = ops.fast(x, kernel, geometry, bias, activation)
    assert actual.dtype == x.dtype
    if x.dtype == np.float16:  # both round float32 sums to float16: one float16 ulp apart
        diff = np.abs(actual.astype(np.float32) - expected.astype(np.float32))
        scale = max(1.0, float(np.max(np.abs(expected), initial=0)))
        assert float(np.max(diff, initial=0)) <= float(np.finfo(np.float16).eps) * scale
    else:
        assert_close(actual, expected, _terms(geometry))


@pytest.mark.parametrize(
    ("batch", "cout", "kind"), [(2, 64, "batch"), (1, 64, "rows"), (1, 512, "channels")]
)
def test_fast_shares_work_among_threads_and_restores_blas(batch, cout, kind, monkeypatch):  # noqa: ANN001
    peer("threadpoolctl")
    libraries = ops._blas_libraries()
    if max(lib.num_threads for lib in libraries) < 2:
        pytest.skip("BLAS runs on one thread here: nothing to share")
    before = [lib.num_threads for lib in libraries]
    calls: list[tuple[tuple[int, ...], slice]] = []
    accumulate = ops._accumulate

    def spy(*args):  # noqa: ANN002, ANN202
        calls.append((args[0].shape, args[5]))
        return accumulate(*args)

    monkeypatch.setattr(ops, "_accumulate", spy)
    geometry = Geometry((Axis(40, 3, 2, 1, 1, 0), Axis(30, 2, 1, 2, 0, 1)), 64, cout)
    assert ops._split_kind(batch, geometry, 2) == kind
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, 40, 30, 64)).astype(np.float32)
    kernel = rng.standard_normal(geometry.kernel_shape).astype(np.float32)
    assert_close(ops.fast(x, kernel, geometry), ops.reference(x, kernel, geometry), 64 * 6 + 1)
    assert len(calls) == 2
    out = (batch, *geometry.out_shape, cout)
    if kind == "channels":
        parts = sorted((c.start, c.stop) for _, c in calls)  # the threads finish in any order
        assert parts == [(0, cout // 2), (cout // 2, cout)]
    else:
        axis = 0 if kind == "batch" else 1
        assert sum(shape[axis] for shape, _ in calls) == out[axis]
    assert [lib.num_threads for lib in libraries] == before


@pytest.mark.parametrize("method", ops.METHODS)
def test_run_dispatches(method: str) -> None:
    geometry = Geometry((Axis(3, 3, 2, 1, 1, 0),), 2, 3)
    x = np.arange(6.0).reshape(1, 3, 2)
    kernel = np.linspace(-1, 1, 18).reshape(geometry.kernel_shape)
    assert_close(ops.run(x, kernel, geometry, method=method), ops.reference(x, kernel, geometry))


def test_run_rejects_unknown_method() -> None:
    geometry = Geometry((Axis(3, 3),), 1, 1)
    with pytest.raises(ValueError, match="method must be one of"):
        ops.run(np.zeros((1, 3, 1)), np.zeros((3, 1, 1)), geometry, method="magic")


@pytest.mark.parametrize(
    ("x_shape", "k_shape", "b_shape", "message"),
    [
        ((1, 4, 2), (3, 3, 2), None, "input shape"),
        ((1, 3, 3), (3, 3, 2), None, "input shape"),
        ((1, 3, 2), (2, 3, 2), None, "kernel shape"),
        ((1, 3, 2), (3, 3, 2), (2,), "bias shape"),
    ],
)
def test_fast_rejects_mismatched_shapes(x_shape, k_shape, b_shape, message) -> None:  # noqa: ANN001
    geometry = Geometry((Axis(3, 3, 2),), 2, 3)
    bias = None if b_shape is None else np.zeros(b_shape)
    with pytest.raises(ValueError, match=message):
        ops.fast(np.zeros(x_shape), np.zeros(k_shape), geometry, bias)


def test_fast_rejects_integer_data() -> None:
    geometry = Geometry((Axis(3, 3),), 1, 1)
    with pytest.raises(TypeError, match="floating-point"):
        ops.fast(np.zeros((1, 3, 1), np.int32), np.zeros((3, 1, 1), np.int32), geometry)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "channels", "batch"),
    [((8, 8), 3, 2, (256, 128), 1), ((16, 16), 4, 2, (32, 16), 4), ((300,), 16, 8, (16, 8), 1)],
)
def test_fast_extra_memory_stays_below_output_plus_one_gemm(size, kernel, stride, channels, batch):  # noqa: ANN001
    """Peak allocation beyond x, kernel and the output < output + the same-FLOP GEMM result."""
    cin, cout = channels
    geometry = Geometry(
        tuple(Axis(n, kernel, stride, 1, (kernel - stride) // 2, 0) for n in size), cin, cout
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *size, cin), dtype=np.float32)
    weights = rng.standard_normal(geometry.kernel_shape, dtype=np.float32)
    output_bytes = 4 * batch * int(np.prod(geometry.out_shape)) * cout
    gemm_bytes = 4 * x.size // cin * kernel ** len(size) * cout
    tracemalloc.start()
    try:
        ops.fast(x, weights, geometry)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - output_bytes < output_bytes + gemm_bytes


def test_fast_and_reference_match_torch() -> None:
    """PyTorch's conv_transpose with padding p and output_padding a crops (p, p - a)."""
    torch = peer("torch")
    rng = np.random.default_rng(5)
    cases = [
        # (spatial, kernel, stride, dilation, padding, output_padding, groups, cin, cout)
        ((5,), (3,), (2,), (1,), (1,), (1,), 1, 3, 4),
        ((4, 3), (3, 2), (2, 3), (2, 1), (0, 1), (1, 2), 2, 4, 6),
        ((3, 2, 3), (2, 3, 2), (1, 2, 2), (1, 1, 2), (1, 0, 1), (0, 1, 0), 1, 2, 3),
    ]
    for spatial, k, s, d, p, a, g, cin, cout in cases:
        axes = tuple(
            Axis(n, kk, ss, dd, pp, pp - aa)
            for n, kk, ss, dd, pp, aa in zip(spatial, k, s, d, p, a, strict=True)
        )
        geometry = Geometry(axes, cin, cout, g)
        x = rng.standard_normal((2, cin, *spatial))
        w = rng.standard_normal((cin, cout // g, *k))
        bias = rng.standard_normal(cout)
        conv = getattr(torch.nn.functional, f"conv_transpose{len(spatial)}d")
        expected = conv(
            torch.from_numpy(x),
            torch.from_numpy(w),
            torch.from_numpy(bias),
            stride=s,
            padding=p,
            output_padding=a,
            groups=g,
            dilation=d,
        ).numpy()
        # canonical layouts: x (N, *spatial, C), kernel (*k, C_out, C_in // G)
        xc = np.moveaxis(x, 1, -1)
        wc = w.reshape(g, cin // g, cout // g, *k)
        wc = np.moveaxis(wc, (0, 1, 2), (-3, -1, -2)).reshape(*k, cout, cin // g)
        for method in ops.METHODS:
            actual = np.moveaxis(ops.run(xc, wc, geometry, bias, method=method), -1, 1)
            assert_close(actual, expected, _terms(geometry))


@pytest.mark.parametrize("method", ["reference", "fast", "auto"])
def test_an_output_larger_than_memory_is_a_clear_error_not_an_allocation(method: str) -> None:
    """A stride of 10**9 (e.g. from a damaged ONNX attribute) asks for terabytes: refused before
    anything is allocated, with the output shape and the geometry in the message."""
    g = Geometry((Axis(5, 3, 10**9, 1, 0, 0), Axis(5, 3, 2, 1, 0, 0)), 2, 3)
    x = np.zeros((1, 5, 5, 2), np.float32)
    k = np.zeros(g.kernel_shape, np.float32)
    with pytest.raises(MemoryError, match=r"the output \(1, 4000000003, 11, 3\) needs .* GiB"):
        ops.run(x, k, g, method=method)
