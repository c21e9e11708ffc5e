import hashlib
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagrad.train import data as data_module
from alphagrad.train.checkpoint import load_checkpoint, save_checkpoint
from alphagrad.train.data import (
    BatchSampler,
    TokenDataset,
    iter_eval_batches,
    prepare,
    read_header,
    write_token_file,
)


class ByteTokenizer:
    """Tokens are the UTF-8 bytes, so the expected token stream is known exactly."""

    vocab_size = 256

    def __init__(self, name="bytes"):
        self.name = name

    def encode(self, text):
        return list(text.encode("utf-8"))

    def stable_prefix(self, text):
        return len(text)  # every byte is a token

    def fingerprint(self):
        return hashlib.sha256(self.name.encode()).hexdigest()

    def to_dict(self):
        return {"kind": self.name}


FP = ByteTokenizer().fingerprint()


def tokens_of(path):
    return bytes(TokenDataset(path).tokens.astype(np.uint8))


def test_token_file_layout_and_round_trip(tmp_path):
    tokens = np.array([0, 69999, 5, 65536], dtype=np.int64)
    write_token_file(tmp_path / "t.bin", tokens, vocab_size=70000, fingerprint=FP)
    raw = (tmp_path / "t.bin").read_bytes()
    assert len(raw) == 128 + 4 * 4
    assert raw[:8] == b"AGTOKENS"
    assert int.from_bytes(raw[8:12], "little") == 1
    assert int.from_bytes(raw[12:16], "little") == 4
    assert int.from_bytes(raw[16:24], "little") == 4
    assert int.from_bytes(raw[24:28], "little") == 70000
    assert raw[28:92] == FP.encode()
    assert raw[92:124] == bytes(32)
    assert int.from_bytes(raw[124:128], "little") == zlib.crc32(raw[:124])
    assert np.frombuffer(raw[128:], "<u4").tolist() == tokens.tolist()
    ds = TokenDataset(tmp_path / "t.bin")
    assert len(ds) == 4 and ds.vocab_size == 70000 and ds.fingerprint == FP
    assert ds.tokens.dtype == np.uint32 and ds.tokens.tolist() == tokens.tolist()
    write_token_file(tmp_path / "s.bin", [1, 2, 3], vocab_size=65536, fingerprint=FP)
    assert TokenDataset(tmp_path / "s.bin").tokens.dtype == np.uint16
    assert (tmp_path / "s.bin").stat().st_size == 128 + 3 * 2


def test_prepare_one_document_splits_at_the_nearest_line_break(tmp_path):
    lines = [f"line {i} " + "é" * (i % 5) + "\n" for i in range(200)]
    text = "".join(lines)
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    stats = prepare(tmp_path / "in.txt", ByteTokenizer(), tmp_path / "out", val_fraction=0.25)
    raw = text.encode("utf-8")
    ends = np.cumsum([len(line.encode()) for line in lines])
    cut = int(ends[np.argmin(np.abs(ends - round(len(raw) * 0.75)))])
    assert tokens_of(tmp_path / "out/train.bin") == raw[:cut]
    assert tokens_of(tmp_path / "out/val.bin") == raw[cut:]
    assert stats["train_tokens"] == cut and stats["val_tokens"] == len(raw) - cut
    assert stats["vocab_size"] == 256 and stats["dtype"] == "uint16"
    assert (tmp_path / "out/meta.json").exists()


def test_prepare_many_documents_splits_whole_documents(tmp_path):
    docs = [f"document {i}\n" * (i + 1) for i in range(12)]
    stats = prepare(docs, ByteTokenizer(), tmp_path / "a", val_fraction=0.2, seed=3)
    train, val = tokens_of(tmp_path / "a/train.bin"), tokens_of(tmp_path / "a/val.bin")
    in_val = [d for d in docs if d.encode() in val]
    in_train = [d for d in docs if d.encode() in train]
    assert sorted(in_val + in_train) == sorted(docs) and in_val and in_train
    assert val == "".join(in_val).encode() and train == "".join(in_train).encode()
    total = sum(len(d) for d in docs)
    assert abs(len(val) / total - 0.2) < 0.05
    assert stats["val_documents"] == len(in_val)
    prepare(docs, ByteTokenizer(), tmp_path / "b", val_fraction=0.2, seed=3)
    assert tokens_of(tmp_path / "b/val.bin") == val
    two = prepare(["ab" * 50, "cd"], ByteTokenizer(), tmp_path / "c", val_fraction=0.9)
    assert two["train_documents"] == 1 and two["val_documents"] == 1


