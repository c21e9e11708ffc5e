"""safetensors files and Hugging Face GPT-2 weights, on synthetic files made here."""

import dataclasses
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alphagrad as ag
from alphagrad import nn
from alphagrad.nn import families
from alphagrad.nn.safetensors import SafetensorsError, read_header


def handmade_file(path, tensors, metadata=None):
    """A safetensors file written from the format's description, independently of the library."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, array) in tensors.items():
        blob = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_reads_a_handmade_file_including_bfloat16(tmp_path):
    path = tmp_path / "hand.safetensors"
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    bf16 = np.array([0x3F80, 0xC000, 0x4049], "<u2")  # 1.0, -2.0, 3.140625 as bfloat16 bits
    handmade_file(path, {"a": ("F32", a), "b": ("I64", np.array([7, -8])), "c": ("BF16", bf16)},
                  {"format": "pt"})
    loaded = nn.load_safetensors(path)
    np.testing.assert_array_equal(loaded["a"], a)
    assert loaded["b"].dtype == np.int64 and loaded["b"].tolist() == [7, -8]
    assert loaded["c"].dtype == np.float32 and loaded["c"].tolist() == [1.0, -2.0, 3.140625]
    assert read_header(path)[1] == {"format": "pt"}
    loaded["a"][0, 0] = 5  # writable


def test_save_load_round_trip_many_dtypes_and_shapes(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "f64": rng.standard_normal((2, 1, 4)),
        "f16": rng.standard_normal(7).astype(np.float16),
        "i32": rng.integers(-9, 9, (4,)).astype(np.int32),
        "u8": rng.integers(0, 255, (3, 3)).astype(np.uint8),
        "bool": rng.random(5) > 0.5,
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
        "strided": rng.standard_normal((4, 6)).astype(np.float32)[:, ::2],
    }
    path = tmp_path / "t.safetensors"
    nn.save_safetensors(path, tensors, {"step": "10"})
    loaded = nn.load_safetensors(path)
    assert set(loaded) == set(tensors)
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)
    header, metadata, start = read_header(path)
    assert metadata == {"step": "10"} and start % 8 == 0
    for name, entry in header.items():  # every tensor aligned to its item size
        assert entry["data_offsets"][0] % loaded[name].dtype.itemsize == 0


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="complex128"):
        nn.save_safetensors(tmp_path / "x", {"z": np.zeros(2, complex)})
    with pytest.raises(TypeError, match="metadata"):
        nn.save_safetensors(tmp_path / "x", {"a": np.zeros(2)}, {"step": 3})


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:5], "too short"),
    (lambda raw: struct.pack("<Q", 10**9) + raw[8:], "does not fit"),
    (lambda raw: raw[:8] + b"x" + raw[9:], "not valid JSON"),
    (lambda raw: raw[:-4], "offsets"),
    (lambda raw: raw.replace(b'"F32"', b'"Q32"'), "does not know"),
])
def test_damaged_files_get_errors_naming_them(tmp_path, damage, message):
    path = tmp_path / "w.safetensors"
    nn.save_safetensors(path, {"w": np.ones((2, 2), np.float32)})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SafetensorsError, match=message) as info:
        nn.load_safetensors(path)
    assert "w.safetensors" in str(info.value)


# ----------------------------------------------------------------------------- Hugging Face GPT-2
CONFIG = {"block_size": 8, "vocab_size": 17, "n_layer": 2, "n_head": 1, "n_embd": 64}
HF_BLOCK = {  # Hugging Face GPT-2's per-layer names and shapes, for n_embd C = 64
    "ln_1.weight": (64,), "ln_1.bias": (64,), "attn.c_attn.weight": (64, 192),
    "attn.c_attn.bias": (192,), "attn.c_proj.weight": (64, 64), "attn.c_proj.bias": (64,),
    "ln_2.weight": (64,), "ln_2.bias": (64,), "mlp.c_fc.weight": (64, 256), "mlp.c_fc.bias": (256,),
    "mlp.c_proj.weight": (256, 64), "mlp.c_proj.bias": (64,),
}


@pytest.fixture(scope="module")
def model():
    ag.manual_seed(0)
    return nn.GPT(nn.GPTConfig(**CONFIG))


def idx():
    return np.random.default_rng(1).integers(0, 17, (2, 8))


def test_to_hf_names_shapes_and_transposes(model):
    hf = model.to_hf_state_dict()
    expected = {"transformer.wte.weight": (17, 64), "transformer.wpe.weight": (8, 64),
                "transformer.ln_f.weight": (64,), "transformer.ln_f.bias": (64,),
                "lm_head.weight": (17, 64)}
    expected.update({f"transformer.h.{i}.{k}": s for i in range(2) for k, s in HF_BLOCK.items()})
    assert {k: v.shape for k, v in hf.items()} == expected
    ours = model.state_dict()
    np.testing.assert_array_equal(hf["transformer.h.1.mlp.c_fc.weight"],
                                  ours["transformer.h.1.mlp.c_fc.weight"].T)
    np.testing.assert_array_equal(hf["transformer.h.0.attn.c_attn.bias"],
                                  ours["transformer.h.0.attn.c_attn.bias"])


def test_from_hf_state_dict_round_trip_infers_config(model):
    hf = model.to_hf_state_dict()
    loaded = nn.GPT.from_hf_state_dict(hf)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded(idx())[0].data, model(idx())[0].data)


@pytest.mark.parametrize("activation, gelu_approximate",
                         [(None, "tanh"), ("gelu_new", "tanh"), ("gelu", "none")])
def test_hf_style_files_without_prefix_head_or_with_mask_buffers(model, tmp_path, activation,
                                                                 gelu_approximate):
    """What a Hugging Face folder holds: no ``transformer.`` prefix, no lm_head, mask buffers;
    ``activation_function`` picks the GELU form (GPT-2's tanh form when it is left out)."""
    model = nn.GPT(dataclasses.replace(model.config, gelu_approximate=gelu_approximate))
    hf = {k.removeprefix("transformer."): v for k, v in model.to_hf_state_dict().items()
          if k != "lm_head.weight"}
    for i in range(2):
        hf[f"h.{i}.attn.bias"] = np.tril(np.ones((8, 8), np.float32))[None, None]
        hf[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    folder = tmp_path / "gpt2-tiny"
    folder.mkdir()
    nn.save_safetensors(folder / "model.safetensors", hf, {"format": "pt"})
    (folder / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "vocab_size": 17, "n_positions": 8, "n_embd": 64, "n_layer": 2,
        "n_head": 1, "resid_pdrop": 0.1,
        **({"activation_function": activation} if activation else {})}))
    loaded = nn.GPT.from_pretrained(folder)
    assert loaded.config.dropout == 0.0 and loaded.config.n_head == 1
    assert loaded.config.gelu_approximate == gelu_approximate
    np.testing.assert_array_equal(loaded(idx())[0].data, model(idx())[0].data)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        nn.GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 17}))
    nn.save_safetensors(tmp_path / "model.safetensors", {"wte.weight": np.zeros((17, 64))})
    with pytest.raises(ValueError, match="lacks 'n_layer'"):
        nn.GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({
        "vocab_size": 17, "n_positions": 8, "n_embd": 64, "n_layer": 1, "n_head": 1,
        "activation_function": "relu"}))
    with pytest.raises(ValueError, match="activation_function 'relu'"):
        nn.GPT.from_pretrained(tmp_path)


