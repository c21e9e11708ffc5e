"""Fused causal attention kernels against the plain-NumPy reference and finite differences."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagrad.tensor import get_num_threads, set_num_threads
from alphagrad.tensor.kernels import attention, reference
from alphagrad.tensor.kernels.attention import attention_backward, attention_forward

TOL = {np.float32: {"rtol": 2e-5, "atol": 2e-5}, np.float64: {"rtol": 1e-11, "atol": 1e-11}}

# (B, NH, Tq, Tk, hs): one-element, odd, hs=1, decoding (Tq=1), Tq < Tk, across key-tile edges
# (64) and query-block edges (256), query blocks of a few rows (the direct path) next to full ones,
# head sizes off the register tile's width of 16 (20, 33, 40) and on it (80)
SHAPES = [(1, 1, 1, 1, 1), (2, 3, 5, 5, 4), (1, 2, 7, 7, 1), (2, 1, 1, 9, 3), (1, 2, 37, 100, 5),
          (2, 2, 70, 70, 16), (1, 1, 130, 130, 8), (1, 1, 3, 200, 6), (2, 3, 1, 150, 64),
          (1, 2, 4, 131, 8), (1, 1, 67, 67, 4), (1, 1, 300, 300, 5), (1, 2, 258, 321, 3),
          (1, 2, 45, 90, 33), (2, 1, 66, 66, 40), (1, 1, 97, 97, 80), (1, 1, 50, 50, 20)]
# grouped-query attention, (B, NH, NKV, Tq, Tk, hs): groups of 2, 3 and all heads on one kv head,
# across tiles, decoding and a few-row KV-cache block
GQA_SHAPES = [(2, 4, 2, 9, 9, 3), (1, 6, 2, 70, 70, 8), (2, 3, 1, 1, 150, 16), (1, 4, 1, 3, 67, 5),
              (2, 8, 4, 130, 130, 4), (1, 2, 1, 1, 1, 1), (1, 4, 2, 262, 300, 4)]


@pytest.fixture(params=["serial", "parallel"])
def threads(request, monkeypatch):
    """The serial twins on one thread, and the prange kernels (which the test shapes are too
    small to take by themselves) on all threads."""
    if request.param == "parallel":
        monkeypatch.setattr(attention, "PARALLEL_MIN_WORK", 0)
    before = get_num_threads()
    set_num_threads(1 if request.param == "serial" else os.cpu_count())
    yield
    set_num_threads(before)


def random_inputs(rng, B, NH, Tq, Tk, hs, dtype, spread=1.0, NKV=None):
    NKV = NH if NKV is None else NKV
    q = (spread * rng.standard_normal((B, NH, Tq, hs))).astype(dtype)
    k = (spread * rng.standard_normal((B, NKV, Tk, hs))).astype(dtype)
    v = rng.standard_normal((B, NKV, Tk, hs)).astype(dtype)
    dout = rng.standard_normal((B, NH, Tq, hs)).astype(dtype)
    return q, k, v, dout


def check_against_reference(q, k, v, dout, scale, tol):
    """Our kernels in q's dtype against the reference in float64 on the same inputs."""
    wide = [a.astype(np.float64) for a in (q, k, v, dout)]
    out, lse = attention_forward(q, k, v, scale)
    ref_out, ref_lse = reference.attention_forward(*wide[:3], scale)
    np.testing.assert_allclose(out, ref_out, **tol)
    np.testing.assert_allclose(lse, ref_lse, **tol)
    grads = attention_backward(dout, q, k, v, out, lse, scale)
    for grad, ref_grad, x in zip(grads, reference.attention_backward(wide[3], *wide[:3], scale),
                                 (q, k, v)):
        assert grad.dtype == q.dtype and grad.shape == x.shape
        np.testing.assert_allclose(grad, ref_grad, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(shape, dtype, threads):
    rng = np.random.default_rng(sum(shape))
    check_against_reference(*random_inputs(rng, *shape, dtype), 1 / np.sqrt(shape[-1]), TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", GQA_SHAPES, ids=str)
def test_grouped_query_heads_match_reference(shape, dtype, threads):
    B, NH, NKV, Tq, Tk, hs = shape
    rng = np.random.default_rng(sum(shape))
    inputs = random_inputs(rng, B, NH, Tq, Tk, hs, dtype, NKV=NKV)
    check_against_reference(*inputs, 1 / np.sqrt(hs), TOL[dtype])


def test_grouped_query_heads_equal_repeated_heads():
    # an independent route to the same numbers: each kv head copied to its query heads, run as
    # plain multi-head attention, and the copies' gradients summed back
    B, NH, NKV, Tq, Tk, hs = 2, 6, 2, 5, 12, 4
    q, k, v, dout = random_inputs(np.random.default_rng(5), B, NH, Tq, Tk, hs, np.float64, NKV=NKV)
    out, lse = attention_forward(q, k, v, 0.5)
    dq, dk, dv = attention_backward(dout, q, k, v, out, lse, 0.5)
    k_wide, v_wide = np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1)
    out_wide, lse_wide = attention_forward(q, k_wide, v_wide, 0.5)
    dq_wide, dk_wide, dv_wide = attention_backward(dout, q, k_wide, v_wide, out_wide, lse_wide, 0.5)
    np.testing.assert_allclose(out, out_wide, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dq, dq_wide, rtol=1e-12, atol=1e-12)
    for grad, wide in ((dk, dk_wide), (dv, dv_wide)):
        np.testing.assert_allclose(grad, wide.reshape(B, NKV, 3, Tk, hs).sum(axis=2), rtol=1e-11,
                                   atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_scores_stay_finite(dtype):
    # scores of several hundred: the online softmax must rescale, never overflow. A float32
    # score that large carries an absolute error near 1e-5, hence the looser tolerance.
    rng = np.random.default_rng(1)
    q, k, v, dout = random_inputs(rng, 1, 2, 90, 90, 8, dtype, spread=8.0)
    tol = {"rtol": 1e-3, "atol": 1e-3} if dtype == np.float32 else TOL[dtype]
    check_against_reference(q, k, v, dout, 2.0, tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_views_of_a_qkv_buffer(dtype, threads):
    # the GPT layout: q, k, v are strided slices of one (B, T, 3, NH, hs) buffer, out goes to a
    # (B, T, NH, hs) buffer and the gradients land in one d(qkv) buffer, all without copies
    B, T, NH, hs = 2, 67, 3, 8
    rng = np.random.default_rng(2)
    qkv = rng.standard_normal((B, T, 3, NH, hs)).astype(dtype)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    out_buffer = np.full((B, T, NH, hs), np.nan, dtype)
    out, lse = attention_forward(q, k, v, 0.3, out=out_buffer.transpose(0, 2, 1, 3))
    assert np.shares_memory(out, out_buffer)
    ref_out, ref_lse = reference.attention_forward(q, k, v, 0.3)
    np.testing.assert_allclose(out_buffer.transpose(0, 2, 1, 3), ref_out, **TOL[dtype])
    np.testing.assert_allclose(lse, ref_lse, **TOL[dtype])

    dout = rng.standard_normal((B, T, NH * hs)).astype(dtype).reshape(B, T, NH, hs)
    dout = dout.transpose(0, 2, 1, 3)
    dqkv = np.full_like(qkv, np.nan)
    dq, dk, dv = (dqkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    attention_backward(dout, q, k, v, out, lse, 0.3, dq=dq, dk=dk, dv=dv)
    ref = reference.attention_backward(dout, q, k, v, 0.3)
    np.testing.assert_allclose(dqkv, np.stack([g.transpose(0, 2, 1, 3) for g in ref], axis=2),
                               **TOL[dtype])


def test_default_out_merges_heads_for_free():
    q = np.random.default_rng(3).standard_normal((2, 4, 5, 3)).astype(np.float32)
    out, lse = attention_forward(q, q, q, 0.5)
    assert out.shape == (2, 4, 5, 3) and lse.shape == (2, 4, 5)
    assert out.transpose(0, 2, 1, 3).flags.c_contiguous


def test_first_row_copies_first_value_and_last_row_averages():
    # a worked answer: with all-zero scores each row averages the values it may see
    q = k = np.zeros((1, 1, 3, 2))
    v = np.array([[[[3.0, 0.0], [0.0, 3.0], [6.0, 6.0]]]])
    out, lse = attention_forward(q, k, v, 1.0)
    np.testing.assert_allclose(out[0, 0], [[3, 0], [1.5, 1.5], [3, 3]])
    np.testing.assert_allclose(lse[0, 0], np.log([1, 2, 3]))


@pytest.mark.parametrize("NKV", [2, 1])
def test_backward_matches_finite_differences(NKV):
    B, NH, Tq, Tk, hs = 1, 2, 3, 4, 2
    rng = np.random.default_rng(4)
    q, k, v, dout = random_inputs(rng, B, NH, Tq, Tk, hs, np.float64, NKV=NKV)
    scale = 0.7
    out, lse = attention_forward(q, k, v, scale)
    grads = attention_backward(dout, q, k, v, out, lse, scale)
    inputs = [q, k, v]
    eps = 1e-6
    for x, grad in zip(inputs, grads):
        numeric = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            saved = x[idx]
            x[idx] = saved + eps
            plus = np.sum(reference.attention_forward(*inputs, scale)[0] * dout)
            x[idx] = saved - eps
            minus = np.sum(reference.attention_forward(*inputs, scale)[0] * dout)
            x[idx] = saved
            numeric[idx] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 2), NKV=st.integers(1, 3), group=st.integers(1, 3), Tk=st.integers(1, 80),
       hs=st.integers(1, 9), data=st.data())
def test_property_random_shapes(B, NKV, group, Tk, hs, data):
    Tq = data.draw(st.integers(1, Tk), label="Tq")
    scale = data.draw(st.floats(0.05, 2.0), label="scale")
    rng = np.random.default_rng(B * 1000 + Tk * 10 + hs)
    inputs = random_inputs(rng, B, NKV * group, Tq, Tk, hs, np.float64, NKV=NKV)
    check_against_reference(*inputs, scale, TOL[np.float64])


def test_rejects_bad_inputs():
    x = np.zeros((1, 2, 4, 8), np.float32)
    with pytest.raises(ValueError, match=r"q \(1, 2, 4, 8\) and k, v \(1, 2, 4, 6\)"):
        attention_forward(x, x[..., :6], x[..., :6], 1.0)
    with pytest.raises(ValueError, match="0 < Tq <= Tk"):
        attention_forward(x, x[:, :, :3], x[:, :, :3], 1.0)
    three_heads = np.zeros((1, 3, 4, 8), np.float32)
    with pytest.raises(ValueError, match=r"k, v \(1, 2, 4, 8\) .* NKV that divides NH"):
        attention_forward(three_heads, x, x, 1.0)
    with pytest.raises(ValueError, match=r"k \(1, 2, 4, 8\), v \(1, 2, 3, 8\)"):
        attention_forward(x, x, x[:, :, :3], 1.0)
    with pytest.raises(TypeError, match="v is float64 but q is float32"):
        attention_forward(x, x, x.astype(np.float64), 1.0)
    with pytest.raises(TypeError, match="q must be float32 or float64, got int64"):
        attention_forward(x.astype(np.int64), x, x, 1.0)
    with pytest.raises(TypeError, match="k must be a numpy.ndarray, got list"):
        attention_forward(x, [0.0], x, 1.0)
    with pytest.raises(ValueError, match=r"out must be a float32 array of shape \(1, 2, 4, 8\)"):
        attention_forward(x, x, x, 1.0, out=np.zeros((1, 2, 4, 7), np.float32))
    out, lse = attention_forward(x, x, x, 1.0)
    with pytest.raises(ValueError, match=r"lse has shape \(1, 2, 3\), expected \(1, 2, 4\)"):
        attention_backward(x, x, x, x, out, lse[:, :, :3], 1.0)
    with pytest.raises(TypeError, match="dout is float64 but q is float32"):
        attention_backward(x.astype(np.float64), x, x, x, out, lse, 1.0)
    with pytest.raises(ValueError, match="dk must be a float32 array"):
        attention_backward(x, x, x, x, out, lse, 1.0, dk=np.zeros((1, 2, 4, 8)))
