"""tconv.torch against torch.nn.functional.conv_transpose*d and torch.nn.ConvTranspose*d."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import assert_close, peer

import tconv.torch as tt

FUNCS = {1: tt.conv_transpose1d, 2: tt.conv_transpose2d, 3: tt.conv_transpose3d}


def _torch_run(torch, x, w, b, **kw):
    F = torch.nn.functional
    fn = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}[w.ndim]
    tb = None if b is None else torch.from_numpy(b)
    return fn(torch.from_numpy(x), torch.from_numpy(w), tb, **kw).numpy()


def _case(rng, rank, n, size, k, cin, cout_g, groups, dtype, bias=True):
    x = rng.standard_normal((n, cin, *(size,) * rank)).astype(dtype)
    w = rng.standard_normal((cin, cout_g, *(k,) * rank)).astype(dtype)
    b = rng.standard_normal(cout_g * groups).astype(dtype) if bias else None
    return x, w, b


def _agree(torch, x, w, b, methods=("fast", "reference"), **kw):
    expected = _torch_run(torch, x, w, b, **kw)
    rank = w.ndim - 2
    terms = w.shape[0] * int(np.prod(w.shape[2:]))
    worst = 0.0
    for method in methods:
        got = FUNCS[rank](x, w, b, method=method, **kw)
        assert got.dtype == x.dtype
        assert_close(got, expected, terms)
        if got.size:
            worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - expected))))
    return worst


GRID = [
    # (rank, size, kernel, stride, padding, output_padding, dilation)
    (r, size, k, s, p, op, d)
    for r in (1, 2, 3)
    for size, k, s in [(1, 3, 2), (4, 2, 3), (4, 3, 3), (3, 4, 2), (5, 1, 1), (2, 3, 1)]
    for p in (0, 1)
    for op in {0, max(s, 1) - 1}
    for d in (1, 2)
    if op < s or op < d
]


@pytest.mark.parametrize("rank,size,k,s,p,op,d", GRID)
def test_grid_against_torch(rank, size, k, s, p, op, d):
    torch = peer("torch")
    rng = np.random.default_rng(rank * 1000 + size * 100 + k * 10 + s)
    for dtype, n, groups in [(np.float32, 3, 1), (np.float64, 1, 2)]:
        x, w, b = _case(rng, rank, n, size, k, 2 * groups, 3, groups, dtype)
        kw = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=groups)
        try:
            expected = _torch_run(torch, x, w, b, **kw)
        except RuntimeError as err:
            with pytest.raises(ValueError):
                FUNCS[rank](x, w, b, **kw)
            assert "Output size is too small" in str(err)
            continue
        assert expected.size
        _agree(torch, x, w, b, **kw)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_batch_zero_unbatched_and_no_bias(rank):
    torch = peer("torch")
    rng = np.random.default_rng(rank)
    x, w, _ = _case(rng, rank, 0, 3, 2, 2, 3, 1, np.float32)
    _agree(torch, x, w, None, stride=2)
    x1, w1, b1 = _case(rng, rank, 1, 3, 3, 2, 3, 1, np.float32)
    _agree(torch, x1[0], w1, b1, stride=2, padding=1, output_padding=1)


def test_per_axis_parameters():
    torch = peer("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 2, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    kw = dict(stride=(3, 1), padding=(0, 2), output_padding=(2, 0), dilation=(1, 2), groups=2)
    _agree(torch, x, w, b, **kw)


def test_seed_layer_shape():
    """The user's layer in torch terms: 8x8x1024 -> 16x16x512, kernel 3, stride 2."""
    conv = tt.op(np.zeros((1024, 512, 3, 3), np.float32), stride=2, padding=1, output_padding=1)
    assert conv.output_shape((1, 1024, 8, 8)) == (1, 512, 16, 16)
    assert conv.framework == "torch" and conv.data_format == "channels_first"


def test_low_precision_inputs():
    torch = peer("torch")
    rng = np.random.default_rng(7)
    x, w, b = _case(rng, 2, 2, 3, 3, 2, 3, 1, np.float32)
    for dtype in (np.float16, "bfloat16"):
        if dtype == "bfloat16":
            ml_dtypes = peer("ml_dtypes")
            dtype = ml_dtypes.bfloat16
        xl, wl, bl = x.astype(dtype), w.astype(dtype), b.astype(dtype)
        got = tt.conv_transpose2d(xl, wl, bl, stride=2, padding=1)
        assert got.dtype == np.dtype(dtype)
        # tconv computes in float32 from the low-precision values and rounds once at the end.
        exp = _torch_run(
            torch,
            xl.astype(np.float32),
            wl.astype(np.float32),
            bl.astype(np.float32),
            stride=2,
            padding=1,
        )
        np.testing.assert_array_equal(got, exp.astype(dtype))


def test_nan_and_inf_propagate():
    torch = peer("torch")
    x = np.ones((1, 1, 3), np.float64)
    x[0, 0, 1] = np.nan
    w = np.ones((1, 1, 2))
    w[0, 0, 1] = np.inf
    exp = _torch_run(torch, x, w, None, stride=2)
    for method in ("fast", "reference"):
        got = tt.conv_transpose1d(x, w, stride=2, method=method)
        np.testing.assert_array_equal(got, exp)


