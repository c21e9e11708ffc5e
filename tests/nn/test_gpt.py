"""The GPT end to end: an independent NumPy GPT (forward and hand-written backward), gradcheck
in float64, overfitting one batch, state-dict round trips, nanoGPT's names and errors."""

import math

import numpy as np
import pytest

import alphagrad as ag
from alphagrad import nn

TINY = {"block_size": 8, "vocab_size": 11, "n_layer": 2, "n_head": 2, "n_embd": 16}


def batch(config, B=3, T=None, seed=0):
    rng = np.random.default_rng(seed)
    T = T or config.block_size
    idx = rng.integers(0, config.vocab_size, (B, T))
    targets = rng.integers(0, config.vocab_size, (B, T))
    targets[0, 1] = -1  # ignored, as nanoGPT's loss ignores -1
    return idx, targets


# ----------------------------------------------------------------------------- NumPy reference
def ln_forward(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    return xhat * w + b, (xhat, rstd, w)


def ln_backward(dout, cache):
    xhat, rstd, w = cache
    g = dout * w
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, (dout * xhat).reshape(-1, w.size).sum(0), dout.reshape(-1, w.size).sum(0)


def gelu(x, approximate):
    if approximate == "none":  # x·Φ(x)
        return x * 0.5 * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def gelu_grad(x, approximate):
    if approximate == "none":  # Φ(x) + x·φ(x)
        return 0.5 * (1 + np.vectorize(math.erf)(x / np.sqrt(2))) \
            + x * np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi)
    t = np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * x**2)


def split_heads(a, n_head):  # (B, T, C) -> (B, NH, T, hs)
    B, T, C = a.shape
    return a.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def merge_heads(a):  # (B, NH, T, hs) -> (B, T, C)
    B, NH, T, hs = a.shape
    return a.transpose(0, 2, 1, 3).reshape(B, T, NH * hs)


def attention_forward(qkv, n_head):
    q, k, v = (split_heads(a, n_head) for a in np.split(qkv, 3, axis=-1))
    T, hs = q.shape[2], q.shape[3]
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)
    scores = np.where(np.tril(np.ones((T, T), bool)), scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return merge_heads(probs @ v), (q, k, v, probs, n_head)


def attention_backward(dout, cache):
    q, k, v, probs, n_head = cache
    dy = split_heads(dout, n_head)
    dv = probs.transpose(0, 1, 3, 2) @ dy
    dprobs = dy @ v.transpose(0, 1, 3, 2)
    dscores = probs * (dprobs - (dprobs * probs).sum(-1, keepdims=True)) / np.sqrt(q.shape[-1])
    dq, dk = dscores @ k, dscores.transpose(0, 1, 3, 2) @ q
    return np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)


