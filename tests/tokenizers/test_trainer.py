"""The Numba trainer learns exactly the merges of the slow reference trainer."""

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_bpe import train as reference_train

from alphagrad.tokenizers.counting import blocks, count_chunks
from alphagrad.tokenizers.pretokenize import GPT2_PATTERN, GPT4_PATTERN
from alphagrad.tokenizers.trainer import train_merges


def numba_train(text, vocab_size, pattern=GPT2_PATTERN, min_frequency=1):
    data, offsets, counts = count_chunks(text, pattern).words()
    return train_merges(data, offsets, counts, vocab_size, min_frequency)


def reference(text, vocab_size, pattern=GPT2_PATTERN, min_frequency=1):
    import regex
    words = Counter(m.encode() for m in regex.findall(pattern, text))
    return reference_train(words, vocab_size, min_frequency)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "aa", "ab", "ba", " ", "\n", "é", "aaa", "c!"]),
                min_size=1, max_size=200).map("".join),
       st.integers(256, 320), st.sampled_from([GPT2_PATTERN, GPT4_PATTERN]))
def test_matches_reference_trainer(text, vocab_size, pattern):
    assert numba_train(text, vocab_size, pattern) == reference(text, vocab_size, pattern)


def test_min_frequency_stops_early():
    text = "ab ab ab cd cd xy"
    assert numba_train(text, 300, min_frequency=2) == reference(text, 300, min_frequency=2)
    assert all(a != ord("x") for a, _, _ in numba_train(text, 300, min_frequency=2))


def test_worked_example():
    # "aaabdaaabac": aa (count 4) merges first, leaving "Z a b d Z a b a c"; then Za and ab
    # both occur twice and the tie goes to the smaller left id, ab = (97, 98); then Z ab.
    merges = numba_train("aaabdaaabac", 259, pattern=r"[\s\S]+")
    a, b = ord("a"), ord("b")
    assert merges == [(a, a, 256), (a, b, 257), (256, 257, 258)]


def test_counts_are_the_same_however_the_source_is_cut(tmp_path):
    text = "The quick brown fox.\n  jumps over 12 lazy dogs!  \n" * 500
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    whole = dict(count_chunks(text, GPT4_PATTERN).items())
    assert dict(count_chunks(path, GPT4_PATTERN, num_threads=2).items()) == whole
    assert sum(len(group) for group in blocks(path, block_chars=100)) > 10


def test_deterministic():
    text = Path(__file__).read_text()
    assert numba_train(text, 400) == numba_train(text, 400)


def test_bad_source_type():
    with pytest.raises(TypeError, match="source"):
        count_chunks(42, GPT2_PATTERN)