# --- output_size and the module classes ------------------------------------------------------


@pytest.mark.parametrize("output_size", [[5, 5], [6, 6], [5, 6], [1, 3, 6, 5], [7, 7], [4, 5, 6]])
def test_module_output_size(output_size):
    torch = peer("torch")
    m = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    ours = tt.ConvTranspose2d.from_torch(m)
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 3)).astype(np.float32)
    try:
        expected = m(torch.from_numpy(x), output_size=output_size).detach().numpy()
    except ValueError as err:
        with pytest.raises(ValueError) as ours_err:
            ours(x, output_size)
        assert str(err).split(",")[0] == str(ours_err.value).split(",")[0]
        return
    for method in ("fast", "reference"):
        assert_close(ours(x, output_size, method=method), expected, 18)


def test_module_matches_torch_module():
    torch = peer("torch")
    for cls, ours_cls, shape in [
        (torch.nn.ConvTranspose1d, tt.ConvTranspose1d, (2, 4, 5)),
        (torch.nn.ConvTranspose3d, tt.ConvTranspose3d, (1, 4, 2, 3, 2)),
    ]:
        m = cls(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1).double()
        ours = ours_cls.from_torch(m)
        x = np.random.default_rng(2).standard_normal(shape)
        assert_close(ours(x), m(torch.from_numpy(x)).detach().numpy(), 100)
        conv = ours.op()
        assert conv.groups == 2 and conv.kernel_layout.name == "torch"
        np.testing.assert_array_equal(conv.framework_kernel, m.weight.detach().numpy())


def test_module_constructor_errors():
    torch = peer("torch")
    for kwargs in [
        dict(groups=2),  # out_channels 3 not divisible
        dict(padding_mode="reflect"),
    ]:
        with pytest.raises(ValueError) as theirs:
            torch.nn.ConvTranspose2d(2, 3, 3, **kwargs)
        with pytest.raises(ValueError) as ours:
            tt.ConvTranspose2d(2, 3, 3, **kwargs)
        assert str(theirs.value) == str(ours.value)


def test_module_init_and_state():
    m = tt.ConvTranspose2d(4, 6, (3, 2), groups=2)
    assert m.weight.shape == (4, 3, 3, 2) and m.bias is not None
    assert np.abs(m.weight).max() <= 1 / np.sqrt(3 * 6)
    with pytest.raises(ValueError, match="size mismatch for weight"):
        m.load_state_dict({"weight": np.zeros((4, 6, 3, 2)), "bias": np.zeros(6)})
    assert "ConvTranspose2d(4, 6" in repr(m)


# --- rejections: tconv raises exactly where torch raises --------------------------------------

REJECT = [
    # (x shape, w shape, bias len, kwargs)
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(stride=2, output_padding=2)),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(stride=1, output_padding=1, dilation=2)),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(stride=1, output_padding=2, dilation=2)),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(padding=-1)),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(output_padding=-1)),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(stride=0)),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(stride=(1, -1))),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(dilation=0)),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(groups=0)),
    ((1, 3, 3, 3), (3, 2, 2, 2), None, dict(groups=2)),
    ((1, 4, 3, 3), (4, 2, 2, 2), None, dict(groups=2)),
    ((1, 3, 3, 3), (2, 3, 2, 2), None, {}),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(padding=2)),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(padding=1)),
    ((1, 2, 1, 1), (2, 3, 2, 2), None, dict(padding=1)),
    ((1, 2, 1, 1), (2, 3, 1, 1), None, {}),
    ((1, 2, 0, 3), (2, 3, 2, 2), None, {}),
    ((2, 3), (2, 3, 2, 2), None, {}),
    ((1, 2, 3, 3, 3), (2, 3, 2, 2), None, {}),
    ((1, 2, 3, 3), (2, 3, 0, 2), None, {}),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(stride=(1, 2, 3))),
    ((1, 2, 3, 3), (2, 3, 2, 2), 4, {}),
    ((1, 2, 3, 3), (2, 3, 2, 2), 3, dict(stride=(2,))),
    ((1, 2, 3, 3), (2, 3, 2, 2), None, dict(padding="same")),
]


@pytest.mark.parametrize("xs,ws,nb,kw", REJECT)
def test_rejections_match_torch(xs, ws, nb, kw):
    torch = peer("torch")
    x, w = np.ones(xs, np.float32), np.ones(ws, np.float32)
    b = None if nb is None else np.ones(nb, np.float32)
    try:
        expected = _torch_run(torch, x, w, b, **kw)
    except (RuntimeError, TypeError) as err:
        with pytest.raises((ValueError, TypeError)) as ours:
            tt.conv_transpose2d(x, w, b, **kw)
        # The message names the offending parameter or quantity as PyTorch's does.
        key = str(err).split(",")[0].split(" but ")[0].split(":")[0][:25]
        assert key.lower() in str(ours.value).lower(), (str(err), str(ours.value))
        return
    assert_close(tt.conv_transpose2d(x, w, b, **kw), expected, 16)


