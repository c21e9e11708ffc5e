"""BPETokenizer: round trips, exact encoding, special tokens, files and interop."""

import functools
import json

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_bpe import encode_chunk

import alphagrad.tokenizers as T
from alphagrad.tokenizers import BPETokenizer

CORPUS = ("The quick brown fox jumps over the lazy dog. It's 2024; naïve café — 東京 😀!\n"
          "    def f(x):\n        return x ** 2  # aaaa bbbb\n") * 40


@functools.cache
def trained(pattern="gpt4"):
    return BPETokenizer.train(CORPUS, 330, pattern=pattern, special_tokens=["<|eot|>", "<|pad|>"])


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
       | st.sampled_from(["\x00" * 50, "a" * 3000, "😀" * 40, "e\u0301" * 30]))
def test_round_trip_unicode(text):
    tok = trained()
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=64))
def test_decode_bytes_of_any_bytes(raw):
    tok = trained()
    ids = [tok.byte_ids[b] for b in raw]
    assert tok.decode_bytes(ids) == raw
    assert tok.decode(ids) == raw.decode("utf-8", errors="replace")


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", r"\w+|\W"])
def test_encoding_matches_reference(pattern):
    tok = trained(pattern)
    text = CORPUS[:2000] + "unseen wordsss 12345"
    expected = [i for chunk in regex.findall(tok.pattern, text)
                for i in encode_chunk(chunk.encode(), tok.merges)]
    assert tok.encode(text) == expected


def test_pathological_inputs_encode_exactly():
    tok = BPETokenizer.train("a" * 64 + " " + "ab" * 32, 270, pattern="gpt2")
    for text in ["a" * 200_001, "ab" * 100_000, "x!" * 100_000]:
        assert tok.decode(tok.encode(text)) == text
    chunk = ("a" * 1000).encode()
    assert tok.encode("a" * 1000) == encode_chunk(chunk, tok.merges)


def test_ids_layout_and_vocab():
    tok = trained()
    assert tok.vocab_size == 330
    assert tok.special_tokens == {"<|eot|>": 328, "<|pad|>": 329}
    assert [t for _, _, t in tok.merges] == list(range(256, 328))
    assert tok.token_bytes(ord("A")) == b"A"
    ranks = tok.mergeable_ranks()
    assert len(ranks) == 328 and ranks[tok.token_bytes(300)] == 300


def test_special_tokens():
    tok = trained()
    text = "hi<|eot|>there<|pad|>"
    plain = tok.encode(text)
    assert 328 not in plain and tok.decode(plain) == text
    assert tok.encode(text, allowed_special="all") == (
        tok.encode("hi") + [328] + tok.encode("there") + [329])
    assert tok.encode(text, allowed_special={"<|eot|>"}).count(329) == 0
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode(text, allowed_special={"<|nope|>"})


def test_training_is_deterministic_and_threads_agree():
    a = BPETokenizer.train(CORPUS, 330, num_threads=1)
    b = BPETokenizer.train([CORPUS[:1000], CORPUS[1000:]], 330, num_threads=2)
    assert a.merges == BPETokenizer.train(CORPUS, 330, num_threads=2).merges
    assert a.fingerprint() == BPETokenizer.train(CORPUS, 330).fingerprint()
    assert len(b.merges) == 74


def test_progress_and_bad_arguments():
    seen = []
    BPETokenizer.train(CORPUS, 300, progress=lambda n, total: seen.append((n, total)))
    assert seen[-1] == (300, 300) and seen == sorted(seen)
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train(CORPUS, 100)
    with pytest.raises(ValueError, match="does not compile"):
        BPETokenizer.train(CORPUS, 300, pattern="(")


def test_encode_batch_matches_encode():
    tok = trained()
    texts = [CORPUS[k : k + 300] for k in range(0, 3000, 150)] + ["", "<|eot|>"]
    assert tok.encode_batch(texts, num_threads=2) == [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts, 2, allowed_special="all")[-1] == [328]
    assert tok.encode_batch([]) == []


def test_save_load_round_trip(tmp_path):
    tok = trained()
    tok.save(tmp_path / "tok.json")
    back = T.load(tmp_path / "tok.json")
    assert back.fingerprint() == tok.fingerprint() and back.encode(CORPUS) == tok.encode(CORPUS)
    assert BPETokenizer.load(tmp_path / "tok.json").merges == tok.merges
    assert T.from_dict(json.loads(json.dumps(tok.to_dict()))).fingerprint() == tok.fingerprint()
    vocab = (tmp_path / "tok.json.vocab").read_text()
    assert "<|eot|>" in vocab and "\n65\tA\n" in vocab


def test_damaged_and_foreign_files(tmp_path):
    path = tmp_path / "tok.json"
    trained().save(path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"tok\.json.*damaged"):
        T.load(path)
    d = trained().to_dict()
    for change, message in [({"version": 99}, "version 99"), ({"format": "x"}, "not an alphagrad"),
                            ({"merges": [[1, 999, 256]]}, "merge 0"), ({"kind": "zzz"}, "kind")]:
        path.write_text(json.dumps({**d, **change}))
        with pytest.raises(ValueError, match=message) as err:
            T.load(path)
        assert "tok.json" in str(err.value)
    with pytest.raises(ValueError, match="missing.txt"):
        T.load(tmp_path / "missing.txt")


def test_tiktoken_round_trip(tmp_path):
    tok = trained()
    tok.save_tiktoken(tmp_path / "ranks.tiktoken")
    back = BPETokenizer.from_tiktoken(tmp_path / "ranks.tiktoken", "gpt4", tok.special_tokens)
    assert back.merges == tok.merges and back.encode(CORPUS) == tok.encode(CORPUS)
    (tmp_path / "bad.tiktoken").write_text("not base64!! x\n")
    with pytest.raises(ValueError, match=r"bad\.tiktoken.*line 1"):
        BPETokenizer.from_tiktoken(tmp_path / "bad.tiktoken")


def test_tiktoken_with_shuffled_ranks(tmp_path):
    # Imported vocabularies keep their ids even when bytes are not 0..255.
    ranks = {bytes([b]): (b * 7) % 256 + 10 for b in range(256)}
    ranks[b"ab"], ranks[b"abab"] = 300, 301
    (tmp_path / "r.tiktoken").write_text(__import__("alphagrad.tokenizers.interop",
                                         fromlist=["x"]).tiktoken_text(ranks))
    tok = BPETokenizer.from_tiktoken(tmp_path / "r.tiktoken", "gpt2")
    assert tok.encode("ababa") == [301, ranks[b"a"]]
    assert tok.mergeable_ranks() == ranks


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_huggingface_round_trip(tmp_path, pattern):
    tok = trained(pattern)
    tok.save_huggingface(tmp_path / "tokenizer.json")
    back = BPETokenizer.from_huggingface(tmp_path / "tokenizer.json")
    assert back.merges == tok.merges and back.special_tokens == tok.special_tokens
    assert back.pattern == tok.pattern
    assert T.load(tmp_path / "tokenizer.json").encode(CORPUS) == tok.encode(CORPUS)
    (tmp_path / "other.json").write_text(json.dumps({"model": {"type": "WordPiece"}}))
    with pytest.raises(ValueError, match=r"other\.json.*BPE"):
        BPETokenizer.from_huggingface(tmp_path / "other.json")


def test_stats():
    tok = trained()
    s = tok.stats("hello world")
    n = len(tok.encode("hello world"))
    assert s["bytes_per_token"] == 11 / n and s["tokens_per_word"] == n / 2
