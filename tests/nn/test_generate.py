"""Generation: the KV cache changes nothing but speed; sampling only ever emits allowed tokens."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alphagrad as ag
from alphagrad import nn
from alphagrad.nn.generate import LayerKV, sample


@pytest.fixture(scope="module")
def model():
    ag.manual_seed(0)
    m = nn.GPT(nn.GPTConfig(block_size=8, vocab_size=13, n_layer=2, n_head=2, n_embd=16)).double()
    for p in m.parameters():  # sharper logits than the 0.02 init, so greedy paths branch
        p.data *= 8
    return m


PROMPT = np.array([[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("kwargs", [{"temperature": 0}, {"seed": 3}, {"seed": 4, "top_k": 3},
                                    {"seed": 5, "top_p": 0.8, "temperature": 0.7}])
def test_cache_gives_the_same_tokens_past_the_context_length(model, kwargs):
    with_cache = model.generate(PROMPT, 12, **kwargs)  # 15 tokens > block_size 8: crops
    without = model.generate(PROMPT, 12, use_cache=False, **kwargs)
    assert with_cache.shape == (2, 15)
    np.testing.assert_array_equal(with_cache.data, without.data)
    np.testing.assert_array_equal(with_cache.data[:, :3], PROMPT)


def test_greedy_follows_the_argmax_of_the_full_forward(model):
    out = model.generate(PROMPT[:1], 6, temperature=0).data[0]
    for t in range(3, 9):
        context = out[None, max(0, t - 8):t]
        logits, _ = model(context)
        assert out[t] == np.argmax(logits.data[0, -1])


def test_seed_repeats_and_the_library_generator_is_used_without_one(model):
    a = model.generate(PROMPT, 5, seed=11).data
    np.testing.assert_array_equal(a, model.generate(PROMPT, 5, seed=11).data)
    ag.manual_seed(9)
    b = model.generate(PROMPT, 5).data
    ag.manual_seed(9)
    np.testing.assert_array_equal(b, model.generate(PROMPT, 5).data)


def test_stream_yields_the_generated_ints_and_leaks_no_mode(model):
    model.train()
    tokens = model.stream([1, 2, 3], 7, seed=2)
    first = next(tokens)
    assert isinstance(first, int)
    assert ag.is_grad_enabled() and model.training  # between tokens the caller's state holds
    rest = list(tokens)
    expected = model.generate(PROMPT[:1], 7, seed=2).data[0, 3:]
    assert [first] + rest == expected.tolist()
    with pytest.raises(ValueError, match="one sequence"):
        next(model.stream(PROMPT, 2))


def test_sampling_argument_errors(model):
    for kwargs, message in (({"temperature": -1}, "temperature"), ({"top_k": 0}, "top_k"),
                            ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p")):
        with pytest.raises(ValueError, match=message):
            model.generate(PROMPT, 1, **kwargs)
    with pytest.raises(ValueError, match="T >= 1"):
        model.generate(np.zeros((1, 0), np.int64), 1)


def test_nan_logits_and_a_nan_temperature_are_clear_errors(model):
    for logits in ([[0.0, np.nan, 1.0]], [[0.0, np.inf, 1.0]]):
        for temperature in (0, 1.0):
            with pytest.raises(ValueError, match="NaN or \\+inf .*diverged"):
                sample(np.array(logits), temperature)
    assert sample(np.array([[0.0, -np.inf, 1.0]]), 0).tolist() == [2]  # -inf: masked, fine
    with pytest.raises(ValueError, match="temperature must be a number >= 0, got nan"):
        model.generate(PROMPT, 1, temperature=float("nan"))
    diverged = nn.GPT(model.config)
    diverged.transformer.ln_f.weight.data[0] = np.nan
    with pytest.raises(ValueError, match="diverged"):
        diverged.generate(PROMPT, 1, temperature=0)


def test_kv_cache_capacity_is_checked():
    cache = LayerKV(1, 2, 4, 3, np.float32)
    keys, _ = cache.extend(np.ones((1, 2, 3, 3)), np.ones((1, 2, 3, 3)))
    assert keys.shape == (1, 2, 3, 3) and cache.length == 3
    with pytest.raises(ValueError, match="capacity 4"):
        cache.extend(np.ones((1, 2, 2, 3)), np.ones((1, 2, 2, 3)))


def test_top_k_and_top_p_emit_exactly_the_allowed_set():
    logits = np.log(np.array([[0.05, 0.5, 0.15, 0.3]]))
    rng = np.random.default_rng(0)

    def seen(**kwargs):
        return {int(sample(logits, rng=rng, **kwargs)[0]) for _ in range(400)}

    assert seen(top_k=2) == {1, 3}
    assert seen(top_p=0.75) == {1, 3}  # 0.5 + 0.3 reaches 0.75
    assert seen(top_p=0.85) == {1, 3, 2}
    assert seen(top_p=0.4) == {1}
    assert seen() == {0, 1, 2, 3}
    assert sample(logits, temperature=0).tolist() == [1]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 30), st.one_of(st.none(), st.integers(1, 30)),
       st.one_of(st.none(), st.floats(0.01, 1.0)), st.floats(0.1, 3.0))
def test_samples_lie_in_the_top_k_top_p_set(seed, V, top_k, top_p, temperature):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((3, V)) * 3
    tokens = sample(logits, temperature, top_k, top_p, rng)
    for row, token in zip(logits, tokens):  # the allowed set, from the definitions
        probs = np.exp((row - row.max()) / temperature)
        if top_k is not None:
            kth = np.sort(row)[-min(top_k, V)]
            assert row[token] >= kth
            probs[row < kth] = 0
        probs /= probs.sum()
        if top_p is not None:  # the likelier tokens alone must not already reach top_p
            assert probs[probs > probs[token]].sum() < top_p + 1e-9
