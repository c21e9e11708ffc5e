"""Llama end to end: an independent NumPy Llama (forward and hand-written backward) in float64,
the KV cache, the state-dict names, config errors, training on one batch."""

import json
import subprocess
import sys

import numpy as np
import pytest

import alphagrad as ag
from alphagrad.nn import Llama, LlamaConfig
from alphagrad.nn.llama import rope_inv_freq

TINY = {"vocab_size": 13, "block_size": 8, "n_layer": 2, "n_head": 4, "n_embd": 16,
        "intermediate_size": 24, "rope_theta": 100.0, "norm_eps": 1e-5}


def batch(config, B=2, T=None, seed=0):
    rng = np.random.default_rng(seed)
    T = T or config.block_size
    idx = rng.integers(0, config.vocab_size, (B, T))
    targets = rng.integers(0, config.vocab_size, (B, T))
    targets[0, 1] = -1  # ignored
    return idx, targets


# ----------------------------------------------------------------------------- NumPy reference
def rms_forward(x, w, eps):
    r = 1 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return x * r * w, (x, r, w)


def rms_backward(dout, cache):
    x, r, w = cache
    g = dout * w
    dx = g * r - x * r**3 * (g * x).mean(-1, keepdims=True)
    return dx, (dout * x * r).reshape(-1, w.size).sum(0)


def rotate(x, angles):
    """Pairs (x[j], x[j + hs/2]) as complex numbers times exp(i·angle): HF's half-split RoPE."""
    half = x.shape[-1] // 2
    z = (x[..., :half] + 1j * x[..., half:]) * np.exp(1j * angles)
    return np.concatenate([z.real, z.imag], axis=-1)


