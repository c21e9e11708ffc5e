"""Neural-network ops (mostly fused kernels): forward against NumPy, gradients by gradcheck."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from opcheck import check_op

import alphagrad as ag
from alphagrad import functional as F

FAST = settings(max_examples=12, deadline=None)
seeds = st.integers(0, 2**32 - 1)


def np_log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@FAST
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), seed=seeds, data=st.data())
def test_softmax_log_softmax(shape, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(seed).standard_normal(shape) * 2
    check_op(lambda t: F.softmax(t, dim), lambda a: np.exp(np_log_softmax(a, dim)), [x])
    check_op(lambda t: t.log_softmax(dim), lambda a: np_log_softmax(a, dim), [x])


def np_gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


@FAST
@given(lead=hnp.array_shapes(min_dims=1, max_dims=2, max_side=3), n_in=st.integers(1, 5),
       n_out=st.integers(1, 5), has_bias=st.booleans(), approximate=st.sampled_from(["tanh", "none"]),
       seed=seeds)
def test_linear_gelu(lead, n_in, n_out, has_bias, approximate, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal(lead + (n_in,)), rng.standard_normal((n_out, n_in)), \
        rng.standard_normal(n_out)
    if has_bias:
        check_op(lambda t, w, b: F.linear_gelu(t, w, b, approximate),
                 lambda a, w, b: np_gelu(a @ w.T + b, approximate), [x, w, b])
    else:
        check_op(lambda t, w: F.linear_gelu(t, w, approximate=approximate),
                 lambda a, w: np_gelu(a @ w.T, approximate), [x, w])


@FAST
@given(lead=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5), n_in=st.integers(1, 5),
       n_out=st.integers(1, 5), has_bias=st.booleans(), seed=seeds)
def test_residual_linear(lead, n_in, n_out, has_bias, seed):
    """Both paths: a few rows (the row kernel, then the add) and more (the GEMM adds it)."""
    rng = np.random.default_rng(seed)
    r, x, w, b = rng.standard_normal(lead + (n_out,)), rng.standard_normal(lead + (n_in,)), \
        rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out)
    if has_bias:
        check_op(lambda r, t, w, b: F.residual_linear(r, t, w, b),
                 lambda r, a, w, b: r + a @ w.T + b, [r, x, w, b])
    else:
        check_op(lambda r, t, w: F.residual_linear(r, t, w),
                 lambda r, a, w: r + a @ w.T, [r, x, w])


def test_linear_of_no_rows():
    """A batch of zero rows (an empty prompt chunk) keeps its shape through both ops."""
    x, w, b = ag.zeros(1, 0, 3), ag.randn(4, 3), ag.randn(4)
    assert F.linear(x, w, b).shape == (1, 0, 4)
    assert F.residual_linear(ag.zeros(1, 0, 4), x, w, b).shape == (1, 0, 4)


def test_residual_linear_errors():
    with pytest.raises(ValueError, match=r"residual shape \(2, 3\) is not the output's, \(2, 4\)"):
        F.residual_linear(ag.randn(2, 3), ag.randn(2, 5), ag.randn(4, 5))


def test_linear_gelu_errors():
    x, w = ag.randn(2, 3), ag.randn(4, 5)
    with pytest.raises(ValueError, match=r"linear_gelu: input shape \(2, 3\) does not fit"):
        F.linear_gelu(x, w)
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh', got 'erf'"):
        F.linear_gelu(x, ag.randn(4, 3), approximate="erf")


def np_layer_norm(x, n, w=None, b=None, eps=1e-5):
    axes = tuple(range(x.ndim - n, x.ndim))
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    out = (x - mean) / np.sqrt(var + eps)
    return out * (1 if w is None else w) + (0 if b is None else b)


@FAST
@given(
    lead=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
    C=st.integers(2, 6),
    affine=st.booleans(),
    seed=seeds,
)
def test_layer_norm(lead, C, affine, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(lead + (C,))
    if affine:
        check_op(
            lambda t, w, b: F.layer_norm(t, C, w, b),
            lambda a, w, b: np_layer_norm(a, 1, w, b),
            [x, rng.standard_normal(C), rng.standard_normal(C)],
        )
    else:
        check_op(lambda t: F.layer_norm(t, (C,)), lambda a: np_layer_norm(a, 1), [x])


def test_layer_norm_over_two_dims():
    rng = np.random.default_rng(0)
    check_op(
        lambda t, w: F.layer_norm(t, (2, 3), w),
        lambda a, w: np_layer_norm(a, 2, w),
        [rng.standard_normal((4, 2, 3)), rng.standard_normal((2, 3))],
    )


def np_cross_entropy(x, targets, ignore_index, reduction, smoothing):
    logp = np_log_softmax(x)
    keep = targets != ignore_index
    picked = -logp[np.arange(len(targets)), np.where(keep, targets, 0)]
    losses = np.where(keep, (1 - smoothing) * picked - smoothing * logp.mean(axis=1), 0.0)
    if reduction == "none":
        return losses
    return losses.sum() / (keep.sum() if reduction == "mean" else 1)


@FAST
@given(
    N=st.integers(1, 5),
    V=st.integers(2, 6),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    smoothing=st.sampled_from([0.0, 0.1, 1.0]),
    ignore=st.booleans(),
    seed=seeds,
)
def test_cross_entropy(N, V, reduction, smoothing, ignore, seed):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, V, N)
    if ignore:
        targets[rng.random(N) < 0.4] = -100
        targets[0] = 0  # keep the mean defined
    check_op(
        lambda t: F.cross_entropy(
            t, ag.tensor(targets), reduction=reduction, label_smoothing=smoothing
        ),
        lambda a: np_cross_entropy(a, targets, -100, reduction, smoothing),
        [rng.standard_normal((N, V)) * 2],
    )


def test_cross_entropy_custom_ignore_index_and_single_sample():
    rng = np.random.default_rng(1)
    targets = np.array([3, 1, 3, 0])
    check_op(
        lambda t: F.cross_entropy(t, ag.tensor(targets), ignore_index=3),
        lambda a: np_cross_entropy(a, targets, 3, "mean", 0.0),
        [rng.standard_normal((4, 5))],
    )
    check_op(
        lambda t: F.cross_entropy(t, ag.tensor(2)),
        lambda a: np_cross_entropy(a[None], np.array([2]), -100, "mean", 0.0),
        [rng.standard_normal(5)],
    )


def test_cross_entropy_over_no_targets_is_nan_as_torch():
    x = ag.randn(3, 5, requires_grad=True)
    assert np.isnan(F.cross_entropy(x, ag.tensor([-100, -100, -100])).item())
    assert F.cross_entropy(x, ag.tensor([-100, -100, -100]), reduction="sum").item() == 0.0


@FAST
@given(
    idx_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=4),
    V=st.integers(1, 5),
    C=st.integers(1, 4),
    seed=seeds,
)
def test_embedding_accumulates_repeated_rows(idx_shape, V, C, seed):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, V, idx_shape)
    check_op(
        lambda w: F.embedding(ag.tensor(idx), w), lambda w: w[idx], [rng.standard_normal((V, C))]
    )


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_with_a_fixed_seed(p):
    x = np.random.default_rng(2).uniform(0.5, 1.5, (8, 16))

    def dropped(t):
        ag.manual_seed(7)  # the same mask at every call, so finite differences see one function
        return F.dropout(t, p)

    kept = dropped(ag.tensor(x)).data != 0
    assert 0 < kept.mean() < 1
    check_op(dropped, lambda a: np.where(kept, a / (1 - p), 0.0), [x])
    np.testing.assert_array_equal(F.dropout(ag.tensor(x), p, training=False).data, x)


@pytest.mark.parametrize("x_shape", [(3,), (2, 3), (2, 2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(x_shape, bias):
    rng = np.random.default_rng(len(x_shape))
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal((4, 3)), rng.standard_normal(4)
    if bias:
        check_op(F.linear, lambda x, w, b: x @ w.T + b, [x, w, b])
    else:
        check_op(F.linear, lambda x, w: x @ w.T, [x, w])


def np_attention(q, k, v, mask=None, scale=None):
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return np.exp(np_log_softmax(scores)) @ v


def _qkv(rng, B, NH, Tq, Tk, hs):
    return [
        rng.standard_normal((B, NH, Tq, hs)),
        rng.standard_normal((B, NH, Tk, hs)),
        rng.standard_normal((B, NH, Tk, hs)),
    ]


@FAST
@given(
    B=st.integers(1, 2), NH=st.integers(1, 2), T=st.integers(1, 5), hs=st.integers(1, 4), seed=seeds
)
def test_attention_causal_fused_and_composed_paths(B, NH, T, hs, seed):
    rng = np.random.default_rng(seed)
    causal = np.tril(np.ones((T, T), bool))
    inputs = _qkv(rng, B, NH, T, T, hs)
    check_op(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        lambda q, k, v: np_attention(q, k, v, causal),
        inputs,
    )
    check_op(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=ag.tensor(causal)),
        lambda q, k, v: np_attention(q, k, v, causal),
        inputs,
    )
    check_op(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=0.3),
        lambda q, k, v: np_attention(q, k, v, scale=0.3),
        inputs,
    )


@FAST
@given(B=st.integers(1, 2), NKV=st.integers(1, 2), group=st.integers(2, 3), Tq=st.integers(1, 4),
       extra_keys=st.integers(0, 2), hs=st.integers(1, 3), seed=seeds)
def test_attention_grouped_query_heads(B, NKV, group, Tq, extra_keys, hs, seed):
    # k and v carry NKV heads, each read by `group` consecutive query heads; the NumPy side
    # repeats them, so the gradients of k and v sum over the group
    rng = np.random.default_rng(seed)
    Tk = Tq + extra_keys
    q = rng.standard_normal((B, NKV * group, Tq, hs))
    k, v = rng.standard_normal((2, B, NKV, Tk, hs))

    def np_gqa(q, k, v, mask):
        return np_attention(q, np.repeat(k, group, axis=1), np.repeat(v, group, axis=1), mask)

    check_op(F.causal_attention, lambda q, k, v: np_gqa(q, k, v, np.tril(np.ones((Tq, Tk), bool),
                                                                         Tk - Tq)), [q, k, v])
    top_left = np.tril(np.ones((Tq, Tk), bool))  # torch's is_causal with Tq < Tk
    check_op(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
             lambda q, k, v: np_gqa(q, k, v, top_left), [q, k, v])


def test_attention_rejects_mismatched_heads_without_enable_gqa():
    q, kv = ag.randn(1, 4, 3, 2), ag.randn(1, 2, 3, 2)
    with pytest.raises(ValueError, match="query has 4 heads and key 2.*enable_gqa=True"):
        F.scaled_dot_product_attention(q, kv, kv, is_causal=True)
    with pytest.raises(ValueError, match="query has 4 heads and key 3"):
        F.scaled_dot_product_attention(q, ag.randn(1, 3, 3, 2), ag.randn(1, 3, 3, 2), enable_gqa=True)
    with pytest.raises(ValueError, match="NKV dividing NH"):
        F.causal_attention(q, ag.randn(1, 3, 3, 2), ag.randn(1, 3, 3, 2))
    assert F.causal_attention(q, kv, kv).shape == (1, 4, 3, 2)


def test_attention_with_fewer_queries_than_keys_and_3d_inputs():
    rng = np.random.default_rng(3)
    inputs = _qkv(rng, 1, 2, 2, 5, 3)
    mask = np.tril(np.ones((2, 5), bool), 3)  # query i sees keys up to i + Tk - Tq
    check_op(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        lambda q, k, v: np_attention(q, k, v, np.tril(np.ones((2, 5), bool))),
        inputs,
    )
    check_op(F.causal_attention, lambda q, k, v: np_attention(q, k, v, mask), inputs)
    check_op(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
        np_attention,
        [a[0] for a in _qkv(rng, 1, 2, 3, 3, 2)],
    )


def np_rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w


@FAST
@given(lead=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3), C=st.integers(1, 6),
       seed=seeds)
def test_rms_norm(lead, C, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(lead + (C,)), rng.standard_normal(C)
    check_op(lambda t, w: F.rms_norm(t, C, w, eps=1e-5), lambda a, w: np_rms_norm(a, w, 1e-5),
             [x, w])
    check_op(lambda t: F.rms_norm(t, (C,), eps=1e-5), lambda a: np_rms_norm(a, 1.0, 1e-5), [x])


def np_rotary(x, theta):
    # each pair (x[j], x[j + half]) at position t as a complex number times exp(i·t·θ_j)
    half = x.shape[-1] // 2
    angles = np.arange(x.shape[1])[:, None] * theta[None, :]  # (T, half)
    z = (x[..., :half] + 1j * x[..., half:]) * np.exp(1j * angles)[None, :, None, :]
    return np.concatenate([z.real, z.imag], axis=-1)


@FAST
@given(B=st.integers(1, 2), T=st.integers(1, 4), NH=st.integers(1, 3), half=st.integers(1, 3),
       seed=seeds)
def test_rotary_embedding(B, T, NH, half, seed):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.1, 2.0, half)
    cos, sin = np.cos(np.outer(np.arange(T), theta)), np.sin(np.outer(np.arange(T), theta))
    check_op(lambda t: F.rotary_embedding(t, cos, sin), lambda a: np_rotary(a, theta),
             [rng.standard_normal((B, T, NH, 2 * half))])


@FAST
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), seed=seeds)
def test_swiglu(shape, seed):
    rng = np.random.default_rng(seed)
    gate, up = rng.uniform(-4, 4, shape), rng.standard_normal(shape)
    check_op(F.swiglu, lambda g, u: g / (1 + np.exp(-g)) * u, [gate, up])
    # gate and up as the halves of one projection's output
    half = shape[-1]
    check_op(F.swiglu, lambda x: x[..., :half] / (1 + np.exp(-x[..., :half])) * x[..., half:],
             [np.concatenate([gate, up], axis=-1)])


@FAST
@given(rows=st.lists(st.integers(1, 4), min_size=1, max_size=3), C=st.integers(1, 4), seed=seeds)
def test_cat_rows(rows, C, seed):
    rng = np.random.default_rng(seed)
    check_op(lambda *ws: F.cat_rows(ws), lambda *ws: np.concatenate(ws),
             [rng.standard_normal((n, C)) for n in rows])


def test_cat_rows_of_one_buffer_is_a_view_and_splits_the_gradient():
    buffer = np.arange(12.0).reshape(6, 2)
    a, b = ag.from_numpy(buffer[1:3]), ag.from_numpy(buffer[3:6])
    a.requires_grad_(), b.requires_grad_()
    joined = F.cat_rows([a, b])
    assert np.shares_memory(joined.data, buffer) and joined.shape == (5, 2)
    np.testing.assert_array_equal(joined.data, buffer[1:6])
    (joined * ag.tensor(np.arange(10.0).reshape(5, 2))).sum().backward()
    np.testing.assert_array_equal(a.grad.data, [[0, 1], [2, 3]])
    np.testing.assert_array_equal(b.grad.data, [[4, 5], [6, 7], [8, 9]])
    # rows out of order, or apart, are copied
    assert not np.shares_memory(F.cat_rows([b, a]).data, buffer)
    assert not np.shares_memory(F.cat_rows([ag.from_numpy(buffer[:1]), b]).data, buffer)


@FAST
@given(B=st.integers(1, 2), T=st.integers(1, 4), NKV=st.integers(1, 2), group=st.integers(1, 3),
       half=st.integers(1, 2), seed=seeds)
def test_rotary_self_attention(B, T, NKV, group, half, seed):
    # against rotating q and k (as complex numbers) and repeating each k/v head for its group
    rng = np.random.default_rng(seed)
    NH, hs = NKV * group, 2 * half
    theta = rng.uniform(0.1, 2.0, half)
    cos, sin = np.cos(np.outer(np.arange(T), theta)), np.sin(np.outer(np.arange(T), theta))

    def np_fn(qkv):
        heads = np.swapaxes(qkv, 1, 2)  # (B, NH + 2·NKV, T, hs)
        q = np.swapaxes(np_rotary(qkv[:, :, :NH], theta), 1, 2)
        k = np.swapaxes(np_rotary(qkv[:, :, NH:NH + NKV], theta), 1, 2)
        v = heads[:, NH + NKV:]
        y = np_attention(q, np.repeat(k, group, axis=1), np.repeat(v, group, axis=1),
                         np.tril(np.ones((T, T), bool)))
        return np.swapaxes(y, 1, 2).reshape(B, T, NH * hs)

    check_op(lambda t: F.rotary_self_attention(t, cos, sin, NH, NKV), np_fn,
             [rng.standard_normal((B, T, NH + 2 * NKV, hs))])


def test_llama_op_errors():
    x = ag.randn(2, 3, 1, 4)
    with pytest.raises(ValueError, match="rms_norm: normalized_shape"):
        F.rms_norm(x, 3)
    with pytest.raises(ValueError, match="cos and sin must be"):
        F.rotary_embedding(x, np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="swiglu: gate"):
        F.swiglu(x, ag.randn(2, 3, 1, 3))
    with pytest.raises(ValueError, match="swiglu: the last axis of"):
        F.swiglu(ag.randn(2, 3))
    with pytest.raises(ValueError, match="cat_rows: expected 2-D tensors of one width"):
        F.cat_rows([ag.randn(2, 3), ag.randn(2, 4)])
    with pytest.raises(ValueError, match=r"rotary_self_attention: qkv must be \(B, T"):
        F.rotary_self_attention(ag.randn(1, 2, 5, 4), np.ones((2, 2)), np.ones((2, 2)), 2, 2)