def test_prepare_reads_folders_and_streams_in_small_chunks(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    texts = {"a.txt": "héllo wörld\n" * 30, "sub/b.txt": "x" * 500 + "\n€€€\n", ".hidden": "no"}
    for name, text in texts.items():
        (corpus / name).write_text(text, encoding="utf-8")
    reference = prepare(corpus, ByteTokenizer(), tmp_path / "ref", seed=1)
    monkeypatch.setattr(data_module, "_CHUNK_BYTES", 7)
    calls = []
    small = prepare(str(corpus), ByteTokenizer(), tmp_path / "small", seed=1,
                    progress=lambda done, total: calls.append((done, total)))
    assert small["train_tokens"] + small["val_tokens"] == len(
        (texts["a.txt"] + texts["sub/b.txt"]).encode())
    for split in ("train", "val"):
        assert tokens_of(tmp_path / f"small/{split}.bin") == tokens_of(tmp_path / f"ref/{split}.bin")
    assert small["documents"] == reference["documents"] == 2
    assert len(calls) > 20 and calls[-1][0] == calls[-1][1]
    assert np.all(np.diff([done for done, _ in calls]) > 0)


class Broken(ByteTokenizer):
    def __init__(self, fail_at=None, bad_id=None):
        super().__init__()
        self.calls, self.fail_at, self.bad_id = 0, fail_at, bad_id

    def encode(self, text):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return super().encode(text) + ([self.bad_id] if self.bad_id is not None else [])


def test_prepare_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1") * 4)
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match="corpus file .*nope.txt does not exist"):
        prepare(tmp_path / "nope.txt", tok, tmp_path / "o")
    with pytest.raises(ValueError, match="corpus is empty .*empty.txt"):
        prepare(tmp_path / "empty.txt", tok, tmp_path / "o")
    with pytest.raises(ValueError, match="corpus is empty"):
        prepare(["", ""], tok, tmp_path / "o")
    with pytest.raises(ValueError, match="latin1.txt is not UTF-8 text"):
        prepare(tmp_path / "latin1.txt", tok, tmp_path / "o")
    with pytest.raises(ValueError, match="text 0.*token id 256 is outside"):
        prepare("hello\nworld\n", Broken(bad_id=256), tmp_path / "o")
    with pytest.raises(ValueError, match=r"the val split \(<text 0>\) has 0 tokens"):
        prepare("ab", tok, tmp_path / "o")
    with pytest.raises(ValueError, match="val_fraction"):
        prepare("ab\ncd\n", tok, tmp_path / "o", val_fraction=1.0)
    bad = ByteTokenizer()
    bad.fingerprint = lambda: "abc"
    with pytest.raises(ValueError, match="64 hex characters"):
        prepare("ab\ncd\n", bad, tmp_path / "o")
    assert not (tmp_path / "o").exists() or sorted(os.listdir(tmp_path / "o")) == []


