import math
import os
import struct
import subprocess
import sys
import zlib

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagrad import _atomic as atomic
from alphagrad.tensor import random as agt
from alphagrad.train.checkpoint import (
    CheckpointError,
    CheckpointManager,
    checkpoint_info,
    encode_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def make_fields(seed=0):
    rng = np.random.default_rng(seed)
    wte = rng.standard_normal((5, 4)).astype(np.float32)
    state = {
        "transformer.wte.weight": wte,
        "w64": rng.standard_normal((2, 3)),
        "i64": rng.integers(-2**62, 2**62, size=(4,), dtype=np.int64),
        "i32": rng.integers(-100, 100, size=(2, 2), dtype=np.int32),
        "u16": np.array([0, 65535, 7], dtype=np.uint16),
        "u8": np.arange(6, dtype=np.uint8).reshape(3, 2),
        "mask": np.array([[True, False], [False, True]]),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "lm_head.weight": wte,
    }
    agt.manual_seed(seed)
    agt.generator().random(3)
    return {
        "model_kind": "gpt",
        "model_config": {"n_layer": 2, "n_embd": 4, "bias": True, "dropout": 0.0},
        "model_state": state,
        "tied": {"lm_head.weight": "transformer.wte.weight"},
        "optimizer": {"kind": "adamw", "lr": 1e-3, "betas": (0.9, 0.99), "step": np.int64(7),
                   "state": {0: {"m": rng.standard_normal(5), "v": np.ones((2, 2), np.float32)},
                             1: {"m": None}}},
        "train_state": {"step": 7, "tokens_seen": 2**40, "best_val_loss": float("inf"),
                     "rng": agt.get_rng_state(), "loader": {"offsets": np.arange(3)}},
        "tokenizer": {"kind": "bpe", "merges": [[b"a", b"b"], [b"ab", b"c"]], "special": {}},
        "metrics": {"val_loss": 2.5, "train_loss": 2.25},
    }


@pytest.fixture(scope="module")
def valid_bytes():
    return encode_checkpoint(**make_fields())


def assert_tree_equal(a, b):
    if isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(b, dict):
        assert isinstance(a, dict) and list(a) == list(b)
        for k in b:
            assert_tree_equal(a[k], b[k])
    elif isinstance(b, (list, tuple)):
        assert isinstance(a, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_tree_equal(x, y)
    else:
        assert a == b and type(a) is type(b.item() if isinstance(b, np.generic) else b)


def test_round_trip(tmp_path):
    fields = make_fields()
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, **fields)
    ckpt = load_checkpoint(path)
    assert ckpt.model_kind == "gpt" and ckpt.version == 1 and ckpt.library_version
    assert ckpt.model_config == fields["model_config"]
    assert_tree_equal(ckpt.model_state, fields["model_state"])
    for array in ckpt.model_state.values():
        assert array.flags.writeable and array.flags.c_contiguous
    assert ckpt.model_state["lm_head.weight"] is ckpt.model_state["transformer.wte.weight"]
    assert ckpt.tied == fields["tied"]
    assert_tree_equal(ckpt.optimizer, fields["optimizer"])
    assert_tree_equal(ckpt.train_state, fields["train_state"])
    assert_tree_equal(ckpt.tokenizer, fields["tokenizer"])
    assert ckpt.metrics == fields["metrics"]


def test_rng_state_resumes_the_same_draws(tmp_path):
    agt.manual_seed(3)
    agt.generator().random(5)
    save_checkpoint(tmp_path / "r.ckpt", model_kind="m", model_config={}, model_state={},
                    train_state={"rng": agt.get_rng_state()})
    expected = agt.generator().random(4)
    agt.manual_seed(99)
    agt.set_rng_state(load_checkpoint(tmp_path / "r.ckpt").train_state["rng"])
    np.testing.assert_array_equal(agt.generator().random(4), expected)


def test_layout_matches_the_documented_format(valid_bytes):
    top = msgpack.unpackb(valid_bytes, raw=False, strict_map_key=False)
    assert list(top) == ["magic", "version", "library_version", "model", "metrics",
                         "train_state", "tied", "tokenizer", "tensors", "optimizer", "crc32"]
    assert top["magic"] == "alphagrad-checkpoint" and top["version"] == 1
    assert "lm_head.weight" not in top["tensors"]
    wte = make_fields()["model_state"]["transformer.wte.weight"]
    record = top["tensors"]["transformer.wte.weight"]
    assert record["dtype"] == "float32" and record["shape"] == [5, 4]
    assert record["data"] == wte.astype("<f4").tobytes()
    assert record["crc32"] == zlib.crc32(wte.astype("<f4").tobytes())
    assert top["crc32"] == zlib.crc32(valid_bytes[:-4])
    assert top["optimizer"]["state"][0]["v"]["__tensor__"]["shape"] == [2, 2]


def repack(top: dict) -> bytes:
    """An independent writer of the documented layout: ordered map, final crc32 of the prefix."""
    items = [(k, v) for k, v in top.items() if k != "crc32"]
    body = msgpack.Packer().pack_map_header(len(items) + 1)
    body += b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in items)
    body += msgpack.packb("crc32") + b"\xce"
    return body + struct.pack(">I", zlib.crc32(body))


