"""Char and word tokenizers."""

import pytest

import alphagrad.tokenizers as T
from alphagrad.tokenizers import CharTokenizer, WordTokenizer


def test_char_train_encode_decode():
    tok = CharTokenizer.train("abracadabra", vocab_size=4)
    assert tok.tokens == ["<unk>", "a", "b", "r"]  # a:5, b:2, r:2 beat c:1, d:1
    assert tok.encode("bad") == [2, 1, 0]
    assert tok.decode([2, 1, 0]) == "ba<unk>"
    with pytest.raises(IndexError, match="id 9"):
        tok.decode([9])


def test_char_round_trip_when_covered():
    text = "héllo wörld 😀\x00"
    tok = CharTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text


def test_word_min_frequency_and_stats():
    tok = WordTokenizer.train("the cat and the hat and the dog", min_frequency=2)
    assert tok.tokens == ["<unk>", " ", "and", "the"]
    s = tok.stats("the cow and the cat")  # words: the cow and the cat; spaces: 4
    assert s["oov_rate"] == 2 / 9
    assert s["coverage"] == 3 / 5  # distinct: the, cow, and, cat, " "
    assert s["tokens_per_word"] == 9 / 5


@pytest.mark.parametrize("cls", [CharTokenizer, WordTokenizer])
def test_save_load_and_from_dict(tmp_path, cls):
    tok = cls.train("some text, some more text!")
    tok.save(tmp_path / "t.json")
    back = T.load(tmp_path / "t.json")
    assert type(back) is cls and back.kind == cls.kind
    assert back.fingerprint() == tok.fingerprint() == T.from_dict(tok.to_dict()).fingerprint()
    assert cls.load(tmp_path / "t.json").tokens == tok.tokens


def test_fingerprint_differs_between_vocabularies():
    assert CharTokenizer.train("ab").fingerprint() != CharTokenizer.train("abc").fingerprint()


def test_bad_dict():
    with pytest.raises(ValueError, match="tokens"):
        T.from_dict({**CharTokenizer.train("ab").to_dict(), "tokens": ["a", "b"]})