def test_interrupted_prepare_leaves_old_files_and_no_temp_files(tmp_path, monkeypatch):
    prepare("old text\n" * 50, ByteTokenizer(), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(data_module, "_CHUNK_BYTES", 16)
    with pytest.raises(KeyboardInterrupt):
        prepare("new text\n" * 50, Broken(fail_at=5), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_dataset_errors(tmp_path):
    write_token_file(tmp_path / "ok.bin", np.arange(10), vocab_size=256, fingerprint=FP)
    raw = (tmp_path / "ok.bin").read_bytes()
    cases = {
        "cut.bin": (raw[:-3], "is truncated: the header says 10 tokens"),
        "head.bin": (raw[:50], "is truncated: 50 bytes"),
        "long.bin": (raw + b"\0\0", "2 unexpected bytes"),
        "text.bin": (b"hello world" * 20, "not an alphagrad token file"),
        "flip.bin": (raw[:30] + bytes([raw[30] ^ 1]) + raw[31:], "damaged header"),
    }
    head = struct.pack("<8sIIQI64s32x", b"AGTOKENS", 2, 2, 10, 256, FP.encode())
    cases["new.bin"] = (head + struct.pack("<I", zlib.crc32(head)) + raw[128:],
                        "newer alphagrad (token file version 2")
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=name.replace(".", r"\.")) as info:
            TokenDataset(tmp_path / name)
        assert message in str(info.value), name
    ds = TokenDataset(tmp_path / "ok.bin")
    ds.check_tokenizer(ByteTokenizer())
    with pytest.raises(ValueError, match="ok.bin was prepared with tokenizer"):
        ds.check_tokenizer(ByteTokenizer("other"))


@pytest.fixture(scope="module")
def valid_token_file():
    tokens = np.arange(20) % 7
    header = struct.pack("<8sIIQI64s32x", b"AGTOKENS", 1, 2, 20, 7, FP.encode())
    return header + struct.pack("<I", zlib.crc32(header)) + tokens.astype("<u2").tobytes()


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fuzz_header_damage(tmp_path_factory, valid_token_file, data):
    damaged = bytearray(valid_token_file)
    if data.draw(st.booleans()):
        del damaged[data.draw(st.integers(0, len(damaged) - 1)):]
    else:
        damaged[data.draw(st.integers(0, 127))] ^= 1 << data.draw(st.integers(0, 7))
    path = tmp_path_factory.mktemp("fuzz") / "d.bin"
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"d\.bin"):
        read_header(path)


# A header with a valid checksum and one hostile field: huge, zero or mismatched sizes, a
# version or item size that does not exist, a fingerprint that is not hex.
HOSTILE_FIELDS = {
    "version": st.integers(0, 2**32 - 1),
    "itemsize": st.integers(0, 2**32 - 1),
    "count": st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 40)),
    "vocab_size": st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 10)),
    "fingerprint": st.binary(min_size=64, max_size=64),
}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), field=st.sampled_from(sorted(HOSTILE_FIELDS)))
def test_property_semantically_hostile_token_headers(tmp_path_factory, bounded_call, data, field):
    """It opens, its tokens exactly the file's bytes after the header, or fails with a ValueError
    naming the file; within a memory and time bound, whatever the header claims."""
    fields = {"version": 1, "itemsize": 2, "count": 20, "vocab_size": 7,
              "fingerprint": FP.encode(), field: data.draw(HOSTILE_FIELDS[field])}
    header = struct.pack("<8sIIQI64s32x", b"AGTOKENS", *fields.values())
    body = (np.arange(20) % 7).astype("<u2").tobytes()
    path = tmp_path_factory.mktemp("hostile") / "h.bin"
    path.write_bytes(header + struct.pack("<I", zlib.crc32(header)) + body)
    try:
        with bounded_call():
            dataset = TokenDataset(path)
    except ValueError as e:
        assert "h.bin" in str(e)
        return
    assert dataset.tokens.nbytes == len(body) and dataset.vocab_size == fields["vocab_size"]
    assert np.asarray(dataset.tokens).tobytes() == body


def test_the_fixture_is_valid(tmp_path, valid_token_file):
    (tmp_path / "v.bin").write_bytes(valid_token_file)
    assert TokenDataset(tmp_path / "v.bin").tokens.tolist() == (np.arange(20) % 7).tolist()


def arange_dataset(tmp_path, n):
    write_token_file(tmp_path / "r.bin", np.arange(n), vocab_size=max(n, 1), fingerprint=FP)
    return TokenDataset(tmp_path / "r.bin")