def edited(valid_bytes, edit):
    top = msgpack.unpackb(valid_bytes, raw=False, strict_map_key=False)
    edit(top)
    return repack(top)


def test_repack_reproduces_the_writer(valid_bytes):
    assert edited(valid_bytes, lambda top: None) == valid_bytes


def set_version(top):
    top["version"] = 2


def set_dtype(top):
    top["tensors"]["u8"]["dtype"] = "complex64"


def set_shape(top):
    top["tensors"]["u8"]["shape"] = [4, 2]


def set_crc(top):
    top["tensors"]["u8"]["crc32"] ^= 1


def set_impossible_empty_shape(top):
    top["tensors"]["empty"]["shape"] = [0, 2**63]  # no bytes, yet no array can have it


def drop_field(top):
    del top["metrics"]


def set_kind(top):
    top["model"]["kind"] = 3


def tie_to_missing(top):
    top["tied"]["x"] = "nope"


@pytest.mark.parametrize("edit, message", [
    (set_version, "written by a newer alphagrad (version 2"),
    (set_dtype, "'u8' has unsupported dtype 'complex64'"),
    (set_shape, "damaged: at tensor 'u8': 6 bytes for shape (4, 2)"),
    (set_crc, "damaged: at tensor 'u8' (checksum mismatch)"),
    (set_impossible_empty_shape, "'empty' has invalid shape [0, 9223372036854775808]"),
    (drop_field, "unexpected fields"),
    (set_kind, "model.kind has type int"),
    (tie_to_missing, "tied alias 'x' points to a missing tensor"),
])
def test_structural_errors_name_the_file(tmp_path, valid_bytes, edit, message):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(edited(valid_bytes, edit))
    with pytest.raises(CheckpointError, match=r"bad\.ckpt") as info:
        load_checkpoint(path)
    assert message in str(info.value)


def test_foreign_missing_truncated_and_damaged_files(tmp_path, valid_bytes):
    cases = {
        "missing.ckpt": (None, "does not exist"),
        "text.ckpt": (b"hello world\n", "is not an alphagrad checkpoint"),
        "json.ckpt": (b'{"magic": "alphagrad-checkpoint"}', "is not an alphagrad checkpoint"),
        "other.ckpt": (msgpack.packb({"magic": "safetensors"}), "is not an alphagrad checkpoint"),
        "empty.ckpt": (b"", "is truncated"),
        "short.ckpt": (valid_bytes[:10], "is truncated"),
        "cut.ckpt": (valid_bytes[:-100], "the file may be incomplete"),
        "extra.ckpt": (valid_bytes + b"\x00", "1 unexpected bytes at the end"),
    }
    for name, (content, message) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")) as info:
            load_checkpoint(tmp_path / name)
        assert message in str(info.value), name
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path)


def test_damage_is_located(tmp_path, valid_bytes):
    data = bytearray(valid_bytes)
    wte = make_fields()["model_state"]["transformer.wte.weight"].astype("<f4").tobytes()
    data[valid_bytes.index(wte) + 3] ^= 0x10
    (tmp_path / "t.ckpt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged: at tensor 'transformer.wte.weight'"):
        load_checkpoint(tmp_path / "t.ckpt")
    data = bytearray(valid_bytes)
    data[valid_bytes.index(msgpack.packb(2.5))+ 8] ^= 0x01  # metrics.val_loss's last byte
    (tmp_path / "m.ckpt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch outside the tensor data"):
        load_checkpoint(tmp_path / "m.ckpt")