# --- seeded random sweep ---------------------------------------------------------------------


def test_random_sweep_1000(capsys):
    torch = peer("torch")
    rng = np.random.default_rng(20240601)
    worst = {np.float32: 0.0, np.float64: 0.0}
    checked = rejected = 0
    for case in range(1000):
        rank = int(rng.integers(1, 4))
        groups = int(rng.integers(1, 3))
        k = tuple(int(v) for v in rng.integers(1, 5, rank))
        s = tuple(int(v) for v in rng.integers(1, 4, rank))
        d = tuple(int(v) for v in rng.integers(1, 3, rank))
        p = tuple(int(v) for v in rng.integers(0, 3, rank))
        op = tuple(int(rng.integers(0, max(a, b))) for a, b in zip(s, d, strict=True))
        size = tuple(int(v) for v in rng.integers(1, 5 if rank < 3 else 4, rank))
        n = int(rng.integers(0, 3))
        dtype = np.float32 if case % 2 else np.float64
        x = rng.standard_normal((n, 2 * groups, *size)).astype(dtype)
        w = rng.standard_normal((2 * groups, int(rng.integers(1, 3)), *k)).astype(dtype)
        b = rng.standard_normal(w.shape[1] * groups).astype(dtype) if case % 3 else None
        kw = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=groups)
        try:
            y = _torch_run(torch, x, w, b, **kw)
            if n and 0 in y.shape[2:]:
                # torch's float32 grouped (oneDNN) path skips the size check that its float64
                # and ungrouped paths make; tconv follows the check.
                x, w = x.astype(np.float64), w.astype(np.float64)
                b = None if b is None else b.astype(np.float64)
                _torch_run(torch, x, w, b, **kw)
        except RuntimeError:
            with pytest.raises(ValueError):
                FUNCS[rank](x, w, b, **kw)
            rejected += 1
            continue
        methods = ("fast", "reference") if case % 10 == 0 else ("fast",)
        err = _agree(torch, x, w, b, methods, **kw)
        worst[dtype] = max(worst[dtype], err)
        checked += 1
    with capsys.disabled():
        print(
            f"\ntorch sweep: {checked} geometries agree, {rejected} rejected by both; worst |diff| "
            f"float32 {worst[np.float32]:.3e}, float64 {worst[np.float64]:.3e}"
        )
    assert checked > 600


def test_op_is_canonical_and_itertools_grid_of_kernel_index():
    w = np.arange(4 * 3 * 2 * 2, dtype=np.float64).reshape(4, 3, 2, 2)
    conv = tt.op(w, groups=2)
    assert conv.kernel.shape == (2, 2, 6, 2)
    idx = conv.kernel_layout.index(conv.kernel.shape, 2)
    for pos in itertools.product(*map(range, conv.kernel.shape)):
        assert conv.kernel[pos] == w[tuple(idx[pos])]


def test_mixed_dtypes_refused_like_torch():
    """PyTorch refuses input and weight of different dtypes; tconv used to compute them."""
    torch = peer("torch")
    x, w = np.ones((1, 2, 3, 3)), np.ones((2, 3, 2, 2), np.float32)
    with pytest.raises(RuntimeError, match="expected scalar type"):
        _torch_run(torch, x, w, None)
    with pytest.raises(TypeError, match="input float64 and weight float32"):
        tt.conv_transpose2d(x, w)
    with pytest.raises(TypeError, match="same dtype"):
        tt.ConvTranspose2d(2, 3, 2)(x)
    # PyTorch accepts a bias of another dtype
    b = np.ones(3, np.float64)
    assert_close(
        tt.conv_transpose2d(x.astype(np.float32), w, b),
        _torch_run(torch, x.astype(np.float32), w, b),
        8,
    )


def test_module_argument_types_and_signs():
    """Wrong constructor arguments name the parameter (they used to fail inside NumPy)."""
    with pytest.raises(TypeError, match="argument 'in_channels' must be int, not float"):
        tt.ConvTranspose2d(4.0, 2, 3)
    with pytest.raises(TypeError, match="argument 'groups' must be int, not float"):
        tt.ConvTranspose2d(4, 2, 3, groups=2.0)
    with pytest.raises(ValueError, match=r"negative dimension -4: \[-4, 2, 3, 3\]"):
        tt.ConvTranspose2d(-4, 2, 3)
    with pytest.raises(ValueError, match="negative dimension -1"):
        tt.ConvTranspose2d(4, 2, -1)
    m = tt.ConvTranspose2d(4, 2, 3, stride=2)
    x = np.ones((1, 4, 5, 5), np.float32)
    with pytest.raises(TypeError, match="output_size must be a sequence of ints"):
        m(x, output_size=[11.5, 11])  # used to be truncated to 11
    with pytest.raises(TypeError, match="output_size must be a sequence of ints"):
        m(x, output_size=11)
