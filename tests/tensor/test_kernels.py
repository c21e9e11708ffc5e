"""The Numba kernel pairs against their plain-NumPy references and against finite differences."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagrad.tensor import get_num_threads, set_num_threads
from alphagrad.tensor import kernels as K
from alphagrad.tensor.kernels import (
    adamw,
    cross_entropy,
    decode_attention,
    embedding,
    gelu,
    layernorm,
    linear,
    rmsnorm,
    rope,
    softmax,
    swiglu,
)
from alphagrad.tensor.kernels import reference as R
from alphagrad.tensor.kernels._exp import fast_exp

DTYPES = [np.float32, np.float64]
ROW_SHAPES = [(1, 1), (1, 7), (5, 1), (3, 65), (2, 3, 5), (4, 2, 33)]


@pytest.fixture(params=["serial", "parallel-1thread", "parallel-allthreads"])
def threads(request, monkeypatch):
    """Small inputs normally take the serial twins; the parallel runs force the prange kernels."""
    if request.param != "serial":
        for module in (softmax, cross_entropy, embedding, layernorm, gelu, adamw, rmsnorm, rope,
                       swiglu, linear, decode_attention):
            monkeypatch.setattr(module, "PARALLEL_MIN_SIZE", 0)
    before = get_num_threads()
    set_num_threads(numba.config.NUMBA_NUM_THREADS if request.param.endswith("allthreads") else 1)
    yield
    set_num_threads(before)


def assert_close(actual, expected, scale=1.0):
    """float32 results against the float64 truth at ~1e-5; float64 results tightly."""
    tol = 1e-5 if actual.dtype == np.float32 else 1e-11
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def randn(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def exact(*arrays):
    """The float64 copies the references compute the truth from."""
    return [None if a is None else a.astype(np.float64) for a in arrays]


def numeric_grad(loss, x, h=1e-6):
    """Central differences of the scalar ``loss()`` with respect to every element of ``x``."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + h
        up = loss()
        flat[i] = keep - h
        down = loss()
        flat[i] = keep
        gflat[i] = (up - down) / (2 * h)
    return grad


# GELU


@pytest.mark.parametrize("approximate", ["tanh", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (1, 1), (7,), (3, 65), (2, 3, 5), (1000,)])
def test_gelu(threads, dtype, shape, approximate):
    rng = np.random.default_rng(0)
    x, dout = randn(rng, shape, dtype, 3.0), randn(rng, shape, dtype)
    out = K.gelu_forward(x, approximate=approximate)
    assert out.dtype == dtype and out.flags.c_contiguous
    assert_close(out, R.gelu_forward(*exact(x), approximate=approximate), scale=3.0)
    assert_close(K.gelu_backward(x, dout, approximate=approximate),
                 R.gelu_backward(*exact(x, dout), approximate=approximate))


