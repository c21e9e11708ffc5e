"""Llama against Hugging Face transformers' LlamaForCausalLM: folders written by save_pretrained
load with equal logits and identical greedy generations, and our export loads back into it."""

import json

import numpy as np
import pytest

from alphagrad.nn import Llama, LlamaConfig
from alphagrad.nn.llama_hf import config_fields

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SHAPE = {"vocab_size": 101, "hidden_size": 64, "intermediate_size": 112, "num_hidden_layers": 2,
         "num_attention_heads": 4, "max_position_embeddings": 48, "rms_norm_eps": 1e-5}
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}


def hf_model(seed=0, **changes):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(**{**SHAPE, **changes})
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from one, so a mixed-up norm weight shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def hf_logits(model, idx):
    with torch.no_grad():
        return model(torch.tensor(idx)).logits.numpy()


IDX = np.random.default_rng(0).integers(0, SHAPE["vocab_size"], (2, 40))


@pytest.mark.parametrize("n_kv_head, tie, rope", [
    (4, True, {}), (4, False, {"rope_theta": 500.0}), (2, True, {}), (1, False, {}),
    (2, False, {"rope_theta": 5e5, "rope_scaling": LLAMA3}),
])
def test_folder_loads_with_equal_logits_and_greedy_tokens(tmp_path, n_kv_head, tie, rope):
    reference = hf_model(num_key_value_heads=n_kv_head, tie_word_embeddings=tie, **rope)
    reference.save_pretrained(tmp_path)
    model = Llama.from_pretrained(tmp_path)
    assert model.config.n_kv_head == n_kv_head and model.config.tie_embeddings == tie
    logits, _ = model(IDX, np.zeros_like(IDX))
    np.testing.assert_allclose(logits.data, hf_logits(reference, IDX), atol=2e-5, rtol=1e-4)
    prompt = IDX[:1, :6]
    want = reference.generate(torch.tensor(prompt), max_new_tokens=24, do_sample=False,
                              eos_token_id=None, pad_token_id=0).numpy()
    np.testing.assert_array_equal(model.generate(prompt, 24, temperature=0).data, want)


@pytest.mark.parametrize("tie", [True, False])
def test_export_loads_back_into_transformers(tmp_path, tie):
    model = Llama(LlamaConfig(vocab_size=101, block_size=48, n_layer=2, n_head=4, n_kv_head=2,
                              n_embd=64, intermediate_size=112, tie_embeddings=tie))
    model.save_pretrained(tmp_path)
    reference = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert reference.config.tie_word_embeddings == tie
    logits, _ = model(IDX, np.zeros_like(IDX))
    np.testing.assert_allclose(hf_logits(reference, IDX), logits.data, atol=2e-5, rtol=1e-4)


def test_sharded_half_precision_folder(tmp_path):
    reference = hf_model(num_key_value_heads=2, tie_word_embeddings=False)
    reference.to(torch.bfloat16).save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
    model = Llama.from_pretrained(tmp_path)
    assert model.lm_head.weight.dtype == np.float32
    state = reference.float().state_dict()
    for name, array in model.state_dict().items():  # bf16 widens to float32 exactly
        np.testing.assert_array_equal(array, state[name].numpy(), err_msg=name)
    half = tmp_path / "fp16"
    reference.to(torch.float16).save_pretrained(half)
    weight = Llama.from_pretrained(half).state_dict()["model.norm.weight"]
    assert weight.dtype == np.float32
    np.testing.assert_array_equal(weight, reference.state_dict()["model.norm.weight"].float())


@pytest.mark.parametrize("change, message", [
    ({"attention_bias": True}, "attention_bias=True"),
    ({"mlp_bias": True}, "mlp_bias=True"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"model_type": "mistral"}, "model_type 'mistral'"),
    ({"sliding_window": 4096}, "sliding_window=4096"),
    ({"head_dim": 32}, "head_dim=32"),
    ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "rotary scaling 'dynamic'"),
    ({"rope_scaling": {"factor": 8.0}}, r"scaling fields \['factor'\] but no rope_type"),
    ({"hidden_size": None}, "lacks 'hidden_size'"),
])
def test_unsupported_configs_are_refused_by_name(tmp_path, change, message):
    base = {**SHAPE, "model_type": "llama", "num_key_value_heads": 2, "rope_theta": 1e4}
    with pytest.raises(ValueError, match=message):
        config_fields({**base, **change})


def test_missing_weights_and_bad_shards(tmp_path):
    hf_model().config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor"):
        Llama.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "../outside.safetensors"}}))
    with pytest.raises(ValueError, match="not a file name in the folder"):
        Llama.from_pretrained(tmp_path)