def test_save_rejects_what_it_cannot_store(tmp_path):
    base = {"model_kind": "m", "model_config": {}, "model_state": {"w": np.zeros(2)}}
    with pytest.raises(TypeError, match=r"model_state\['o'\] has dtype object"):
        save_checkpoint(tmp_path / "x", **{**base, "model_state": {"o": np.array([None])}})
    with pytest.raises(TypeError, match="complex"):
        save_checkpoint(tmp_path / "x", **base, optimizer={"z": np.zeros(2, np.complex64)})
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        save_checkpoint(tmp_path / "x", **base, train_state={"s": 2**70})
    with pytest.raises(ValueError, match="reserved key"):
        save_checkpoint(tmp_path / "x", **base, train_state={"__tensor__": 1})
    with pytest.raises(TypeError, match="cannot hold"):
        save_checkpoint(tmp_path / "x", **base, metrics={"f": object()})
    with pytest.raises(ValueError, match="not an untied tensor"):
        save_checkpoint(tmp_path / "x", **base, tied={"v": "missing"})
    with pytest.raises(ValueError, match="holds different values"):
        save_checkpoint(tmp_path / "x", **{**base, "model_state": {"w": np.zeros(2),
                                                                   "v": np.ones(2)}},
                        tied={"v": "w"})
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fuzz_truncation(tmp_path_factory, valid_bytes, data):
    cut = data.draw(st.integers(0, len(valid_bytes) - 1))
    path = tmp_path_factory.mktemp("fuzz") / "c.ckpt"
    path.write_bytes(valid_bytes[:cut])
    with pytest.raises(CheckpointError, match=r"c\.ckpt"):
        load_checkpoint(path)
    try:
        checkpoint_info(path)
    except CheckpointError:
        pass


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fuzz_bit_flips(tmp_path_factory, valid_bytes, data):
    position = data.draw(st.integers(0, len(valid_bytes) - 1))
    bit = data.draw(st.integers(0, 7))
    damaged = bytearray(valid_bytes)
    damaged[position] ^= 1 << bit
    path = tmp_path_factory.mktemp("fuzz") / "c.ckpt"
    path.write_bytes(bytes(damaged))
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        assert "c.ckpt" in str(e)
    else:  # only acceptable if nothing that matters changed
        fields = make_fields()
        assert_tree_equal(ckpt.model_state, fields["model_state"])
        assert_tree_equal(ckpt.optimizer, fields["optimizer"])
        assert_tree_equal(ckpt.train_state, fields["train_state"])
    try:
        checkpoint_info(path)
    except CheckpointError:
        pass


def test_checkpoint_info_reads_the_small_fields(tmp_path):
    fields = make_fields()
    save_checkpoint(tmp_path / "a.ckpt", **fields)
    info = checkpoint_info(tmp_path / "a.ckpt")
    assert info["model_kind"] == "gpt" and info["model_config"] == fields["model_config"]
    assert info["metrics"] == fields["metrics"] and info["version"] == 1
    assert_tree_equal(info["train_state"], fields["train_state"])


def boom(*args, **kwargs):
    raise OSError("simulated crash")


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_crash_mid_write_keeps_the_old_checkpoint(tmp_path, monkeypatch, where):
    old = make_fields(seed=1)
    save_checkpoint(tmp_path / "c.ckpt", **old)
    monkeypatch.setattr(atomic.os, where, boom)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path / "c.ckpt", **make_fields(seed=2))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["c.ckpt"]
    assert_tree_equal(load_checkpoint(tmp_path / "c.ckpt").model_state, old["model_state"])


def test_atomic_text_writer(tmp_path):
    atomic.atomic_write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    with pytest.raises(RuntimeError), atomic.atomic_writer(tmp_path / "t.txt", "w") as f:
        f.write("partial")
        raise RuntimeError("stop")
    assert os.listdir(tmp_path) == ["t.txt"]
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    with pytest.raises(ValueError, match="mode must be"), atomic.atomic_writer(tmp_path / "t", "a"):
        pass


def test_manager_keeps_the_last_k_and_the_best(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=3)
    assert manager.latest() is None and manager.best() is None
    manager.folder.mkdir()
    (manager.folder / "step-junk.ckpt").write_bytes(b"")
    for step in range(1, 7):
        fields = make_fields()
        fields["train_state"] = {"step": step}
        path = manager.save(step * 100, is_best=step in (2, 5), **fields)
        assert path.name == f"step-{step * 100:08d}.ckpt"
    names = sorted(p.name for p in manager.folder.iterdir())
    assert names == ["best.ckpt", "step-00000400.ckpt", "step-00000500.ckpt",
                     "step-00000600.ckpt", "step-junk.ckpt"]
    assert manager.latest().name == "step-00000600.ckpt"
    assert load_checkpoint(manager.best()).train_state == {"step": 5}
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointManager(tmp_path, keep_last=0)


