"""SentencePiece-style BPE with byte fallback (Llama 2's, TinyLlama's tokenizer.json): known
answers worked by hand, then Hugging Face tokenizers as the reference on generated text."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagrad import tokenizers
from alphagrad.tokenizers import BPETokenizer, SentencePieceBPE
from alphagrad.train.sampling import encode_prompt

BYTE = 3  # ids 3..258 are <0x00>..<0xFF>, after <unk>, <s>, </s>


def hand_made(**options) -> SentencePieceBPE:
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": BYTE + b for b in range(256)}}
    for token in ["▁", "a", "b", "é", "€", "▁a", "▁ab", "▁▁"]:
        vocab[token] = len(vocab)
    merges = [("▁", "a"), ("▁a", "b"), ("▁", "▁")]
    return SentencePieceBPE(vocab, merges, {"<unk>": 0, "<s>": 1, "</s>": 2}, **options)


def test_known_answers():
    tok = hand_made()
    space, a, b, e_acute, euro, space_a, space_ab, two_spaces = range(259, 267)
    assert tok.encode("ab ab") == [space_ab, space_ab]
    assert tok.encode("ba") == [space, b, a]
    assert tok.encode("é€") == [space, e_acute, euro]
    # ç (C3 A7) is not in the vocabulary: its bytes; ₭ (E2 82 AD) shares its first two bytes
    # with €, which must not leave a made-up token for them
    assert tok.encode("ç₭") == [space, BYTE + 0xC3, BYTE + 0xA7, BYTE + 0xE2, BYTE + 0x82,
                                BYTE + 0xAD]
    assert tok.encode("\n") == [space, BYTE + 0x0A]
    # the text's space and the one put before it: (▁, a) ranks before (▁, ▁)
    assert tok.encode(" a") == [space, space_a]
    assert tok.encode("  ") == [two_spaces, space]
    assert tok.encode("▁a") == tok.encode(" a")  # a ▁ in the text is a space
    assert tok.encode("a</s>a", allowed_special="all") == [space_a, 2, space_a]
    for text in ["ab ab", "é€ ç₭", "\n", "  a", "b</s>"]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.decode([space, BYTE + 0xC3]) == "\ufffd"  # half a character
    assert tok.token_bytes(space_ab) == b" ab"
    assert tok.vocab_size == 267 and tok.end_of_text == "</s>"


@pytest.mark.parametrize("prepend, first, after_special", [
    ("first", [264], [260]), ("always", [264], [264]), ("never", [260], [260])])
def test_prepend_schemes(prepend, first, after_special):
    tok = hand_made(prepend=prepend)  # ids: ▁ 259, a 260, ▁a 264
    assert tok.encode("a") == first
    assert tok.encode(" a") == [264]  # already starts with a space: nothing put before it
    assert tok.encode("</s>a", allowed_special="all") == [2, *after_special]


def test_prompts_start_with_the_bos_token_it_names():
    named, unnamed = hand_made(bos_token="<s>"), hand_made()
    assert encode_prompt(named, "ab") == [1, 265] and encode_prompt(unnamed, "ab") == [265]
    assert encode_prompt(named, "a</s>", ["</s>"]) == [1, 264, 2]
    assert named.encode("ab") == [265]  # encode itself adds nothing, as add_special_tokens=False


def test_round_trips_through_its_own_file(tmp_path):
    tok = hand_made(prepend="first", split=True)
    tok.save(tmp_path / "t.json")
    back = tokenizers.load(tmp_path / "t.json")
    assert isinstance(back, SentencePieceBPE) and back == tok
    assert back.encode("ab  ab é") == tok.encode("ab  ab é")


@pytest.mark.parametrize("change, message", [
    (lambda d: d["model"].update(byte_fallback=False), "without byte_fallback"),
    (lambda d: d.update(normalizer={"type": "Replace", "pattern": {"String": " "},
                                    "content": "▁"}), "normalizer must be Llama 2's"),
    (lambda d: d["model"]["vocab"].pop("<0x41>"), "<0x41>"),
    (lambda d: d["model"]["vocab"].update({"a▁": 9999}), "has a '▁' after other text"),
    (lambda d: d["model"].update(vocab={t: i for t, i in d["model"]["vocab"].items()
                                        if "▁" not in t}, merges=[]), "has no '▁' token"),
    (lambda d: d["model"]["merges"].append(["▁", "zz"]), "missing from the vocabulary"),
    (lambda d: d.update(added_tokens=[{"id": "x", "content": "<s>"}]), "token ids are ints"),
])
def test_unsupported_or_damaged_files_are_named(tmp_path, change, message):
    hand_made(bos_token="<s>").save_huggingface(tmp_path / "tokenizer.json")
    d = json.loads((tmp_path / "tokenizer.json").read_text())
    change(d)
    (tmp_path / "tokenizer.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"tokenizer\.json") as info:
        tokenizers.load(tmp_path / "tokenizer.json")
    assert message in str(info.value)


def test_the_byte_level_class_points_to_this_one(tmp_path):
    hand_made().save_huggingface(tmp_path / "tokenizer.json")
    with pytest.raises(ValueError, match="open it with SentencePieceBPE"):
        BPETokenizer.from_pretrained(tmp_path)


# Where a crafted tokenizer.json may put a hostile value.
PLACES = {
    "vocab": lambda d, v: d["model"].__setitem__("vocab", v),
    "vocab id": lambda d, v: d["model"]["vocab"].__setitem__("▁a", v),
    "byte token id": lambda d, v: d["model"]["vocab"].__setitem__("<0x41>", v),
    "merges": lambda d, v: d["model"].__setitem__("merges", v),
    "merge": lambda d, v: d["model"]["merges"].__setitem__(1, v),
    "added_tokens": lambda d, v: d.__setitem__("added_tokens", v),
    "added token id": lambda d, v: d["added_tokens"][0].__setitem__("id", v),
    "normalizer": lambda d, v: d.__setitem__("normalizer", v),
    "prepend": lambda d, v: d["normalizer"]["normalizers"][0].__setitem__("prepend", v),
    "metaspace": lambda d, v: d.update(normalizer=None, pre_tokenizer={
        "type": "Metaspace", "replacement": "▁", "prepend_scheme": v, "split": v}),
    "decoder": lambda d, v: d.__setitem__("decoder", v),
    "post_processor": lambda d, v: d.__setitem__("post_processor", v),
    "byte_fallback": lambda d, v: d["model"].__setitem__("byte_fallback", v),
}
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=5),
    st.lists(st.integers(-5, 2**33), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(-5, 2**40), max_size=3),
    st.sampled_from(["first", "always", "never", {"type": "Sequence", "decoders": None}]))


@settings(max_examples=200, deadline=None)
@given(place=st.sampled_from(sorted(PLACES)), value=HOSTILE)
def test_property_hostile_files_load_cleanly_or_not_at_all(tmp_path_factory, bounded_call,
                                                           place, value):
    """Within a memory and time bound: a ValueError naming the file, or a tokenizer that
    encodes and decodes (up to the space put before the text)."""
    path = tmp_path_factory.mktemp("sp") / "tokenizer.json"
    hand_made(bos_token="<s>").save_huggingface(path)
    d = json.loads(path.read_text())
    PLACES[place](d, value)
    path.write_text(json.dumps(d))
    text = "ab ab é€ ç₭ </s>"
    try:
        with bounded_call():
            tok = tokenizers.load(path)
            ids = tok.encode(text)
    except ValueError as err:
        assert path.name in str(err)
    else:
        assert tok.decode(ids).lstrip(" ") == text


# ----------------------------------------------------------------------------- against Hugging Face
WORDS = ["the", "king", "queen", "naïve", "café", "東京", "über", "x", "42", "don't", "▁", "\n",
         "\t", "😀", "ç", "ŋ", "<s>", "</s>", "a\u0301"]


def llama_like(hf, form: str, scheme: str = "first", split: bool = False):
    """A tokenizer.json as Hugging Face stores Llama 2's: merges learned by its BPE trainer over
    ▁-marked words, the 256 byte tokens, byte fallback; ``form`` "normalizer" (Prepend and
    Replace) or "metaspace" (the pre-tokenizer, with ``scheme`` and ``split``)."""
    trainer_tok = hf.Tokenizer(hf.models.BPE())
    trainer_tok.pre_tokenizer = hf.pre_tokenizers.Metaspace(prepend_scheme="always", split=True)
    text = " ".join(WORDS[:10] * 30 + ["the king", "the queen", "naïve café"] * 40)
    trainer_tok.train_from_iterator([text], hf.trainers.BpeTrainer(vocab_size=120,
                                                                   show_progress=False))
    learned = json.loads(trainer_tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for token in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) for m in learned["merges"]]
    tok = hf.Tokenizer(hf.models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True,
                                     byte_fallback=True))
    if form == "normalizer":
        tok.normalizer = hf.normalizers.Sequence([hf.normalizers.Prepend("▁"),
                                                  hf.normalizers.Replace(" ", "▁")])
    else:
        tok.pre_tokenizer = hf.pre_tokenizers.Metaspace(prepend_scheme=scheme, split=split)
    tok.decoder = hf.decoders.Sequence([hf.decoders.Replace("▁", " "), hf.decoders.ByteFallback(),
                                        hf.decoders.Fuse(), hf.decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = hf.processors.TemplateProcessing(single="<s> $A",
                                                          special_tokens=[("<s>", 1)])
    return tok


FORMS = [("normalizer", "first", False), ("metaspace", "first", False),
         ("metaspace", "first", True), ("metaspace", "always", True),
         ("metaspace", "always", False), ("metaspace", "never", True)]
TEXTS = st.lists(st.sampled_from(WORDS) | st.sampled_from([" ", "  ", "   "])
                 | st.text(max_size=3), max_size=12).map("".join)


@pytest.fixture(scope="module", params=FORMS, ids=["-".join(map(str, f)) for f in FORMS])
def pair(request, tmp_path_factory):
    pytest.importorskip("tokenizers.models")  # a submodule: the test folder also imports as "tokenizers"
    import tokenizers as hf
    folder = tmp_path_factory.mktemp("sp")
    reference = llama_like(hf, *request.param)
    reference.save(str(folder / "tokenizer.json"))
    return reference, tokenizers.from_pretrained(folder), hf


@settings(max_examples=150, deadline=None)
@given(text=TEXTS)
def test_encodes_and_decodes_as_hugging_face(pair, text):
    reference, ours, _ = pair
    want = reference.encode(text, add_special_tokens=False).ids
    assert ours.encode(text, allowed_special="all") == want
    assert ours.decode(want) == reference.decode(want, skip_special_tokens=False)


def test_exported_file_is_read_by_hugging_face_alike(pair, tmp_path):
    reference, ours, hf = pair
    assert isinstance(ours, SentencePieceBPE) and ours.bos_token == "<s>"
    ours.save_pretrained(tmp_path)
    exported = hf.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in ["the king's café", "  東京 ç😀\n", "</s>x <s>", ""]:
        assert exported.encode(text).ids == reference.encode(text).ids  # with the bos token
        assert exported.encode(text).ids[:1] == [1]
    assert SentencePieceBPE.from_huggingface(tmp_path / "tokenizer.json") == ours