def numpy_gpt(sd, idx, targets, n_layer, n_head, approximate="tanh"):
    """Loss and gradients of every state-dict entry, forward and backward written out by hand."""
    p = {k: v.astype(np.float64) for k, v in sd.items()}
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    B, T = idx.shape

    def linear(x, name):
        return x @ p[name + ".weight"].T + p[name + ".bias"]

    def linear_back(dout, x, name):
        grads[name + ".weight"] += dout.reshape(-1, dout.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        grads[name + ".bias"] += dout.reshape(-1, dout.shape[-1]).sum(0)
        return dout @ p[name + ".weight"]

    x = p["transformer.wte.weight"][idx] + p["transformer.wpe.weight"][:T]
    caches = []
    for i in range(n_layer):
        h = f"transformer.h.{i}."
        a, c_ln1 = ln_forward(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"])
        qkv = linear(a, h + "attn.c_attn")
        y, c_att = attention_forward(qkv, n_head)
        x1 = x + linear(y, h + "attn.c_proj")
        m, c_ln2 = ln_forward(x1, p[h + "ln_2.weight"], p[h + "ln_2.bias"])
        f = linear(m, h + "mlp.c_fc")
        x = x1 + linear(gelu(f, approximate), h + "mlp.c_proj")
        caches.append((a, c_ln1, y, c_att, m, c_ln2, f))
    xf, c_lnf = ln_forward(x, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"])
    logits = xf @ p["lm_head.weight"].T  # (B, T, V)
    flat, t = logits.reshape(B * T, -1), targets.reshape(-1)
    keep = t != -1
    lse = np.log(np.exp(flat - flat.max(1, keepdims=True)).sum(1)) + flat.max(1)
    loss = (lse - flat[np.arange(B * T), np.where(keep, t, 0)])[keep].mean()

    dflat = np.exp(flat - lse[:, None])
    dflat[np.arange(B * T), np.where(keep, t, 0)] -= 1
    dflat *= keep[:, None] / keep.sum()
    dlogits = dflat.reshape(logits.shape)
    grads["lm_head.weight"] += dflat.T @ xf.reshape(B * T, -1)
    dx, dw, db = ln_backward(dlogits @ p["lm_head.weight"], c_lnf)
    grads["transformer.ln_f.weight"] += dw
    grads["transformer.ln_f.bias"] += db
    for i in reversed(range(n_layer)):
        h = f"transformer.h.{i}."
        a, c_ln1, y, c_att, m, c_ln2, f = caches[i]
        dg = linear_back(dx, gelu(f, approximate), h + "mlp.c_proj")
        dm = linear_back(dg * gelu_grad(f, approximate), m, h + "mlp.c_fc")
        dx1, dw, db = ln_backward(dm, c_ln2)
        grads[h + "ln_2.weight"] += dw
        grads[h + "ln_2.bias"] += db
        dx1 = dx1 + dx
        dy = linear_back(dx1, y, h + "attn.c_proj")
        da = linear_back(attention_backward(dy, c_att), a, h + "attn.c_attn")
        dx, dw, db = ln_backward(da, c_ln1)
        grads[h + "ln_1.weight"] += dw
        grads[h + "ln_1.bias"] += db
        dx = dx + dx1
    np.add.at(grads["transformer.wte.weight"], idx, dx)
    grads["transformer.wpe.weight"][:T] += dx.sum(0)
    tied = grads["transformer.wte.weight"] + grads["lm_head.weight"]
    grads["transformer.wte.weight"] = grads["lm_head.weight"] = tied
    return logits, loss, grads


@pytest.fixture
def one_thread():
    """Thousands of tiny forwards: thread start-up would dominate them on a busy machine."""
    previous = ag.get_num_threads()
    ag.set_num_threads(1)
    yield
    ag.set_num_threads(previous)


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("approximate", ["tanh", "none"])
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 2e-4)])
def test_forward_and_backward_match_the_numpy_gpt(dtype, rtol, approximate):
    ag.manual_seed(0)
    config = nn.GPTConfig(**TINY, gelu_approximate=approximate)
    model = nn.GPT(config).to(dtype)
    for p in model.parameters():  # non-trivial biases and norms, so their gradients matter
        p.data += 0.1 * np.random.default_rng(p.numel()).standard_normal(p.shape).astype(dtype)
    idx, targets = batch(config)
    logits, loss = model(idx, targets)
    loss.backward()
    ref_logits, ref_loss, ref_grads = numpy_gpt(model.state_dict(), idx, targets, 2, 2,
                                                approximate)
    np.testing.assert_allclose(logits.data, ref_logits, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(loss.item(), ref_loss, rtol=rtol)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.data, ref_grads[name], rtol=rtol * 10, atol=rtol,
                                   err_msg=name)


def test_gradcheck_tiny_gpt_float64(one_thread):
    ag.manual_seed(1)
    config = nn.GPTConfig(block_size=4, vocab_size=5, n_layer=1, n_head=2, n_embd=8)
    model = nn.GPT(config).double()
    idx, targets = batch(config, B=2)
    assert ag.gradcheck(lambda *params: model(idx, targets)[1], list(model.parameters()))


def test_gradcheck_dropout_path_float64(one_thread):
    """With dropout the attention runs the composed path; a reseeded mask makes it a function."""
    config = nn.GPTConfig(block_size=4, vocab_size=5, n_layer=1, n_head=2, n_embd=8, dropout=0.3)
    ag.manual_seed(2)
    model = nn.GPT(config).double()
    idx, targets = batch(config, B=2)

    def loss(*params):
        ag.manual_seed(5)
        return model(idx, targets)[1]

    attn = model.transformer.h[0].attn  # the weights whose gradients flow through the dropout
    checked = [attn.c_attn.weight, attn.c_attn.bias, attn.c_proj.weight]
    model.requires_grad_(False)
    for p in checked:
        p.requires_grad = True
    assert ag.gradcheck(loss, checked)
    model.eval()
    a = model(idx, targets)[1].item()
    model.train()
    assert model(idx, targets)[1].item() != a  # dropout acts only in training


