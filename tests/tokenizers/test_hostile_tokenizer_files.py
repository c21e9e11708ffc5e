"""Tokenizer files that are well-formed JSON but hostile: wrong types, huge or negative ids, deep
nesting, patterns that backtrack forever. Each is one ValueError naming the file, never a wrong
answer, a traceback from deep inside or a hang."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alphagrad.tokenizers as T
from alphagrad.tokenizers import BPETokenizer

A, B, C, D = (ord(ch) for ch in "abcd")


def small() -> BPETokenizer:
    return BPETokenizer([(A, B, 256), (256, C, 257), (D, C, 258)], "gpt2", {"<|eot|>": 259})


def load_dict(tmp_path, d: object) -> T.Tokenizer:
    path = tmp_path / "tok.json"
    path.write_text(json.dumps(d))
    return T.load(path)


def test_ids_beyond_the_encoders_range_are_refused(tmp_path):
    # Pairs are keyed as left << 32 | right: with "ab" at 2**32 + ord("d"), the pair ("ab", "c")
    # had the key of ("d", "c"), and "dc" encoded as the token for "abc".
    ab = 2**32 + D
    d = {**small().to_dict(), "merges": [[A, B, ab], [ab, C, 257], [D, C, 258]]}
    with pytest.raises(ValueError, match=r"tok\.json.*merge 0: an id is 4294967396; token ids "
                                         r"are ints in \[0, 2147483647\]"):
        load_dict(tmp_path, d)
    tok = load_dict(tmp_path, small().to_dict())
    assert tok.decode(tok.encode("dc")) == "dc" and tok.encode("dc") == [258]


@pytest.mark.parametrize("change, message", [
    ({"kind": ["bpe"]}, "unknown tokenizer kind"),
    ({"merges": [[A, B, 2**63]]}, "merge 0: an id is 9223372036854775808"),
    ({"merges": [[A, B, -1]]}, "merge 0: an id is -1"),
    ({"merges": [[A, B, 1.5]]}, "merge 0: an id is 1.5"),
    ({"merges": [[A, B, "256"]]}, "merge 0: an id is '256'"),
    ({"merges": [[A, B, True]]}, "merge 0: an id is True"),
    ({"merges": [[A, B]]}, "merge 0 is"),
    ({"merges": [7]}, "merge 0 is 7"),
    ({"merges": "ab"}, "merge 0 is 'a'"),
    ({"byte_ids": [2**40] * 256}, "byte id 0 is 1099511627776"),
    ({"special_tokens": {"<|eot|>": 2**31}}, "special token '<|eot|>': its id"),
    ({"special_tokens": ["<|eot|>"]}, "special tokens must map text to ids"),
    ({"pattern": ["gpt2"]}, "tok.json"),
])
def test_hostile_fields_name_the_file_and_the_field(tmp_path, change, message):
    with pytest.raises(ValueError, match="tok\\.json") as info:
        load_dict(tmp_path, {**small().to_dict(), **change})
    assert message in str(info.value)


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "tok.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"tok\.json.* nested too deeply"):
        T.load(path)


def hf_dict(tmp_path) -> dict:
    small().save_huggingface(tmp_path / "exported.json")
    return json.loads((tmp_path / "exported.json").read_text())


def with_model(d: dict, **changes) -> dict:
    return {**d, "model": {**d["model"], **changes}}


@pytest.mark.parametrize("edit, message", [
    (lambda d: with_model(d, merges=[7]), "merge 0 is 7"),
    (lambda d: with_model(d, merges=["a b c"]), "merge 0 is 'a b c'"),
    (lambda d: with_model(d, vocab={**d["model"]["vocab"], "a": 2**63}), "9223372036854775808"),
    (lambda d: {**d, "added_tokens": "<|eot|>"}, "added_tokens must be a list"),
    (lambda d: {**d, "added_tokens": [{"id": 300}]}, "added_tokens must be a list"),
    (lambda d: {**d, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": "x", "behavior": "Isolated"},
        {"type": "ByteLevel"}]}}, "the Split pre-tokenizer must be an isolated"),
    (lambda d: {**d, "model": [1]}, "model.type must be 'BPE'"),
])
def test_hostile_huggingface_files_name_the_file(tmp_path, edit, message):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(edit(hf_dict(tmp_path))))
    with pytest.raises(ValueError, match=r"tokenizer\.json") as info:
        T.load(path)
    assert message in str(info.value)


def test_a_catastrophic_pattern_fails_within_its_time_bound():
    tok = BPETokenizer([], r"(a|aa)+$")
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"41 characters: it backtracks catastrophically"):
        tok.encode("a" * 40 + "!")
    assert time.perf_counter() - start < 20  # the bound is ~1 s; regex checks it coarsely
    assert tok.encode("aaaa") == [A] * 4  # the same pattern on sane text still works


HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=5),
    st.lists(st.integers(-5, 2**33), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(-5, 2**40), max_size=3),
    st.recursive(st.integers(0, 300), lambda inner: st.lists(inner, max_size=2), max_leaves=50),
)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["kind", "version", "pattern", "special_tokens", "byte_ids",
                              "merges"]),
       value=HOSTILE, position=st.integers(0, 3))
def test_property_hostile_values_load_cleanly_or_not_at_all(tmp_path_factory, bounded_call,
                                                           field, value, position):
    d = small().to_dict()
    if field == "merges" and position < 3:  # one id of one merge, or the whole field
        d["merges"][position % 3][position] = value
    else:
        d[field] = value
    _loads_cleanly_or_not_at_all(tmp_path_factory.mktemp("tok") / "tok.json", d, bounded_call)


def _loads_cleanly_or_not_at_all(path, d: object, bounded_call) -> None:
    """Within a memory and time bound: a ValueError naming the file, or a tokenizer that
    encodes and decodes exactly."""
    path.write_text(json.dumps(d))
    try:
        with bounded_call():
            tok = T.load(path)
            text = "abcd dcba abc <|eot|>"
            ids = tok.encode(text)
    except ValueError as e:
        assert path.name in str(e)
    else:
        assert tok.decode(ids) == text


def split_then_bytes(pattern: object) -> dict:
    """A Hugging Face pre-tokenizer: a Split regex, then byte-level."""
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}


def test_a_catastrophic_split_regex_in_a_huggingface_file_fails_in_bounded_time(tmp_path,
                                                                               bounded_call):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({**hf_dict(tmp_path), "pre_tokenizer": split_then_bytes(
        r"(a|aa)+$")}))
    tok = T.load(path)
    with bounded_call(seconds=20), pytest.raises(ValueError, match="backtracks catastrophically"):
        tok.encode("a" * 40 + "!")
    assert tok.encode("abcd dcba") == [257, D, ord(" "), 258, B, A]  # sane text still encodes


# Where a crafted Hugging Face tokenizer.json may put a hostile value.
HF_PLACES = {
    "model": lambda d, v: d.__setitem__("model", v),
    "model type": lambda d, v: d["model"].__setitem__("type", v),
    "vocab": lambda d, v: d["model"].__setitem__("vocab", v),
    "vocab id": lambda d, v: d["model"]["vocab"].__setitem__("ab", v),
    "merges": lambda d, v: d["model"].__setitem__("merges", v),
    "merge": lambda d, v: d["model"]["merges"].__setitem__(1, v),
    "added_tokens": lambda d, v: d.__setitem__("added_tokens", v),
    "added token": lambda d, v: d["added_tokens"].__setitem__(0, v),
    "added token id": lambda d, v: d["added_tokens"][0].__setitem__("id", v),
    "added token content": lambda d, v: d["added_tokens"][0].__setitem__("content", v),
    "pre_tokenizer": lambda d, v: d.__setitem__("pre_tokenizer", v),
    "split pattern": lambda d, v: d.__setitem__("pre_tokenizer", split_then_bytes(v)),
    "decoder": lambda d, v: d.__setitem__("decoder", v),
    "normalizer": lambda d, v: d.__setitem__("normalizer", v),
}


@settings(max_examples=300, deadline=None)
@given(place=st.sampled_from(sorted(HF_PLACES)),
       value=st.one_of(HOSTILE, st.sampled_from([r"(a|aa)+$", "(", r"\p{L}+| ?\d"])))
def test_property_hostile_huggingface_files_load_cleanly_or_not_at_all(
        tmp_path_factory, bounded_call, place, value):
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    d = hf_dict(tmp_path_factory.mktemp("exported"))
    HF_PLACES[place](d, value)
    _loads_cleanly_or_not_at_all(path, d, bounded_call)