@pytest.mark.parametrize("approximate", ["tanh", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("has_bias", [True, False])
def test_bias_gelu(threads, dtype, shape, approximate, has_bias):
    rng = np.random.default_rng(1)
    h, dout = randn(rng, shape, dtype, 3.0), randn(rng, shape, dtype)
    bias = randn(rng, shape[-1:], dtype) if has_bias else None
    want, pre = R.bias_gelu_forward(*exact(h, bias), approximate=approximate)
    out = K.bias_gelu_forward(h, bias, approximate=approximate)
    assert_close(out, want, scale=3.0)
    assert_close(h, pre, scale=3.0)  # h now holds the pre-activation
    dh, dbias = K.bias_gelu_backward(h, dout, has_bias, approximate=approximate)
    want_dh, want_dbias = R.bias_gelu_backward(*exact(h, dout), has_bias, approximate)
    assert_close(dh, want_dh)
    if has_bias:
        assert_close(dbias, want_dbias, scale=float(np.prod(shape[:-1])))
    else:
        assert dbias is None


def test_bias_gelu_refuses_an_input_it_cannot_update_in_place():
    h = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="bias_gelu_forward: h must be a writeable C-contiguous"):
        K.bias_gelu_forward(h.T, None)
    with pytest.raises(ValueError, match=r"bias has shape \(4,\), expected \(6,\)"):
        K.bias_gelu_forward(h, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh', got 'erf'"):
        K.bias_gelu_forward(h, None, approximate="erf")


@numba.njit
def _fast_exp_all(x, out):
    for i in range(x.size):
        out[i] = fast_exp(x[i])


def test_fast_exp_float32():
    x = np.concatenate([np.linspace(-87.3, 88.0, 200001), [0.0, -1e-8, 1e-8]]).astype(np.float32)
    out = np.empty_like(x)
    _fast_exp_all(x, out)
    np.testing.assert_allclose(out, np.exp(x.astype(np.float64)), rtol=5e-7, atol=0)
    special = np.array([-np.inf, -1000.0, np.nan], np.float32)
    _fast_exp_all(special, out[:3])
    assert out[0] == 0 and out[1] == 0 and np.isnan(out[2])


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_float32_stays_accurate(approximate):
    # float32 GELU runs the polynomial exp (and, exact, a fitted erfc), float64 GELU libm's. Far
    # left the float32 rounding of the exponent's argument (up to ~25) dominates, hence the looser
    # bound there. (The reference cannot be the yardstick out here: its 1 + tanh(u) cancels for
    # x < -6.) The exact form's tail exponent (-x²/2 plus a fitted polynomial) rounds a little
    # more: measured 1.1e-6 down to -3 and 3.9e-6 down to -6. The derivative crosses zero near
    # x = -0.75, so it gets an absolute bound on its O(1) scale.
    bounds = {"tanh": ((-3.0, 1e-6), (-6.0, 3e-6)), "none": ((-3.0, 2e-6), (-6.0, 5e-6))}
    for lo, rtol in bounds[approximate]:
        x = np.linspace(lo, 6, 20001, dtype=np.float32)
        ones = np.ones_like(x)
        np.testing.assert_allclose(K.gelu_forward(x, approximate=approximate),
                                   K.gelu_forward(x.astype(np.float64), approximate=approximate),
                                   rtol=rtol, atol=1e-30)
        np.testing.assert_allclose(K.gelu_backward(x, ones, approximate=approximate),
                                   K.gelu_backward(*exact(x, ones), approximate=approximate),
                                   rtol=rtol, atol=3e-6)


def test_gelu_known_values():
    # gelu(1) = 0.5·(1 + tanh(sqrt(2/π)·1.044715)) = 0.841192 (GPT-2's approximation)
    np.testing.assert_allclose(K.gelu_forward(np.array([0.0, 1.0, -1.0])),
                               [0.0, 0.8411919906, -0.1588080094], rtol=1e-9)
    # exact: gelu(1) = Φ(1) = 0.8413447461, gelu(-1) = -Φ(-1) = -0.1586552539
    np.testing.assert_allclose(K.gelu_forward(np.array([0.0, 1.0, -1.0]), approximate="none"),
                               [0.0, 0.8413447461, -0.1586552539], rtol=1e-9)
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        K.gelu_forward(np.ones(2), approximate="erf")


# softmax


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax(threads, dtype, shape):
    rng = np.random.default_rng(1)
    x, dout = randn(rng, shape, dtype, 4.0), randn(rng, shape, dtype)
    out = K.softmax_forward(x)
    assert_close(out, R.softmax_forward(*exact(x)))
    assert_close(K.softmax_backward(out, dout), R.softmax_backward(*exact(out, dout)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_masked_and_huge_entries(dtype):
    x = np.array([[0.0, -np.inf, 1.0, -np.inf], [1000.0, 999.0, -1000.0, -np.inf]], dtype)
    out = K.softmax_forward(x)
    assert out[0, 1] == 0 and out[0, 3] == 0 and out[1, 3] == 0
    assert_close(out, R.softmax_forward(*exact(x)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates_through_softmax_and_cross_entropy(dtype):
    # the row max skips NaN (maxnum), so it is the exp pass that must carry it
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]], dtype)
    out = K.softmax_forward(x)
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    losses, lse = K.cross_entropy_forward(x, np.array([0, 2]))
    assert np.isnan(losses[0]) and np.isnan(lse[0]) and np.isfinite(losses[1])


# layer norm


def test_layernorm_float32_rows_far_from_zero():
    # The one-pass statistics shift each row by its first element; rows whose mean is 1e4 times
    # their spread must still normalise to float32 accuracy (float64 reference).
    rng = np.random.default_rng(9)
    x = (1e4 + rng.standard_normal((64, 384))).astype(np.float32)
    out, mean, rstd = K.layernorm_forward(x, None, None)
    ref_out, ref_mean, ref_rstd = R.layernorm_forward(x.astype(np.float64), None, None)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-6)
    np.testing.assert_allclose(rstd, ref_rstd, rtol=1e-3)
    np.testing.assert_allclose(out, ref_out, atol=2e-3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES + [(1, 384)])
@pytest.mark.parametrize("affine", ["weight+bias", "weight", "none"])
def test_layernorm(threads, dtype, shape, affine):
    rng = np.random.default_rng(2)
    C = shape[-1]
    x, dout = randn(rng, shape, dtype, 2.0) + dtype(0.5), randn(rng, shape, dtype)
    weight = randn(rng, C, dtype) if affine != "none" else None
    bias = randn(rng, C, dtype) if affine == "weight+bias" else None
    out, mean, rstd = K.layernorm_forward(x, weight, bias)
    ref_out, ref_mean, ref_rstd = R.layernorm_forward(*exact(x, weight, bias))
    assert mean.shape == rstd.shape == shape[:-1]
    assert_close(out, ref_out, scale=3.0)
    assert_close(mean, ref_mean)
    assert_close(rstd, ref_rstd)
    dx, dweight, dbias = K.layernorm_backward(dout, x, weight, mean, rstd)
    ref = R.layernorm_backward(*exact(dout, x, weight, mean, rstd))
    rows = max(1, x.size // C)
    assert_close(dx, ref[0], scale=3.0)
    if weight is None:
        assert dweight is None and dbias is None
    else:
        assert_close(dweight, ref[1], scale=rows)
        assert_close(dbias, ref[2], scale=rows)


# RMS norm


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES + [(1, 384)])
@pytest.mark.parametrize("weighted", [True, False])
def test_rmsnorm(threads, dtype, shape, weighted):
    rng = np.random.default_rng(3)
    C = shape[-1]
    x, dout = randn(rng, shape, dtype, 2.0), randn(rng, shape, dtype)
    weight = randn(rng, C, dtype) if weighted else None
    out, rstd = K.rmsnorm_forward(x, weight, 1e-6)
    ref_out, ref_rstd = R.rmsnorm_forward(*exact(x, weight), 1e-6)
    assert rstd.shape == shape[:-1]
    assert_close(out, ref_out, scale=3.0)
    assert_close(rstd, ref_rstd, scale=3.0)
    dx, dweight = K.rmsnorm_backward(dout, x, weight, rstd)
    ref_dx, ref_dweight = R.rmsnorm_backward(*exact(dout, x, weight, rstd))
    assert_close(dx, ref_dx, scale=3.0)
    if weighted:
        assert_close(dweight, ref_dweight, scale=max(1, x.size // C))
    else:
        assert dweight is None


def test_rmsnorm_known_value():
    # [3, -4]: mean square 12.5, rstd 1/sqrt(12.5); weight 2 doubles the result
    out, rstd = K.rmsnorm_forward(np.array([[3.0, -4.0]]), np.array([2.0, 2.0]), eps=0.0)
    np.testing.assert_allclose(rstd, [1 / np.sqrt(12.5)])
    np.testing.assert_allclose(out, [[6 / np.sqrt(12.5), -8 / np.sqrt(12.5)]])


# rotary embedding


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 5, 3, 8), (1, 7, 2, 64), (3, 2, 1, 6)])
def test_rope(threads, dtype, shape):
    rng = np.random.default_rng(4)
    T, hs = shape[1], shape[3]
    inv_freq = 10000.0 ** (-np.arange(0, hs, 2) / hs)
    cos, sin = K.rope_tables(inv_freq, np.arange(3, T + 3), dtype)  # as a KV cache continues
    x, dout = randn(rng, shape, dtype), randn(rng, shape, dtype)
    out = K.rope_forward(x, cos, sin)
    assert_close(out, R.rope_forward(*exact(x, cos, sin)))
    assert_close(K.rope_backward(dout, cos, sin), R.rope_backward(*exact(dout, cos, sin)))
    # a rotation keeps each pair's length
    half = hs // 2
    np.testing.assert_allclose(out[..., :half] ** 2 + out[..., half:] ** 2,
                               x[..., :half] ** 2 + x[..., half:] ** 2, rtol=1e-4)
    # the first heads only (q and k of a fused qkv), the others copied; in place too
    heads = shape[2] // 2
    partial = K.rope_forward(x, cos, sin, heads=heads)
    assert_close(partial[:, :, :heads], R.rope_forward(*exact(x[:, :, :heads], cos, sin)))
    np.testing.assert_array_equal(partial[:, :, heads:], x[:, :, heads:])
    back = dout.copy()
    K.rope_backward(back, cos, sin, heads=heads, out=back)
    assert_close(back[:, :, :heads], R.rope_backward(*exact(dout[:, :, :heads], cos, sin)))
    np.testing.assert_array_equal(back[:, :, heads:], dout[:, :, heads:])


def test_rope_rejects_odd_heads_and_wrong_tables():
    cos, sin = K.rope_tables(np.ones(2), np.arange(3))
    with pytest.raises(ValueError, match="even hs"):
        K.rope_forward(np.ones((1, 3, 1, 5), np.float32), cos, sin)
    with pytest.raises(ValueError, match=r"cos has shape \(3, 2\), expected \(2, 2\)"):
        K.rope_forward(np.ones((1, 2, 1, 4), np.float32), cos, sin)
    with pytest.raises(ValueError, match=r"heads=3 is not in 0\.\.2"):
        K.rope_forward(np.ones((1, 3, 2, 4), np.float32), cos, sin, heads=3)


# SiLU and SwiGLU


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 65), (2, 3, 5), (1000,)])
def test_silu_and_swiglu(threads, dtype, shape):
    rng = np.random.default_rng(5)
    gate, up, dout = randn(rng, shape, dtype, 4.0), randn(rng, shape, dtype), randn(rng, shape, dtype)
    assert_close(K.silu_forward(gate), R.silu_forward(*exact(gate)), scale=4.0)
    assert_close(K.silu_backward(gate, dout), R.silu_backward(*exact(gate, dout)), scale=4.0)
    x = np.concatenate([gate, up], axis=-1)  # one projection's output: gate then up
    assert_close(K.swiglu_forward(x), R.swiglu_forward(*exact(gate, up)), scale=4.0)
    dx = K.swiglu_backward(x, dout)
    half = shape[-1]
    ref_dgate, ref_dup = R.swiglu_backward(*exact(gate, up, dout))
    assert_close(dx[..., :half], ref_dgate, scale=4.0)
    assert_close(dx[..., half:], ref_dup, scale=4.0)