def test_nesting_is_bounded(tmp_path):
    nested: object = 1.0
    for _ in range(80):
        nested = [nested]
    save_checkpoint(tmp_path / "deep.ckpt", model_kind="gpt", model_config={}, model_state={},
                    metrics={"deep": nested})
    with pytest.raises(CheckpointError, match=r"deep\.ckpt .*nested more than 64 levels"):
        load_checkpoint(tmp_path / "deep.ckpt")
    # far deeper than msgpack decodes: a bare list nested 100,000 times where metrics belong
    raw = encode_checkpoint(model_kind="gpt", model_config={}, model_state={})
    at = raw.index(msgpack.packb("metrics")) + len(msgpack.packb("metrics"))
    (tmp_path / "deeper.ckpt").write_bytes(raw[:at] + b"\x91" * 100_000 + raw[at + 1:])
    with pytest.raises(CheckpointError, match=r"deeper\.ckpt .*nested too deeply"):
        load_checkpoint(tmp_path / "deeper.ckpt")


LOAD_AND_MEASURE = """
import sys
from alphagrad.train.checkpoint import load_checkpoint
def status(field):  # kB
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current size
ckpt = load_checkpoint(sys.argv[1])
print((status("VmHWM:") - before) * 1024)
"""


def test_loading_holds_about_one_copy_of_the_tensors(tmp_path):
    nbytes = 64 << 20
    weights = {f"w{i}": np.full(nbytes // 4 // 4, i, np.float32) for i in range(4)}  # 4 x 16 MB
    save_checkpoint(tmp_path / "big.ckpt", model_kind="gpt", model_config={},
                    model_state=weights)
    out = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, tmp_path / "big.ckpt"],
                         capture_output=True, text=True, check=True, timeout=120)
    peak = int(out.stdout)
    assert nbytes <= peak < 1.5 * nbytes, peak / nbytes


# Values a crafted file may put anywhere: wrong types, huge and negative sizes, deep nesting.
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=4),
    st.binary(max_size=8), st.lists(st.integers(-3, 2**40), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-3, 2**40), max_size=2),
    st.recursive(st.integers(0, 3), lambda inner: st.lists(inner, min_size=1, max_size=1),
                 max_leaves=200),
)
# Where a crafted file may put one: a tensor record's field, a tensor's name, a nested field.
PLACES = {
    "dtype": lambda top, v: top["tensors"]["u8"].__setitem__("dtype", v),
    "shape": lambda top, v: top["tensors"]["u8"].__setitem__("shape", v),
    "data": lambda top, v: top["tensors"]["u8"].__setitem__("data", v),
    "crc32": lambda top, v: top["tensors"]["u8"].__setitem__("crc32", v),
    "record": lambda top, v: top["tensors"].__setitem__("u8", v),
    "nested record": lambda top, v: top["optimizer"]["state"][0].__setitem__(
        "v", {"__tensor__": v}),
    "tied": lambda top, v: top["tied"].__setitem__("lm_head.weight", v),
    "model": lambda top, v: top.__setitem__("model", v),
    "config value": lambda top, v: top["model"]["config"].__setitem__("n_layer", v),
    "train_state": lambda top, v: top.__setitem__("train_state", v),
    "metrics value": lambda top, v: top["metrics"].__setitem__("val_loss", v),
    "version": lambda top, v: top.__setitem__("version", v),
}


@settings(max_examples=300, deadline=None)
@given(place=st.sampled_from(sorted(PLACES)), value=HOSTILE)
def test_property_semantically_hostile_checkpoints(tmp_path_factory, bounded_call, valid_bytes,
                                                   place, value):
    """Well-formed msgpack with a valid file checksum, but a hostile value in one place: it
    loads (and what it holds is what the file says) or fails with a CheckpointError naming the
    file; never another exception, and never an allocation the file's bytes do not back."""
    path = tmp_path_factory.mktemp("hostile") / "h.ckpt"
    path.write_bytes(edited(valid_bytes, lambda top: PLACES[place](top, value)))
    try:
        with bounded_call():
            ckpt = load_checkpoint(path)
    except CheckpointError as e:
        assert "h.ckpt" in str(e)
        return
    total = sum(a.nbytes for a in ckpt.model_state.values())
    assert total <= path.stat().st_size  # every array is backed by the file's own bytes
    if place == "metrics value":
        assert ckpt.metrics["val_loss"] == value or math.isnan(value)
