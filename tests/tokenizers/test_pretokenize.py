"""The Numba scanners split exactly as the regex module does with the same pattern."""

import numpy as np
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagrad.tokenizers.pretokenize import GPT2_PATTERN, GPT4_PATTERN, split

# Pieces that exercise every branch: contractions in both cases (and the long s that folds to
# s), letters/digits from several scripts, each kind of whitespace, punctuation, emoji.
PIECES = ["a", "Z", "é", "ſ", "1", "٣", "Ⅻ", " ", "  ", "\n", "\r", "\r\n", "\t", "\u00a0",
          "\u2028", "\x1c", "'", "s", "t", "re", "VE", "ll", "lL", "D", ".", "!?", "😀",
          "\u0301", "\x00", "中文", "_", "123456"]
texts = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


def chunks(text, pattern):
    data, ends, _ = split([text], pattern)
    return [bytes(data[a:b]).decode() for a, b in zip([0, *ends[:-1]], ends)]


@settings(max_examples=300, deadline=None)
@given(texts, st.sampled_from([GPT2_PATTERN, GPT4_PATTERN]))
def test_scanner_matches_regex_on_generated_text(text, pattern):
    assert chunks(text, pattern) == regex.findall(pattern, text)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=60), st.sampled_from([GPT2_PATTERN, GPT4_PATTERN]))
def test_scanner_matches_regex_on_arbitrary_unicode(text, pattern):
    assert chunks(text, pattern) == regex.findall(pattern, text)


def test_known_split():
    assert chunks("Hello world's 12345!!\n\n  x", GPT4_PATTERN) == [
        "Hello", " world", "'s", " ", "123", "45", "!!\n\n", " ", " x"]


def test_documents_never_share_a_chunk():
    data, ends, doc_chunks = split(["ab", "", "cd"], GPT2_PATTERN)
    assert ends.tolist() == [2, 4] and doc_chunks.tolist() == [1, 1, 2] and bytes(data) == b"abcd"


def test_custom_pattern_keeps_skipped_text():
    _, ends, _ = split(["a1b22"], r"\d+")
    assert np.diff([0, *ends]).tolist() == [1, 1, 1, 2]