def test_batches_are_shifted_windows_over_every_offset(tmp_path):
    n, B, T = 40, 8, 5
    sampler = BatchSampler(arange_dataset(tmp_path, n), batch_size=B, block_size=T, seed=0)
    starts = []
    for _ in range(300):
        x, y = sampler.next()
        assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == np.int64
        assert x.flags.c_contiguous and y.flags.c_contiguous
        np.testing.assert_array_equal(x, x[:, :1] + np.arange(T))  # tokens are their positions
        np.testing.assert_array_equal(y, x + 1)
        starts += x[:, 0].tolist()
    assert sorted(set(starts)) == list(range(n - T))  # every window, none past the end
    assert sampler.batches_drawn == 300


def test_an_id_beyond_the_headers_vocabulary_is_named_when_its_window_is_read(tmp_path):
    path = tmp_path / "bad.bin"
    write_token_file(path, np.arange(40) % 7, vocab_size=7, fingerprint=FP)
    with open(path, "r+b") as f:  # the header's checksum does not cover the body
        f.seek(data_module.HEADER_SIZE + 2 * 30)
        f.write((9).to_bytes(2, "little"))
    dataset = TokenDataset(path)  # opening maps the body without reading it
    message = r"bad\.bin: token 30 is id 9, outside the file's vocab_size 7"
    with pytest.raises(ValueError, match=message):
        list(iter_eval_batches(dataset, batch_size=4, block_size=8, max_batches=2))
    sampler = BatchSampler(dataset, batch_size=4, block_size=8, seed=0)
    with pytest.raises(ValueError, match=message):
        for _ in range(100):  # random windows: one of them soon covers token 30
            sampler.next()
    assert sampler.batches_drawn < 100
    x, y = BatchSampler(arange_dataset(tmp_path, 40), 4, 8, seed=0).next()  # in range: no error
    np.testing.assert_array_equal(y, x + 1)


def test_sampler_resumes_exactly_through_a_checkpoint(tmp_path):
    ds = arange_dataset(tmp_path, 1000)
    a = BatchSampler(ds, 4, 16, seed=7)
    for _ in range(3):
        a.next()
    save_checkpoint(tmp_path / "c.ckpt", model_kind="m", model_config={}, model_state={},
                    train_state={"loader": a.state_dict()})
    expected = [a.next() for _ in range(3)]
    b = BatchSampler(ds, 4, 16, seed=123)
    b.load_state_dict(load_checkpoint(tmp_path / "c.ckpt").train_state["loader"])
    for want, got in zip(expected, [b.next() for _ in range(3)]):
        np.testing.assert_array_equal(want[0], got[0])
    assert b.batches_drawn == 6 and b.seed == 7
    c = BatchSampler(ds, 4, 16, seed=7)
    np.testing.assert_array_equal(c.next()[0], BatchSampler(ds, 4, 16, seed=7).next()[0])
    with pytest.raises(ValueError, match="not a sampler state"):
        b.load_state_dict({"rng": 3})


def test_too_little_data_and_bad_sizes(tmp_path):
    ds = arange_dataset(tmp_path, 8)
    with pytest.raises(ValueError, match="has 8 tokens; block_size 8 needs at least 9"):
        BatchSampler(ds, 2, 8, seed=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        BatchSampler(ds, 0, 4, seed=0)
    with pytest.raises(ValueError, match="needs at least 9"):
        next(iter_eval_batches(ds, 2, 8, 1))
    BatchSampler(ds, 2, 7, seed=0).next()


def test_eval_batches_are_fixed_and_span_the_data(tmp_path):
    n, B, T = 100, 3, 10
    ds = arange_dataset(tmp_path, n)
    first = list(iter_eval_batches(ds, B, T, max_batches=4))
    second = list(iter_eval_batches(ds, B, T, max_batches=4))
    assert len(first) == 4
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(y1, x1 + 1)
    starts = np.concatenate([x[:, 0] for x, _ in first])
    assert starts[0] == 0 and starts[-1] == n - T - 1 and np.all(np.diff(starts) > 0)


# ---- prepare: exactly encode() of each document, with a separator -----------------------------

CUT_SENSITIVE = "):\n \t\r'sdéa1€x"  # runs of these make pieces that a cut at a line break splits


@pytest.fixture(scope="module")
def bpe_tokenizers(sentencepiece_of):
    from alphagrad.tokenizers import BPETokenizer

    code = "def f(x):\n\n    return 'a's \r\n(x)):\n\t€1234\n  \n" * 40
    byte_level = [BPETokenizer.train(code, 300, pattern=p, special_tokens=["<|endoftext|>"])
                  for p in ("gpt4", "gpt2")]
    return byte_level + [sentencepiece_of(code, prepend, split)
                         for prepend, split in (("segments", False), ("first", True))]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(CUT_SENSITIVE, min_size=200, max_size=400), min_size=2, max_size=2),
       st.integers(1, 40), st.sampled_from([8, 64]), st.integers(0, 3))