def test_swiglu_rejects_odd_halves():
    with pytest.raises(ValueError, match=r"swiglu_forward: x must be \(\.\.\., 2H\)"):
        K.swiglu_forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"dout has shape \(2, 2\), expected \(2, 1\)"):
        K.swiglu_backward(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))


def test_silu_far_tails_float32():
    # far left the sigmoid underflows to 0 (silu → -0), far right it is 1 (silu → x), no NaN
    x = np.array([-200.0, -90.0, 0.0, 90.0, 200.0], np.float32)
    np.testing.assert_allclose(K.silu_forward(x), [0.0, 0.0, 0.0, 90.0, 200.0], atol=1e-30)
    assert np.isfinite(K.silu_backward(x, np.ones_like(x))).all()


# cross-entropy


CE_CASES = [(1, 1), (1, 5), (4, 1), (7, 13), (9, 64), (3, 1000)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,V", CE_CASES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(threads, dtype, N, V, smoothing):
    rng = np.random.default_rng(3)
    logits = randn(rng, (N, V), dtype, 3.0)
    targets = rng.integers(0, V, N)
    if N > 1:
        targets[::3] = -100
    dlosses = randn(rng, N, dtype)
    losses, lse = K.cross_entropy_forward(logits, targets, label_smoothing=smoothing)
    ref_losses, ref_lse = R.cross_entropy_forward(*exact(logits), targets, -100, smoothing)
    assert_close(losses, ref_losses, scale=10.0)
    assert_close(lse, ref_lse, scale=10.0)
    assert np.all(losses[targets == -100] == 0)
    dlogits = K.cross_entropy_backward(logits, targets, lse, dlosses, label_smoothing=smoothing)
    expected = R.cross_entropy_backward(*exact(logits), targets, *exact(lse, dlosses), -100,
                                        smoothing)
    assert_close(dlogits, expected)
    assert np.all(dlogits[targets == -100] == 0)


def test_cross_entropy_custom_ignore_index_and_known_value():
    logits = np.zeros((2, 4))
    losses, lse = K.cross_entropy_forward(logits, np.array([1, 3]), ignore_index=3)
    np.testing.assert_allclose(losses, [np.log(4.0), 0.0], rtol=1e-12)
    np.testing.assert_allclose(lse, [np.log(4.0)] * 2, rtol=1e-12)


# embedding


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V,C,idx_shape", [(1, 1, (3,)), (5, 65, (2, 7)), (50, 40, (4, 9)),
                                           (3, 17, ()), (10, 33, (1, 1))])