def test_overfits_one_batch(one_thread):
    ag.manual_seed(0)
    config = nn.GPTConfig(block_size=16, vocab_size=16, n_layer=2, n_head=2, n_embd=32)
    model = nn.GPT(config)
    idx, targets = batch(config, B=4)
    opt = model.configure_optimizers(weight_decay=0.0, learning_rate=1e-2, betas=(0.9, 0.99))
    for _ in range(150):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_state_dict_round_trip_gives_identical_logits():
    config = nn.GPTConfig(**TINY)
    ag.manual_seed(0)
    a = nn.GPT(config)
    ag.manual_seed(1)
    b = nn.GPT(config)
    idx, _ = batch(config)
    assert not np.array_equal(a(idx)[0].data, b(idx)[0].data)
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a(idx)[0].data, b(idx)[0].data)


def test_nanogpt_names_tying_and_init():
    ag.manual_seed(0)
    model = nn.GPT(nn.GPTConfig(block_size=32, vocab_size=50, n_layer=3, n_head=2, n_embd=32,
                                bias=False))
    sd = model.state_dict()
    block = ["ln_1.weight", "attn.c_attn.weight", "attn.c_proj.weight", "ln_2.weight",
             "mlp.c_fc.weight", "mlp.c_proj.weight"]
    assert list(sd) == (["transformer.wte.weight", "transformer.wpe.weight"]
                        + [f"transformer.h.{i}.{n}" for i in range(3) for n in block]
                        + ["transformer.ln_f.weight", "lm_head.weight"])
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.num_parameters() == sum(v.size for k, v in sd.items() if k != "lm_head.weight")
    assert model.get_num_params() == model.num_parameters() - 32 * 32
    assert abs(sd["transformer.wte.weight"].std() - 0.02) < 0.002
    assert abs(sd["transformer.h.0.mlp.c_proj.weight"].std() - 0.02 / np.sqrt(6)) < 0.001
    assert np.all(sd["transformer.h.0.ln_1.weight"] == 1)


def test_last_position_logits_without_targets():
    ag.manual_seed(0)
    config = nn.GPTConfig(**TINY)
    model = nn.GPT(config)
    idx, targets = batch(config, T=5)
    logits, loss = model(idx)
    assert loss is None and logits.shape == (3, 1, 11)
    full, _ = model(idx, targets[:, :5])
    np.testing.assert_allclose(logits.data[:, 0], full.data[:, -1], rtol=1e-5, atol=1e-6)


def test_crop_block_size_keeps_short_sequences_unchanged():
    ag.manual_seed(0)
    model = nn.GPT(nn.GPTConfig(**TINY))
    idx, _ = batch(model.config, T=4)
    before = model(idx)[0].data
    model.crop_block_size(4)
    assert model.config.block_size == 4 and model.state_dict()["transformer.wpe.weight"].shape == (4, 16)
    np.testing.assert_array_equal(model(idx)[0].data, before)
    with pytest.raises(ValueError, match="block_size 4"):
        model(batch(model.config, T=5)[0])


def test_configure_optimizers_splits_decay_groups():
    model = nn.GPT(nn.GPTConfig(**TINY))
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=3e-4, betas=(0.9, 0.95),
                                     device_type="cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert opt.param_groups[0]["lr"] == 3e-4 and opt.param_groups[0]["betas"] == (0.9, 0.95)


def test_input_errors():
    model = nn.GPT(nn.GPTConfig(**TINY))
    with pytest.raises(ValueError, match="does not fit block_size 8"):
        model(np.zeros((1, 9), np.int64))
    with pytest.raises(ValueError, match="token id 11 is out of range for vocab_size 11"):
        model(np.array([[1, 11]]))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="targets have shape"):
        model(np.zeros((2, 4), np.int64), np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="not divisible"):
        nn.GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="gelu_approximate must be 'tanh' or 'none', got 'erf'"):
        nn.GPTConfig(gelu_approximate="erf")


def test_all_logits_without_targets_are_every_position():
    ag.manual_seed(0)
    model = nn.GPT(nn.GPTConfig(**TINY))
    idx, targets = batch(model.config)
    with_targets, _ = model(idx, targets)
    every, loss = model(idx, all_logits=True)
    last, _ = model(idx)
    assert loss is None and every.shape == (3, 8, 11) and last.shape == (3, 1, 11)
    np.testing.assert_allclose(every.data, with_targets.data, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(every.data[:, -1:], last.data, rtol=1e-6, atol=1e-6)


def test_loss_over_no_targets_is_zero_with_zero_gradients():
    ag.manual_seed(0)
    model = nn.GPT(nn.GPTConfig(**TINY))
    idx, _ = batch(model.config)
    _, loss = model(idx, np.full(idx.shape, -1))
    assert loss.item() == 0.0  # a mean over nothing: 0, where torch's cross_entropy gives NaN
    loss.backward()
    assert all(np.all(p.grad.data == 0) for p in model.parameters())
