"""Hugging Face GPT-2 folders against ``transformers`` itself: every config variant GPT2Config
offers either loads to the same logits or is refused by name."""

import json

import numpy as np
import pytest

from alphagrad.nn import GPT

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

SMALL = {"vocab_size": 37, "n_positions": 16, "n_embd": 32, "n_layer": 3, "n_head": 4,
         "initializer_range": 0.2}  # wide init: each variant moves the logits visibly


def hf_folder(path, **variant):
    """A random GPT2LMHeadModel saved by transformers (model.safetensors, config.json)."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**SMALL, **variant)).eval()
    model.save_pretrained(path)
    return model


def hf_logits(model, idx):
    with torch.no_grad():
        return model(torch.from_numpy(idx)).logits.data


IDX = np.random.default_rng(0).integers(0, 37, (2, 16))
VARIANTS = [
    {"tie_word_embeddings": False},
    {"scale_attn_by_inverse_layer_idx": True},
    {"scale_attn_weights": False},
    {"layer_norm_epsilon": 1e-2},
    {"n_inner": 48},
    {"activation_function": "gelu"},
    {"reorder_and_upcast_attn": True},  # precision only: the same model
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: next(iter(v)))
def test_each_config_variant_gives_transformers_logits(tmp_path, variant):
    theirs = hf_folder(tmp_path, **variant)
    ours = GPT.from_pretrained(str(tmp_path))
    logits, _ = ours(IDX, all_logits=True)
    expected = hf_logits(theirs, IDX)
    np.testing.assert_allclose(logits.data, expected, rtol=1e-4, atol=1e-4)
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    # the variant matters: the same weights under GPT-2's defaults compute something else
    plain = transformers.GPT2LMHeadModel(transformers.GPT2Config(**SMALL)).eval()
    if "n_inner" not in variant:
        plain.load_state_dict(theirs.state_dict(), strict=False)
        plain.tie_weights()
        moved = np.abs(hf_logits(plain, IDX) - expected).max()
        assert moved > 1e-3 or variant == {"reorder_and_upcast_attn": True}


def test_untied_head_keeps_both_matrices(tmp_path):
    theirs = hf_folder(tmp_path, tie_word_embeddings=False)
    ours = GPT.from_pretrained(str(tmp_path))
    assert ours.lm_head.weight is not ours.transformer.wte.weight
    np.testing.assert_array_equal(ours.lm_head.weight.data, theirs.lm_head.weight.detach().numpy())
    np.testing.assert_array_equal(ours.transformer.wte.weight.data,
                                  theirs.transformer.wte.weight.detach().numpy())
    assert ours.tied_weights() == {}


@pytest.mark.parametrize("field, value, message", [
    ("add_cross_attention", True, "cross-attention"),
    ("pruned_heads", {"0": [1]}, "pruned attention heads"),
    ("model_type", "gpt_neo", "not GPT-2"),
    ("rotary_dim", 8, "rotary_dim"),
    ("activation_function", "relu", "activation_function 'relu'"),
])
def test_variants_it_cannot_build_are_refused_by_name(tmp_path, field, value, message):
    hf_folder(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {field: value}))
    with pytest.raises(ValueError, match=message):
        GPT.from_pretrained(str(tmp_path))


def test_exported_variant_loads_in_transformers(tmp_path):
    """The other direction: an untied, rescaled alphagrad GPT exported as a GPT-2 folder."""
    from click.testing import CliRunner

    from alphagrad.cli import main

    hf_folder(tmp_path / "in", tie_word_embeddings=False, scale_attn_by_inverse_layer_idx=True,
              layer_norm_epsilon=1e-3, n_inner=48)
    ckpt = tmp_path / "m.ckpt"
    runner = CliRunner()
    assert runner.invoke(main, ["import-hf", str(tmp_path / "in"), "-o", str(ckpt)]).exit_code == 0
    result = runner.invoke(main, ["export", str(ckpt), "--format", "hf", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    ours = GPT.from_pretrained(str(tmp_path / "in"))
    np.testing.assert_allclose(hf_logits(again, IDX), ours(IDX, all_logits=True)[0].data,
                               rtol=1e-4, atol=1e-4)