def test_embedding(threads, dtype, V, C, idx_shape):
    rng = np.random.default_rng(4)
    weight = randn(rng, (V, C), dtype)
    idx = rng.integers(0, V, idx_shape)
    out = K.embedding_forward(weight, idx)
    assert out.shape == idx_shape + (C,)
    np.testing.assert_array_equal(out, R.embedding_forward(weight, idx))
    dout = randn(rng, idx_shape + (C,), dtype)
    assert_close(K.embedding_backward(dout, idx, V), R.embedding_backward(*exact(dout), idx, V),
                 scale=4.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_accumulates_repeated_ids(threads, dtype):
    idx = np.array([[2, 2, 2], [0, 2, 2]])
    dout = np.ones((2, 3, 48), dtype) * np.arange(1, 4, dtype=dtype)[None, :, None]
    dweight = K.embedding_backward(dout, idx, 4)
    np.testing.assert_array_equal(dweight[:, 0], [1.0, 0.0, 1 + 2 + 3 + 2 + 3, 0.0])
    assert np.all(dweight == dweight[:, :1])


# AdamW


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 1001])
def test_adamw_matches_reference_over_steps(threads, dtype, n):
    rng = np.random.default_rng(5)
    ours = [randn(rng, n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)]
    ref = [a.copy() for a in ours]
    for step in range(1, 6):
        grad = randn(rng, n, dtype)
        K.adamw_step(*ours[:1], grad, *ours[1:], step, 3e-3, 0.9, 0.95, 1e-8, 0.1)
        R.adamw_step(*ref[:1], grad, *ref[1:], step, 3e-3, 0.9, 0.95, 1e-8, 0.1)
    for a, b in zip(ours, ref):
        assert_close(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_steps_update_each_tensor_as_its_own_step(threads, dtype):
    """Tensors of several sizes (one empty) at their own step counts, in one call: each as the
    reference's single-tensor step, across the shares' boundaries."""
    rng = np.random.default_rng(8)
    sizes, first_steps = [5, 1, 0, 300, 17], [1, 4, 2, 1, 9]
    ours = [[randn(rng, n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)] for n in sizes]
    ref = [[a.copy() for a in bufs] for bufs in ours]
    for k in range(3):
        grads = [randn(rng, n, dtype) for n in sizes]
        steps = [s + k for s in first_steps]
        K.adamw_steps([b[0] for b in ours], grads, [b[1] for b in ours], [b[2] for b in ours],
                      steps, 3e-3, 0.9, 0.95, 1e-8, 0.1)
        for bufs, grad, step in zip(ref, grads, steps):
            R.adamw_step(bufs[0], grad, bufs[1], bufs[2], step, 3e-3, 0.9, 0.95, 1e-8, 0.1)
    for bufs, expected in zip(ours, ref):
        for a, b in zip(bufs, expected):
            assert_close(a, b)


def test_adamw_first_step_worked_example():
    # step 1: m̂ = g and v̂ = g², so p ← p·(1 - lr·wd) - lr·g/(|g| + eps)
    param, m, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
    K.adamw_step(param, np.array([0.5, -4.0]), m, v, 1, 0.1, 0.9, 0.999, 0.0, 0.5)
    np.testing.assert_allclose(param, [1.0 * 0.95 - 0.1, -2.0 * 0.95 + 0.1], rtol=1e-12)
    np.testing.assert_allclose(m, [0.05, -0.4], rtol=1e-12)
    np.testing.assert_allclose(v, [0.00025, 0.016], rtol=1e-12)


# gradients of the reference forwards by finite differences (float64, tiny cases)


def test_backward_kernels_match_finite_differences():
    rng = np.random.default_rng(6)
    x, dout = rng.standard_normal((2, 5)) * 2, rng.standard_normal((2, 5))
    for approximate in ("tanh", "none"):
        fd = numeric_grad(lambda a=approximate: np.sum(R.gelu_forward(x, a) * dout), x)
        np.testing.assert_allclose(K.gelu_backward(x, dout, approximate=approximate), fd,
                                   rtol=1e-6, atol=1e-8)

    fd = numeric_grad(lambda: np.sum(R.softmax_forward(x) * dout), x)
    np.testing.assert_allclose(K.softmax_backward(K.softmax_forward(x), dout), fd, atol=1e-8)

    weight, bias = rng.standard_normal(5), rng.standard_normal(5)
    _, mean, rstd = K.layernorm_forward(x, weight, bias)
    dx, dweight, dbias = K.layernorm_backward(dout, x, weight, mean, rstd)
    for param, grad in ((x, dx), (weight, dweight), (bias, dbias)):
        fd = numeric_grad(lambda: np.sum(R.layernorm_forward(x, weight, bias)[0] * dout), param)
        np.testing.assert_allclose(grad, fd, atol=1e-7)

    logits, targets, dlosses = rng.standard_normal((3, 6)), np.array([4, -100, 0]), rng.random(3)
    _, lse = K.cross_entropy_forward(logits, targets, label_smoothing=0.2)
    fd = numeric_grad(
        lambda: np.sum(R.cross_entropy_forward(logits, targets, -100, 0.2)[0] * dlosses), logits
    )
    dlogits = K.cross_entropy_backward(logits, targets, lse, dlosses, label_smoothing=0.2)
    np.testing.assert_allclose(dlogits, fd, atol=1e-8)

    table, idx, dout3 = rng.standard_normal((4, 3)), np.array([[3, 1, 3]]), rng.random((1, 3, 3))
    fd = numeric_grad(lambda: np.sum(R.embedding_forward(table, idx) * dout3), table)
    np.testing.assert_allclose(K.embedding_backward(dout3, idx, 4), fd, atol=1e-8)


# shapes drawn by hypothesis


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 6), C=st.integers(1, 40), seed=st.integers(0, 2**16),
       dtype=st.sampled_from(DTYPES))