def test_prepare_gives_encode_of_each_document_whatever_the_chunks(
        bpe_tokenizers, tmp_path_factory, docs, chunk, margin, which):
    from alphagrad.tokenizers import base

    tok = bpe_tokenizers[which]
    out = tmp_path_factory.mktemp("cuts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data_module, "_CHUNK_BYTES", chunk)
        mp.setattr(base, "CUT_MARGIN", margin)
        stats = prepare(docs, tok, out, val_fraction=0.5, separator=None)
    assert stats["split_by"] == "documents"  # sizes within a factor of two: whole documents
    train = TokenDataset(out / "train.bin").tokens.tolist()
    val = TokenDataset(out / "val.bin").tokens.tolist()
    assert sorted([train, val]) == sorted([tok.encode(d) for d in docs])


def test_prepare_puts_the_end_of_text_token_after_each_document(bpe_tokenizers, tmp_path):
    import json

    tok = bpe_tokenizers[0]
    docs = ["first doc):\n\n", "second\n", "third one\n" * 3, "4th"]
    stats = prepare(docs, tok, tmp_path / "a", val_fraction=0.3)
    eot = tok.special_tokens["<|endoftext|>"]
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["separator"] == "<|endoftext|>" and meta["separator_id"] == eot == stats["separator_id"]
    streams = [TokenDataset(tmp_path / "a" / f"{s}.bin").tokens.tolist() for s in ("train", "val")]
    expected = {tuple(tok.encode(d) + [eot]) for d in docs}
    for stream in streams:  # each split: whole documents, each closed by the separator
        pieces, start = [], 0
        for k, t in enumerate(stream):
            if t == eot:
                pieces.append(tuple(stream[start:k + 1]))
                start = k + 1
        assert start == len(stream) and set(pieces) <= expected
    assert sum(stream.count(eot) for stream in streams) == len(docs)
    none = prepare(docs, tok, tmp_path / "b", val_fraction=0.3, separator=None)
    assert none["separator"] is None and none["train_tokens"] + none["val_tokens"] == \
        stats["train_tokens"] + stats["val_tokens"] - len(docs)
    with pytest.raises(ValueError, match="'<eos>' is not a special token"):
        prepare(docs, tok, tmp_path / "c", separator="<eos>")
    assert prepare(docs, ByteTokenizer(), tmp_path / "d")["separator"] is None


def test_few_documents_far_from_the_fraction_are_split_by_bytes(tmp_path):
    docs = ["line of the big document\n" * 400, "a small one\n" * 2]
    stats = prepare(docs, ByteTokenizer(), tmp_path / "a", val_fraction=0.01)
    total = sum(len(d) for d in docs)
    assert stats["split_by"] == "bytes"  # whole documents: 0.2% or 99.8% in validation
    assert 0.005 < stats["val_bytes"] / total < 0.02
    train, val = tokens_of(tmp_path / "a/train.bin"), tokens_of(tmp_path / "a/val.bin")
    assert train + val == "".join(docs).encode() and train.endswith(b"\n")
    near = prepare(["x\n" * 50, "y\n" * 50, "z\n" * 40], ByteTokenizer(), tmp_path / "b",
                   val_fraction=0.3)
    assert near["split_by"] == "documents"