def heads(a, n):  # (B, T, n·hs) -> (B, n, T, hs)
    B, T, C = a.shape
    return a.reshape(B, T, n, C // n).transpose(0, 2, 1, 3)


def merge(a):  # (B, n, T, hs) -> (B, T, n·hs)
    B, n, T, hs = a.shape
    return a.transpose(0, 2, 1, 3).reshape(B, T, n * hs)


def np_llama(params, config, idx, targets):
    """Loss and every parameter's gradient (same names as the state dict), in float64."""
    c = config
    B, T = idx.shape
    NH, NKV, hs = c.n_head, c.n_kv_head, c.n_embd // c.n_head
    group = NH // NKV
    angles = np.arange(T)[:, None] * rope_inv_freq(c)[None, :]  # (T, hs/2)
    p = {k: v.astype(np.float64) for k, v in params.items()}
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    mask = np.tril(np.ones((T, T), bool))

    x = p["model.embed_tokens.weight"][idx]  # (B, T, C)
    caches = []
    for i in range(c.n_layer):
        L = f"model.layers.{i}."
        h, ln1 = rms_forward(x, p[L + "input_layernorm.weight"], c.norm_eps)
        q = rotate(heads(h @ p[L + "self_attn.q_proj.weight"].T, NH), angles)  # (B, NH, T, hs)
        k = rotate(heads(h @ p[L + "self_attn.k_proj.weight"].T, NKV), angles)  # (B, NKV, T, hs)
        v = heads(h @ p[L + "self_attn.v_proj.weight"].T, NKV)
        kr, vr = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # query head j: kv j//g
        s = np.where(mask, q @ kr.swapaxes(-1, -2) / np.sqrt(hs), -np.inf)
        att = np.exp(s - s.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = merge(att @ vr)
        x1 = x + y @ p[L + "self_attn.o_proj.weight"].T
        h2, ln2 = rms_forward(x1, p[L + "post_attention_layernorm.weight"], c.norm_eps)
        gate, up = h2 @ p[L + "mlp.gate_proj.weight"].T, h2 @ p[L + "mlp.up_proj.weight"].T
        sig = 1 / (1 + np.exp(-gate))
        act = gate * sig * up
        x2 = x1 + act @ p[L + "mlp.down_proj.weight"].T
        caches.append((h, ln1, q, kr, vr, att, y, x1, h2, ln2, gate, up, sig, act))
        x = x2
    xf, lnf = rms_forward(x, p["model.norm.weight"], c.norm_eps)
    head = "lm_head.weight" if "lm_head.weight" in p else "model.embed_tokens.weight"
    logits = xf @ p[head].T  # (B, T, V)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    kept = targets != -1
    n = kept.sum()
    loss = -logp[kept, targets[kept]].sum() / n

    dlogits = np.exp(logp)
    dlogits[kept, targets[kept]] -= 1
    dlogits *= kept[..., None] / n
    grads[head] += dlogits.reshape(-1, c.vocab_size).T @ xf.reshape(-1, c.n_embd)
    dx, grads["model.norm.weight"] = rms_backward(dlogits @ p[head], lnf)
    for i in reversed(range(c.n_layer)):
        L = f"model.layers.{i}."
        h, ln1, q, kr, vr, att, y, x1, h2, ln2, gate, up, sig, act = caches[i]
        # MLP
        grads[L + "mlp.down_proj.weight"] = dx.reshape(-1, c.n_embd).T @ act.reshape(-1, act.shape[-1])
        dact = dx @ p[L + "mlp.down_proj.weight"]
        dup = dact * gate * sig
        dgate = dact * up * sig * (1 + gate * (1 - sig))
        flat_h2 = h2.reshape(-1, c.n_embd)
        grads[L + "mlp.gate_proj.weight"] = dgate.reshape(-1, dgate.shape[-1]).T @ flat_h2
        grads[L + "mlp.up_proj.weight"] = dup.reshape(-1, dup.shape[-1]).T @ flat_h2
        dh2 = dgate @ p[L + "mlp.gate_proj.weight"] + dup @ p[L + "mlp.up_proj.weight"]
        dn, grads[L + "post_attention_layernorm.weight"] = rms_backward(dh2, ln2)
        dx1 = dx + dn
        # attention
        grads[L + "self_attn.o_proj.weight"] = dx1.reshape(-1, c.n_embd).T @ y.reshape(-1, c.n_embd)
        dy = heads(dx1 @ p[L + "self_attn.o_proj.weight"], NH)  # (B, NH, T, hs)
        datt = dy @ vr.swapaxes(-1, -2)
        dvr = att.swapaxes(-1, -2) @ dy
        ds = att * (datt - (datt * att).sum(-1, keepdims=True)) / np.sqrt(hs)
        dq = ds @ kr
        dkr = ds.swapaxes(-1, -2) @ q
        dk = dkr.reshape(B, NKV, group, T, hs).sum(2)  # the query heads sharing a kv head add up
        dv = dvr.reshape(B, NKV, group, T, hs).sum(2)
        dq, dk = rotate(dq, -angles), rotate(dk, -angles)  # a rotation's transpose is its inverse
        flat_h = h.reshape(-1, c.n_embd)
        dh = 0
        for name, d in (("q_proj", dq), ("k_proj", dk), ("v_proj", dv)):
            d = merge(d)
            grads[L + f"self_attn.{name}.weight"] = d.reshape(-1, d.shape[-1]).T @ flat_h
            dh = dh + d @ p[L + f"self_attn.{name}.weight"]
        dn, grads[L + "input_layernorm.weight"] = rms_backward(dh, ln1)
        dx = dx1 + dn
    np.add.at(grads["model.embed_tokens.weight"], idx.reshape(-1), dx.reshape(-1, c.n_embd))
    return loss, logits, grads


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
@pytest.mark.parametrize("tie", [True, False])
def test_forward_and_backward_match_numpy_llama(n_kv_head, tie):
    config = LlamaConfig(**TINY, n_kv_head=n_kv_head, tie_embeddings=tie)
    ag.manual_seed(0)
    model = Llama(config).double()
    rng = np.random.default_rng(1)
    for p in model.parameters():  # norms away from one, weights larger: every path matters
        p.data += rng.normal(0, 0.1, p.shape)
    idx, targets = batch(config)
    logits, loss = model(idx, targets)
    loss.backward()
    params = {k: v for k, v in model.state_dict().items() if k not in model.tied_weights()}
    want_loss, want_logits, want_grads = np_llama(params, config, idx, targets)
    np.testing.assert_allclose(logits.data, want_logits, rtol=1e-10, atol=1e-12)
    assert loss.item() == pytest.approx(want_loss, rel=1e-12)
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads.keys() == want_grads.keys()
    for name, want in want_grads.items():
        np.testing.assert_allclose(grads[name], want, rtol=1e-8, atol=1e-12, err_msg=name)


def test_float32_forward_is_close_to_float64():
    config = LlamaConfig(**TINY, n_kv_head=2)
    ag.manual_seed(1)
    model = Llama(config)
    idx, targets = batch(config)
    logits, _ = model(idx, targets)
    _, want_logits, _ = np_llama(model.state_dict(), config, idx, targets)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits.data, want_logits, atol=1e-5)


def test_state_dict_names_are_hugging_face_llamas():
    model = Llama(LlamaConfig(**TINY, n_kv_head=2, tie_embeddings=True))
    names = set(model.state_dict())
    layer = {f"model.layers.1.{n}.weight" for n in (
        "input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
        "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    assert layer <= names
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} <= names
    assert len(names) == 3 + 9 * TINY["n_layer"]
    assert model.state_dict()["model.layers.0.self_attn.k_proj.weight"].shape == (8, 16)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.tied_weights() == {"lm_head.weight": "model.embed_tokens.weight"}
    assert Llama(LlamaConfig(**TINY, n_kv_head=2, tie_embeddings=False)).tied_weights() == {}


@pytest.mark.parametrize("n_kv_head", [4, 2])
def test_kv_cache_generation_equals_full_recompute(n_kv_head):
    config = LlamaConfig(**TINY, n_kv_head=n_kv_head)
    ag.manual_seed(2)
    model = Llama(config)
    prompt = batch(config, B=2, T=3)[0]
    cached = model.generate(prompt, 12, temperature=0.9, top_k=5, seed=3)  # past block_size 8
    plain = model.generate(prompt, 12, temperature=0.9, top_k=5, seed=3, use_cache=False)
    np.testing.assert_array_equal(cached.data, plain.data)
    assert list(model.stream(prompt[:1], 5, temperature=0)) == \
        model.generate(prompt[:1], 5, temperature=0).data[0, 3:].tolist()


def test_training_overfits_one_batch():
    config = LlamaConfig(**TINY, n_kv_head=2)
    ag.manual_seed(3)
    model = Llama(config)
    optimizer = model.configure_optimizers(0.0, 1e-2, (0.9, 0.99))
    idx, targets = batch(config)
    first = None
    for _ in range(60):
        _, loss = model(idx, targets)
        first = first if first is not None else loss.item()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert first == pytest.approx(np.log(TINY["vocab_size"]), rel=0.05)
    assert loss.item() < 0.3


def test_llama3_rope_scaling_frequencies():
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    config = LlamaConfig(**{**TINY, "n_embd": 64, "n_head": 2}, n_kv_head=2,
                         rope_scaling=scaling)
    plain = rope_inv_freq(LlamaConfig(**{**TINY, "n_embd": 64, "n_head": 2}, n_kv_head=2))
    scaled = rope_inv_freq(config)
    wavelen = 2 * np.pi / plain
    long, short = wavelen > 64 / 1.0, wavelen < 64 / 4.0
    np.testing.assert_allclose(scaled[long], plain[long] / 8)  # slowed by the factor
    np.testing.assert_allclose(scaled[short], plain[short])  # kept
    mid = ~long & ~short
    assert mid.any() and np.all((scaled[mid] < plain[mid]) & (scaled[mid] > plain[mid] / 8))


@pytest.mark.parametrize("change, message", [
    ({"n_kv_head": 3}, "n_head=4 is not a multiple of n_kv_head=3"),
    ({"n_embd": 12}, "heads of an even size"),
    ({"n_layer": 0}, r"n_layer must be an int in \[1, 1024\]"),
    ({"vocab_size": 1 << 40}, "vocab_size must be an int"),
    ({"norm_eps": 0.0}, "norm_eps must be a positive number"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling .* is not supported"),
])
def test_config_errors(change, message):
    with pytest.raises(ValueError, match=message):
        LlamaConfig(**{**TINY, "n_kv_head": 2, **change})


def test_forward_errors():
    model = Llama(LlamaConfig(**TINY, n_kv_head=2))
    with pytest.raises(ValueError, match="token id 13 is out of range"):
        model(np.array([[1, 13]]))
    with pytest.raises(ValueError, match="length 9 does not fit block_size 8"):
        model(np.zeros((1, 9), np.int64))
    with pytest.raises(ValueError, match=r"Llama: targets have shape \(1, 2\)"):
        model(np.zeros((1, 3), np.int64), np.zeros((1, 2), np.int64))


LOAD_CRAFTED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from alphagrad.nn import Llama
try:
    Llama.from_pretrained(sys.argv[1])
except ValueError as e:
    print(e)
"""


def test_a_folder_whose_config_claims_a_larger_model_fails_before_allocating(tmp_path):
    Llama(LlamaConfig(**TINY, n_kv_head=2)).save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    # about 7 billion parameters (28 GB of float32) claimed for a few kilobytes of weights
    config.update(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, head_dim=128)
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = subprocess.run([sys.executable, "-c", LOAD_CRAFTED, str(tmp_path)], timeout=60,
                         capture_output=True, text=True, check=True).stdout
    assert "shape mismatches" in out and "vs model (13, 4096)" in out


def test_fused_projections_keep_checkpoints_and_resume_exact(tmp_path):
    # q/k/v and gate/up run as one GEMM each over weights packed into one buffer; a checkpoint
    # holding each weight as its own array (as written before the packing) still loads, and
    # training resumes from it exactly as the original model continues
    from alphagrad.autograd.ops.nn import joined_rows
    from alphagrad.train.checkpoint import load_checkpoint, save_checkpoint

    config = LlamaConfig(**TINY, n_kv_head=2, tie_embeddings=False)
    idx, targets = batch(config)
    ag.manual_seed(0)
    model = Llama(config)
    opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95))

    def step(m, o):
        _, loss = m(idx, targets)
        loss.backward()
        o.step()
        o.zero_grad()
        return loss.item()

    step(model, opt)
    attn = model.model.layers[0].self_attn
    assert joined_rows([attn.q_proj.weight.data, attn.k_proj.weight.data,
                        attn.v_proj.weight.data]) is not None
    state = {name: array.copy() for name, array in model.state_dict().items()}  # separate arrays
    save_checkpoint(tmp_path / "old.ckpt", model_kind="llama", model_config=vars(config).copy(),
                    model_state=state, optimizer=opt.state_dict())
    ckpt = load_checkpoint(tmp_path / "old.ckpt")
    resumed = Llama.from_state_dict(LlamaConfig.from_dict(ckpt.model_config), ckpt.model_state)
    resumed_opt = resumed.configure_optimizers(0.1, 1e-2, (0.9, 0.95))
    resumed_opt.load_state_dict(ckpt.optimizer)
    assert step(resumed, resumed_opt) == step(model, opt)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], array, err_msg=name)
    # weights replaced by .to() are packed again at the next forward
    resumed.double()
    np.testing.assert_allclose(resumed(idx, targets)[1].item(), model(idx, targets)[1].item(),
                               rtol=1e-5)