def test_row_kernels_on_drawn_shapes(rows, C, seed, dtype):
    rng = np.random.default_rng(seed)
    x, dout = randn(rng, (rows, C), dtype, 3.0), randn(rng, (rows, C), dtype)
    assert_close(K.softmax_forward(x), R.softmax_forward(*exact(x)))
    out, mean, rstd = K.layernorm_forward(x, None, None)
    assert_close(out, R.layernorm_forward(*exact(x), None, None)[0], scale=3.0)
    dx = K.layernorm_backward(dout, x, None, mean, rstd)[0]
    assert_close(dx, R.layernorm_backward(*exact(dout, x), None, *exact(mean, rstd))[0], 3.0)
    targets = rng.integers(0, C, rows)
    losses, _ = K.cross_entropy_forward(x, targets)
    assert_close(losses, R.cross_entropy_forward(*exact(x), targets)[0], scale=10.0)


# inputs that are not contiguous, and out=


def test_strided_inputs_are_made_contiguous():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 8)).astype(np.float32)[:, ::2].T  # (4, 6), strided
    assert_close(K.softmax_forward(x), R.softmax_forward(*exact(x)))
    assert_close(K.gelu_forward(x), R.gelu_forward(*exact(x)))
    table = rng.standard_normal((10, 4))[::2]
    np.testing.assert_array_equal(K.embedding_forward(table, np.array([4, 0])), table[[4, 0]])


