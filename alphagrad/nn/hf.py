"""Hugging Face GPT-2 weight names ↔ nanoGPT's, without network access.

Hugging Face stores the four projection matrices as ``Conv1D`` weights, (in, out): they are
transposed into ``Linear``'s (out, in). Its attention-mask buffers (``attn.bias``,
``attn.masked_bias``) hold no weights and are dropped. Its ``model.safetensors`` files name
tensors without the ``transformer.`` prefix and leave out the tied ``lm_head.weight``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from alphagrad.nn.safetensors import load_safetensors

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")
GPT2_HEAD_SIZE = 64  # every GPT-2 size has 64-wide heads
HF_ACTIVATION = {"tanh": "gelu_new", "none": "gelu"}  # GPTConfig.gelu_approximate -> config.json
GELU_FORMS = {**{hf_name: form for form, hf_name in HF_ACTIVATION.items()},
              "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}  # and back, with HF's aliases


def _array(value: Any) -> np.ndarray:
    return np.asarray(getattr(value, "data", value))


def from_hf(state_dict: Mapping[str, Any], tied: bool = True) -> dict[str, np.ndarray]:
    """A Hugging Face GPT-2 state dict under nanoGPT's names, in ``Linear`` layout. ``tied``:
    ``lm_head.weight`` is ``wte``'s, as transformers ties them (GPT-2 files leave it out)."""
    out = {}
    for key, value in state_dict.items():
        name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
        if name.endswith(MASK_BUFFERS):
            continue
        array = _array(value)
        out[name] = np.ascontiguousarray(array.T) if name.endswith(CONV1D) else array
    if tied and "transformer.wte.weight" in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def to_hf(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """nanoGPT-named weights under Hugging Face GPT-2's names, Conv1D weights transposed."""
    return {name: np.ascontiguousarray(_array(value).T) if name.endswith(CONV1D) else _array(value)
            for name, value in state_dict.items()}


def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The GPTConfig fields that GPT-2 weights imply (heads assumed 64 wide, as GPT-2's)."""
    sd = from_hf(state_dict, tied=False)
    for key in ("transformer.wte.weight", "transformer.wpe.weight"):
        if key not in sd:
            raise ValueError(f"from_hf_state_dict: no {key} among the keys; is this GPT-2?")
    vocab_size, n_embd = sd["transformer.wte.weight"].shape
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    if n_embd % GPT2_HEAD_SIZE:
        raise ValueError(f"from_hf_state_dict: n_embd={n_embd} is not a multiple of GPT-2's head "
                         f"size {GPT2_HEAD_SIZE}; pass config=GPTConfig(...) with n_head")
    fc = sd.get("transformer.h.0.mlp.c_fc.weight")
    return {"block_size": sd["transformer.wpe.weight"].shape[0], "vocab_size": vocab_size,
            "n_layer": max(layers) + 1 if layers else 0, "n_head": n_embd // GPT2_HEAD_SIZE,
            "n_embd": n_embd, "bias": "transformer.ln_f.bias" in sd,
            "n_inner": fc.shape[0] if fc is not None and fc.shape[0] != 4 * n_embd else None,
            "tie_word_embeddings": "lm_head.weight" not in sd or bool(np.array_equal(
                sd["lm_head.weight"], sd["transformer.wte.weight"]))}


# config.json fields that do not change what the network computes: dropout rates and init (used
# in training only), the GPT2DoubleHeadsModel's summary head, token ids, generation defaults and
# bookkeeping that transformers writes. (reorder_and_upcast_attn only changes the precision of
# the attention scores under float16; alphagrad's are float32.)
NEUTRAL_FIELDS = frozenset((
    "resid_pdrop", "embd_pdrop", "attn_pdrop", "initializer_range", "reorder_and_upcast_attn",
    "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
    "summary_first_dropout", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
    "decoder_start_token_id", "forced_bos_token_id", "forced_eos_token_id", "use_cache",
    "return_dict", "output_hidden_states", "output_attentions", "output_scores",
    "return_dict_in_generate", "torchscript", "torch_dtype", "dtype", "use_bfloat16",
    "tf_legacy_loss", "chunk_size_feed_forward", "is_decoder", "tie_encoder_decoder",
    "cross_attention_hidden_size", "max_length", "min_length", "do_sample", "early_stopping",
    "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
    "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
    "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens", "architectures", "finetuning_task", "id2label", "label2id",
    "tokenizer_class", "prefix", "task_specific_params", "problem_type", "_name_or_path",
    "transformers_version", "_commit_hash", "_attn_implementation",
    "_attn_implementation_autoset", "attn_implementation", "gradient_checkpointing",
))
MODEL_FIELDS = frozenset((
    "model_type", "n_ctx", "n_positions", "vocab_size", "n_layer", "n_head", "n_embd",
    "n_inner", "activation_function", "layer_norm_epsilon", "tie_word_embeddings",
    "scale_attn_weights", "scale_attn_by_inverse_layer_idx", "add_cross_attention",
    "is_encoder_decoder", "pruned_heads",
))  # read by gpt_config_fields below


def gpt_config_fields(hf_config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """GPTConfig fields for a Hugging Face ``GPT2Config`` (config.json as a dict).

    Every field is read: those that shape the network map onto GPTConfig, those that do not
    (``NEUTRAL_FIELDS``) are passed over, and a variant alphagrad does not build (cross-attention,
    pruned heads, another model type) or a field it does not know is refused by name, so a
    model never loads to compute something else.
    """
    def refuse(what: str) -> ValueError:
        return ValueError(f"from_pretrained: {source} {what}; alphagrad's GPT cannot hold it")

    if hf_config.get("model_type", "gpt2") != "gpt2":
        raise refuse(f"describes a {hf_config['model_type']!r} model, not GPT-2")
    unknown = sorted(set(hf_config) - NEUTRAL_FIELDS - MODEL_FIELDS)
    if unknown:
        raise ValueError(f"from_pretrained: {source} has fields alphagrad does not know: "
                         f"{', '.join(unknown)}; if they leave the model unchanged, remove them")
    if hf_config.get("add_cross_attention") or hf_config.get("is_encoder_decoder"):
        raise refuse("asks for cross-attention layers (an encoder-decoder's decoder)")
    if hf_config.get("pruned_heads"):
        raise refuse(f"has pruned attention heads {hf_config['pruned_heads']}")
    try:
        fields = {"block_size": hf_config.get("n_positions", hf_config.get("n_ctx")),
                  "vocab_size": hf_config["vocab_size"], "n_layer": hf_config["n_layer"],
                  "n_head": hf_config["n_head"], "n_embd": hf_config["n_embd"], "bias": True}
    except KeyError as e:
        raise ValueError(f"from_pretrained: {source} lacks {e}; is this a GPT-2 config?") from None
    activation = hf_config.get("activation_function", "gelu_new")  # GPT-2's default
    if not isinstance(activation, str) or activation not in GELU_FORMS:
        raise refuse(f"asks for activation_function {activation!r} (alphagrad's GPT has "
                     f"{', '.join(GELU_FORMS)})")
    return fields | {
        "gelu_approximate": GELU_FORMS[activation],
        "n_inner": hf_config.get("n_inner"),
        "layer_norm_eps": hf_config.get("layer_norm_epsilon", 1e-5),
        "tie_word_embeddings": hf_config.get("tie_word_embeddings", True),
        "scale_attn_weights": hf_config.get("scale_attn_weights", True),
        "scale_attn_by_inverse_layer_idx": hf_config.get("scale_attn_by_inverse_layer_idx", False),
    }


def gpt2_config(fields: Mapping[str, Any], end_of_text_id: int | None = None) -> dict[str, Any]:
    """A Hugging Face GPT-2 config.json (as a dict) for a GPTConfig's fields; the bos and eos
    ids are the tokenizer's end-of-text token, or null (never GPT-2's 50256 by default)."""
    if not fields.get("bias", True):
        raise ValueError("Hugging Face GPT-2 has biases; a model with bias=False cannot be "
                         "exported as hf (use --format safetensors)")
    block = fields["block_size"]
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
            "vocab_size": fields["vocab_size"], "n_positions": block, "n_ctx": block,
            "n_embd": fields["n_embd"], "n_layer": fields["n_layer"], "n_head": fields["n_head"],
            "n_inner": fields.get("n_inner"),
            "activation_function": HF_ACTIVATION[fields.get("gelu_approximate", "tanh")],
            "layer_norm_epsilon": fields.get("layer_norm_eps", 1e-5),
            "tie_word_embeddings": fields.get("tie_word_embeddings", True),
            "scale_attn_weights": fields.get("scale_attn_weights", True),
            "scale_attn_by_inverse_layer_idx": fields.get("scale_attn_by_inverse_layer_idx", False),
            "bos_token_id": end_of_text_id, "eos_token_id": end_of_text_id,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


def read_folder(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(GPTConfig fields, state dict) from a Hugging Face GPT-2 folder (config.json and
    model.safetensors)."""
    config_path = os.path.join(folder, "config.json")
    weights_path = os.path.join(folder, "model.safetensors")
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"from_pretrained: {path} not found; a Hugging Face GPT-2 "
                                    "folder holds config.json and model.safetensors")
    with open(config_path, "rb") as f:
        try:
            hf_config = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"from_pretrained: {config_path} is not valid JSON "
                             f"({e or 'nested too deeply'})") from None
    if type(hf_config) is not dict:  # json.load gives exactly a dict for an object
        raise ValueError(f"from_pretrained: {config_path} holds a JSON "
                         f"{type(hf_config).__name__}, not an object; is this a GPT-2 config?")
    return gpt_config_fields(hf_config, config_path), load_safetensors(weights_path)