def test_from_hf_needs_a_config_when_heads_cannot_be_inferred():
    ag.manual_seed(0)
    small = nn.GPT(nn.GPTConfig(block_size=4, vocab_size=5, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(ValueError, match="pass config"):
        nn.GPT.from_hf_state_dict(small.to_hf_state_dict())
    loaded = nn.GPT.from_hf_state_dict(small.to_hf_state_dict(), small.config)
    x = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(loaded(x)[0].data, small(x)[0].data)


def test_gpt_state_dict_through_safetensors(model, tmp_path):
    nn.save_safetensors(tmp_path / "m.safetensors", model.state_dict())
    ag.manual_seed(5)
    other = nn.GPT(nn.GPTConfig(**CONFIG))
    other.load_state_dict(nn.load_safetensors(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(other(idx())[0].data, model(idx())[0].data)


def _crafted_safetensors(path, header: bytes, data: bytes = b"\0" * 16) -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


ENTRY = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}


@pytest.mark.parametrize("header, message", [
    ({"w": {**ENTRY, "dtype": ["F32"]}}, "dtype"),
    ({"w": {**ENTRY, "data_offsets": ["0", "16"]}}, "data_offsets"),
    ({"w": {**ENTRY, "data_offsets": [0, 16, 32]}}, "data_offsets"),
    ({"w": {**ENTRY, "shape": ["2", 2]}}, "shape"),
    ({"w": {**ENTRY, "shape": [True, 2]}}, "shape"),
    ({"w": {**ENTRY, "shape": [2**20, 2**20]}}, "do not match its size"),
    ({"w": {**ENTRY, "shape": [0, 2**70], "data_offsets": [0, 0]}}, "shape"),
    ({"w": {**ENTRY, "shape": [1] * 33, "data_offsets": [0, 4]}}, "at most 32"),
    ({"w": [ENTRY]}, "malformed entry"),
    ({"w": {**ENTRY, "extra": 1}}, "malformed entry"),
    ({"w": ENTRY, "__metadata__": {"format": 1}}, "__metadata__"),
    ({"w": ENTRY, "__metadata__": []}, "__metadata__"),
])
def test_semantically_hostile_headers_get_errors_naming_the_file(tmp_path, header, message):
    path = tmp_path / "w.safetensors"
    _crafted_safetensors(path, json.dumps(header).encode())
    with pytest.raises(SafetensorsError, match=message) as info:
        nn.load_safetensors(path)
    assert "w.safetensors" in str(info.value)


def test_a_deeply_nested_header_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    _crafted_safetensors(path, b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(SafetensorsError, match="nested too deeply"):
        nn.load_safetensors(path)


def test_from_state_dict_gives_the_same_model_without_copying(model):
    sd = {k: v.copy() for k, v in model.state_dict().items()}
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    rebuilt = nn.GPT.from_state_dict(model.config, sd)
    assert rebuilt.transformer.h[1].mlp.c_fc.weight.data is sd["transformer.h.1.mlp.c_fc.weight"]
    assert rebuilt.lm_head.weight is rebuilt.transformer.wte.weight
    logits, _ = rebuilt(idx())
    expected, _ = model(idx())
    np.testing.assert_array_equal(logits.data, expected.data)


HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=4),
    st.lists(st.one_of(st.integers(-3, 2**62), st.text(max_size=2)), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(-3, 2**40), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["dtype", "shape", "data_offsets", "entry", "__metadata__"]),
       value=HOSTILE)
def test_property_semantically_hostile_safetensors_headers(tmp_path_factory, bounded_call, field,
                                                          value):
    """A header that is valid JSON with one hostile value: it loads, holding exactly what the
    file says, or fails with a SafetensorsError naming the file."""
    header = {"w": dict(ENTRY), "__metadata__": {"format": "pt"}}
    if field == "entry":
        header["w"] = value
    elif field == "__metadata__":
        header["__metadata__"] = value
    else:
        header["w"][field] = value
    path = tmp_path_factory.mktemp("st") / "h.safetensors"
    _crafted_safetensors(path, json.dumps(header).encode(), bytes(range(16)))
    try:
        with bounded_call():
            tensors = nn.load_safetensors(path)
    except SafetensorsError as e:
        assert "h.safetensors" in str(e)
        return
    assert sum(t.nbytes for t in tensors.values()) <= 16


# config.json fields of each family a crafted folder may set to a hostile value
HF_FIELDS = {
    "gpt2": ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner",
             "layer_norm_epsilon", "activation_function", "tie_word_embeddings", "model_type"],
    "llama": ["vocab_size", "max_position_embeddings", "hidden_size", "intermediate_size",
              "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
              "rope_theta", "rope_scaling", "rms_norm_eps", "tie_word_embeddings", "model_type"],
}


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory, model):
    """A small Hugging Face GPT-2 folder and a small Llama folder."""
    gpt2 = tmp_path_factory.mktemp("gpt2")
    nn.save_safetensors(gpt2 / "model.safetensors", model.to_hf_state_dict(), {"format": "pt"})
    (gpt2 / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "vocab_size": 17, "n_positions": 8, "n_embd": 64, "n_layer": 2,
         "n_head": 4}))
    llama = tmp_path_factory.mktemp("llama")
    nn.Llama(nn.LlamaConfig(vocab_size=17, block_size=8, n_layer=1, n_head=2, n_kv_head=1,
                            n_embd=16, intermediate_size=24)).save_pretrained(str(llama))
    return {"gpt2": gpt2, "llama": llama}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(HF_FIELDS)),
       value=st.one_of(HOSTILE, st.integers(0, 5000), st.integers(2**20, 2**40)))
def test_property_hostile_hf_configs(tmp_path_factory, bounded_call, hf_folders, data, kind,
                                     value):
    """A folder whose config.json has one hostile field loads a model made of the stored
    tensors, or fails with a ValueError naming the folder; within a memory and time bound,
    whatever size the config claims."""
    field = data.draw(st.sampled_from(HF_FIELDS[kind]))
    folder = tmp_path_factory.mktemp("crafted")
    weights = (hf_folders[kind] / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights)
    config = json.loads((hf_folders[kind] / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, field: value}))
    try:
        with bounded_call():
            loaded = families.from_pretrained(folder)
    except ValueError as e:
        assert folder.name in str(e), str(e)
        return
    assert sum(p.data.nbytes for p in loaded.parameters()) <= len(weights)