def test_out_is_written_and_returned():
    x = np.linspace(-3, 3, 12).reshape(3, 4)
    buf = np.empty_like(x)
    assert K.gelu_forward(x, out=buf) is buf
    np.testing.assert_allclose(buf, R.gelu_forward(x), rtol=1e-12)
    assert K.softmax_forward(x, out=buf) is buf
    np.testing.assert_allclose(buf, R.softmax_forward(x), rtol=1e-12)
    with pytest.raises(ValueError, match=r"out must be a float64 array of shape \(3, 4\)"):
        K.gelu_forward(x, out=np.empty((4, 3)))
    table = np.full((5, 4), np.nan)  # rows no id touches must come back zero, not stale
    idx = np.array([[1, 3, 1]])
    assert K.embedding_backward(x[None, :], idx, 5, out=table) is table
    np.testing.assert_array_equal(table, R.embedding_backward(x[None, :], idx, 5))


# errors


def test_wrong_dtypes_raise_type_error():
    with pytest.raises(TypeError, match="gelu_forward: x must be float32 or float64, got int64"):
        K.gelu_forward(np.arange(3))
    with pytest.raises(TypeError, match="dout is float64 but the other inputs are float32"):
        K.gelu_backward(np.zeros(3, np.float32), np.zeros(3))
    with pytest.raises(TypeError, match="targets must be an integer"):
        K.cross_entropy_forward(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(TypeError, match="weight is float32 but the other inputs are float64"):
        K.layernorm_forward(np.zeros((2, 3)), np.ones(3, np.float32), None)


def test_mismatched_shapes_raise_value_error():
    with pytest.raises(ValueError, match=r"dout has shape \(2, 4\), expected \(2, 3\)"):
        K.softmax_backward(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(3,\)"):
        K.layernorm_forward(np.zeros((2, 3)), np.ones(4), None)
    with pytest.raises(ValueError, match=r"targets has shape \(3,\), expected \(2,\)"):
        K.cross_entropy_forward(np.zeros((2, 5)), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="non-empty last axis"):
        K.softmax_forward(np.zeros((2, 0)))
    with pytest.raises(ValueError, match=r"dout has shape \(2, 5\), expected \(3,\) \+ \(C,\)"):
        K.embedding_backward(np.zeros((2, 5)), np.zeros(3, np.int64), 4)


def test_bad_targets_and_ids_raise_index_error():
    with pytest.raises(IndexError, match="target 5 in row 1 is out of range for V=5"):
        K.cross_entropy_forward(np.zeros((3, 5)), np.array([0, 5, -100]))
    with pytest.raises(IndexError, match="target -3 in row 0"):
        K.cross_entropy_backward(np.zeros((1, 5)), np.array([-3]), np.zeros(1), np.ones(1))
    with pytest.raises(IndexError, match="id 7 is out of range for an embedding of V=7 rows"):
        K.embedding_forward(np.zeros((7, 2)), np.array([[0, 7]]))
    with pytest.raises(IndexError, match="id -1 is out of range"):
        K.embedding_backward(np.zeros((1, 2)), np.array([-1]), 3)


def test_adamw_rejects_bad_buffers_and_step():
    bufs = [np.zeros(4, np.float32) for _ in range(4)]
    with pytest.raises(ValueError, match="step counts from 1, got 0"):
        K.adamw_step(*bufs, 0, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    with pytest.raises(ValueError, match="exp_avg must be C-contiguous"):
        K.adamw_step(bufs[0], bufs[1], np.zeros(8, np.float32)[::2], bufs[3], 1, 1e-3, 0.9,
                     0.999, 1e-8, 0.0)
    with pytest.raises(ValueError, match=r"grad has shape \(3,\), expected 1-D like param"):
        K.adamw_step(bufs[0], np.zeros(3, np.float32), bufs[2], bufs[3], 1, 1e-3, 0.9, 0.999,
                     1e-8, 0.0)
    with pytest.raises(TypeError, match="exp_avg_sq is float64 but the other inputs are float32"):
        K.adamw_step(*bufs[:3], np.zeros(4), 1, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    with pytest.raises(ValueError, match="one entry per tensor"):
        K.adamw_steps([bufs[0]], [], [bufs[2]], [bufs[3]], [1], 1e-3, 0.9, 0.999, 1e-8, 0.0)
    with pytest.raises(ValueError, match=r"param has shape \(2, 2\), expected 1-D"):
        square = np.zeros((2, 2), np.float32)
        K.adamw_steps([square], [square], [square], [square], [1], 1e-3, 0.9, 0.999, 1e-8, 0.0)


# Decoding: the few-rows linear and attention over many slots


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,C,N", [(1, 1, 1), (1, 7, 3), (2, 5, 9), (3, 33, 17), (4, 3, 4),
                                   (8, 64, 65), (13, 31, 22), (16, 40, 7)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_rows(threads, dtype, M, C, N, with_bias):
    rng = np.random.default_rng(M * C * N)
    x, w, b = randn(rng, (M, C), dtype), randn(rng, (N, C), dtype), randn(rng, (N,), dtype)
    b = b if with_bias else None
    assert_close(K.linear_rows(x, w, b), R.linear_rows(*exact(x, w, b)), scale=np.sqrt(C))


@settings(max_examples=40, deadline=None)
@given(M=st.integers(1, 16), C=st.integers(1, 70), N=st.integers(1, 23),
       with_bias=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_linear_rows_on_drawn_shapes(M, C, N, with_bias, dtype, seed):
    """Every row count, and weight heights that leave 0-3 rows past the blocks of four."""
    rng = np.random.default_rng(seed)
    x, w, b = randn(rng, (M, C), dtype), randn(rng, (N, C), dtype), randn(rng, (N,), dtype)
    b = b if with_bias else None
    assert_close(K.linear_rows(x, w, b), R.linear_rows(*exact(x, w, b)), scale=np.sqrt(C))


def test_linear_rows_rejects_bad_shapes():
    x, w = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="1 to 16"):
        K.linear_rows(np.ones((17, 3), np.float32), w)
    with pytest.raises(ValueError, match="bias"):
        K.linear_rows(x, w, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="float64"):
        K.linear_rows(x, w.astype(np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("NH,NKV", [(1, 1), (4, 4), (6, 2)])
def test_slot_attention(threads, dtype, NH, NKV):
    """Decoding tokens and prompt chunks of several slots at once, one slot at position 0."""
    rng = np.random.default_rng(NH)
    S, capacity, hs = 4, 12, 5
    keys, values = randn(rng, (S, NKV, capacity, hs), dtype), randn(rng, (S, NKV, capacity, hs),
                                                                      dtype)
    token_slot = np.array([2, 0, 3, 3, 3, 1])
    token_pos = np.array([11, 0, 4, 5, 6, 7])
    q = randn(rng, (NH, len(token_slot), hs), dtype)
    got = K.slot_attention(q, keys, values, token_slot, token_pos, 0.4)
    want = R.slot_attention(*exact(q, keys, values), token_slot, token_pos, 0.4)
    assert_close(got, want)
    np.testing.assert_allclose(got[:, 1], values[0, np.arange(NH) // (NH // NKV), 0],
                               rtol=1e-6)  # one key: its value


def test_slot_attention_rejects_positions_outside_the_cache():
    keys = np.zeros((2, 1, 4, 3), np.float32)
    q = np.zeros((1, 1, 3), np.float32)
    with pytest.raises(ValueError, match="token_pos"):
        K.slot_attention(q, keys, keys, np.array([0]), np.array([4]), 1.0)
    with pytest.raises(ValueError, match="token_slot"):
        K.slot_attention(q, keys, keys, np.array([0, 1]), np.array([0, 1]), 1.0)
