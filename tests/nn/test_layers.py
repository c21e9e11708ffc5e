"""Layers and init against NumPy written from the math, and gradients against finite differences."""

import numpy as np
import pytest

import alphagrad as ag
from alphagrad import nn

RNG = np.random.default_rng(0)


def randn(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


def test_linear_forward_backward_match_numpy():
    ag.manual_seed(0)
    layer = nn.Linear(5, 3)
    x = ag.tensor(randn(2, 4, 5, dtype=np.float32), requires_grad=True)
    g = randn(2, 4, 3, dtype=np.float32)
    w, b = layer.weight.data, layer.bias.data
    y = layer(x)
    np.testing.assert_allclose(y.data, x.data @ w.T + b, rtol=1e-5, atol=1e-6)
    y.backward(g)
    g2, x2 = g.reshape(-1, 3), x.data.reshape(-1, 5)
    np.testing.assert_allclose(x.grad.data, g @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.weight.grad.data, g2.T @ x2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.bias.grad.data, g2.sum(0), rtol=1e-5, atol=1e-5)


def test_linear_init_is_fan_in_uniform_and_bias_optional():
    ag.manual_seed(3)
    layer = nn.Linear(100, 50)
    bound = 1 / np.sqrt(100)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.weight.data).max() > 0.9 * bound
    assert layer.weight.shape == (50, 100) and layer.bias.shape == (50,)
    assert nn.Linear(4, 2, bias=False).bias is None
    assert nn.Linear(4, 2, dtype="float64").weight.dtype == np.float64


def test_embedding_gathers_rows_and_scatters_repeated_ids():
    emb = nn.Embedding(6, 4)
    idx = np.array([[1, 3, 1], [5, 1, 0]])
    out = emb(idx)
    np.testing.assert_array_equal(out.data, emb.weight.data[idx])
    g = randn(2, 3, 4, dtype=np.float32)
    out.backward(g)
    expected = np.zeros((6, 4), np.float32)
    np.add.at(expected, idx, g)
    np.testing.assert_allclose(emb.weight.grad.data, expected, rtol=1e-6)


def _layer_norm_reference(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out = (x - mean) / np.sqrt(var + eps) * w
    return out + b if b is not None else out


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_forward_and_gradcheck(bias):
    ln = nn.LayerNorm(6, bias=bias).double()
    ln.weight.data[:] = randn(6)
    if bias:
        ln.bias.data[:] = randn(6)
    x = ag.tensor(randn(3, 6), requires_grad=True)
    expected = _layer_norm_reference(x.data, ln.weight.data, ln.bias.data if bias else None)
    np.testing.assert_allclose(ln(x).data, expected, rtol=1e-10, atol=1e-12)
    assert ag.gradcheck(lambda x, *p: ln(x), [x, *ln.parameters()])
    assert [n for n, _ in ln.named_parameters()] == (["weight", "bias"] if bias else ["weight"])


def test_linear_gradcheck_float64():
    layer = nn.Linear(4, 3, dtype="float64")
    x = ag.tensor(randn(2, 4), requires_grad=True)
    assert ag.gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])


def test_gelu_tanh_matches_formula():
    x = randn(50)
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(nn.GELU("tanh")(ag.tensor(x)).data, expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")


def test_dropout_scales_survivors_and_is_identity_in_eval():
    ag.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = ag.ones(100_000)
    y = drop(x).data
    zero = y == 0
    assert abs(zero.mean() - 0.25) < 0.01
    np.testing.assert_allclose(y[~zero], 1 / 0.75, rtol=1e-6)
    drop.eval()
    assert drop(x) is x
    assert nn.Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(1.5)


def test_init_helpers_are_seeded_and_have_the_right_moments():
    p = nn.Parameter(np.empty((200, 200), np.float32))
    ag.manual_seed(7)
    nn.init.normal_(p, mean=1.0, std=0.02)
    first = p.data.copy()
    assert abs(first.mean() - 1.0) < 1e-3 and abs(first.std() - 0.02) < 1e-3
    ag.manual_seed(7)
    nn.init.normal_(p, mean=1.0, std=0.02)
    np.testing.assert_array_equal(p.data, first)
    nn.init.uniform_(p, -2.0, 3.0)
    assert p.data.min() >= -2.0 and p.data.max() < 3.0 and abs(p.data.mean() - 0.5) < 0.05
    nn.init.zeros_(p)
    assert not p.data.any()
    nn.init.ones_(p)
    assert np.all(p.data == 1)
