"""The batching engine alone: batched requests give the tokens ``model.stream`` gives alone."""

import numpy as np
import pytest

import alphagrad as ag
from alphagrad import nn
from alphagrad.serve.engine import Engine, SamplingParams, _held_back
from alphagrad.tokenizers import CharTokenizer


@pytest.fixture(scope="module")
def model():
    ag.manual_seed(0)
    m = nn.GPT(nn.GPTConfig(block_size=48, vocab_size=20, n_layer=2, n_head=2, n_embd=16))
    for p in m.parameters():  # sharper logits than the 0.02 init, so samples differ by seed
        p.data *= 6
    return m.eval()


def prompts(n: int) -> list[list[int]]:
    return [np.random.default_rng(i).integers(0, 20, size=2 + 4 * i).tolist() for i in range(n)]


def reference(model, prompt, p: SamplingParams) -> list[int]:
    return list(model.stream(np.array(prompt), p.max_tokens, temperature=p.temperature,
                             top_k=p.top_k, top_p=p.top_p, seed=p.seed))


def run(engine: Engine) -> int:
    steps = 0
    while engine.step():
        steps += 1
    return steps


def test_batched_requests_match_model_stream_alone(model):
    """More requests than slots, prompts longer than a prefill chunk, mixed sampling."""
    params = [SamplingParams(max_tokens=12, seed=i, temperature=(0.0, 1.0, 0.7)[i % 3],
                             top_k=(None, 4)[i % 2], top_p=(None, 0.9)[i % 3 == 2])
              for i in range(7)]
    engine = Engine(model, slots=3, prefill_chunk=5, prefill_tokens=8)
    requests = [engine.submit(p, q) for p, q in zip(prompts(7), params)]
    run(engine)
    for prompt, p, r in zip(prompts(7), params, requests):
        assert r.finish_reason == "length"
        assert r.tokens == reference(model, prompt, p)
    assert engine.free_slots == 3 and engine.running == 0


def test_a_long_prompt_is_read_in_chunks_while_others_decode(model):
    engine = Engine(model, slots=2, prefill_chunk=4, prefill_tokens=4)
    short = engine.submit([1, 2], SamplingParams(max_tokens=30, seed=0))
    engine.step()
    assert len(short.tokens) == 1
    long = engine.submit(list(range(1, 18)), SamplingParams(max_tokens=2, seed=1))
    for _ in range(5):  # 17 prompt tokens in chunks of 4: five steps, each also decoding `short`
        assert long.tokens == []
        engine.step()
    assert len(short.tokens) == 6 and len(long.tokens) == 1
    run(engine)
    assert long.tokens == reference(model, list(range(1, 18)), long.params)
    alone = engine.submit(list(range(1, 18)), long.params)  # steps that want no logits at all
    run(engine)
    assert alone.tokens == long.tokens


def test_prompt_logprobs_across_chunks_beside_other_streams(model):
    """Each prompt token after the first gets the model's log-probability of it given the
    tokens before it (the full forward's), also when the prompt is read in several chunks while
    another stream decodes; max_tokens 0 only scores."""
    prompt = np.random.default_rng(5).integers(0, 20, size=23).tolist()
    logits, _ = model(np.array([prompt]), all_logits=True)
    rows = logits.data[0].astype(np.float64)
    rows = rows - rows.max(-1, keepdims=True)
    rows -= np.log(np.exp(rows).sum(-1, keepdims=True))  # (T, V)
    engine = Engine(model, slots=3, prefill_chunk=5, prefill_tokens=6)
    other = engine.submit([3, 4], SamplingParams(max_tokens=20, seed=0))
    engine.step()
    scored = engine.submit(prompt, SamplingParams(max_tokens=0, prompt_logprobs=3))
    sampled = engine.submit(prompt, SamplingParams(max_tokens=4, seed=2, prompt_logprobs=0))
    run(engine)
    assert scored.finish_reason == "length" and scored.tokens == []
    for r in (scored, sampled):
        assert len(r.prompt_logprobs) == len(prompt) - 1
        got = [lp for lp, _ in r.prompt_logprobs]
        np.testing.assert_allclose(got, rows[np.arange(22), prompt[1:]], atol=1e-5)
    for i, (_, top) in enumerate(scored.prompt_logprobs):
        assert [t for t, _ in top] == np.argsort(-rows[i], kind="stable")[:3].tolist()
    assert sampled.tokens == reference(model, prompt, sampled.params)
    assert other.tokens == reference(model, [3, 4], other.params)


def test_cancel_frees_the_slot_before_the_next_step(model):
    engine = Engine(model, slots=1)
    first = engine.submit([1, 2, 3], SamplingParams(max_tokens=40, seed=0))
    second = engine.submit([4, 5], SamplingParams(max_tokens=3, seed=1))
    engine.step()
    engine.step()
    assert engine.free_slots == 0 and second.tokens == []
    engine.cancel(first)
    engine.step()  # the cancelled request leaves, the waiting one takes its slot and starts
    assert first.finish_reason == "cancelled" and len(first.tokens) == 2
    assert len(second.tokens) == 1
    run(engine)
    assert second.tokens == reference(model, [4, 5], second.params)


def test_stop_strings_end_the_text_before_them():
    tok = CharTokenizer.train("abcdefgh")
    ag.manual_seed(1)
    m = nn.GPT(nn.GPTConfig(block_size=40, vocab_size=tok.vocab_size, n_layer=1, n_head=1,
                            n_embd=8)).eval()
    e = Engine(m, tok)
    free = e.submit([1], SamplingParams(max_tokens=30, seed=3))
    run(e)
    text = free.text
    stop = text[5:7]
    cut = text.find(stop)
    stopped = e.submit([1], SamplingParams(max_tokens=30, seed=3, stop=(stop, "zzz")))
    run(e)
    assert stopped.finish_reason == "stop" and stopped.text == text[:cut]
    assert stopped.tokens == free.tokens[:len(stopped.tokens)]


def test_held_back_is_the_longest_stop_prefix_at_the_end():
    assert _held_back("hello wor", ["world"]) == 3
    assert _held_back("hello", ["xyz", "lo!"]) == 2
    assert _held_back("hello", ["abc"]) == 0


def test_submit_checks_the_prompt(model):
    engine = Engine(model, slots=1)
    with pytest.raises(ValueError, match="empty"):
        engine.submit([], SamplingParams())
    with pytest.raises(ValueError, match="out of range"):
        engine.submit([20], SamplingParams())
    with pytest.raises(ValueError, match="context length 48"):
        engine.submit([1] * 40, SamplingParams(max_tokens=9))
    done = engine.submit([1], SamplingParams(max_tokens=0))
    assert done.finish_reason == "length" and done.tokens == []


def test_a_second_family_is_served_alike():
    """Llama (rotary positions, grouped-query attention) through the same engine."""
    ag.manual_seed(2)
    llama = nn.Llama(nn.LlamaConfig(vocab_size=20, block_size=40, n_layer=2, n_head=4,
                                    n_kv_head=2, n_embd=16, intermediate_size=24)).eval()
    for p in llama.parameters():
        p.data *= 6
    params = [SamplingParams(max_tokens=10, seed=i, temperature=(0.0, 0.9)[i % 2])
              for i in range(4)]
    engine = Engine(llama, slots=4, prefill_chunk=4)
    requests = [engine.submit(p, q) for p, q in zip(prompts(4), params)]
    run(engine)
    for prompt, p, r in zip(prompts(4), params, requests):
        assert r.tokens == reference(llama, prompt, p)


def test_the_registry_serves_a_hugging_face_llama_folder(tmp_path):
    from alphagrad.serve.registry import load

    ag.manual_seed(3)
    llama = nn.Llama(nn.LlamaConfig(vocab_size=30, block_size=32, n_layer=1, n_head=2,
                                    n_kv_head=1, n_embd=16, intermediate_size=24)).eval()
    llama.save_pretrained(str(tmp_path / "tiny-llama"))
    served = load(tmp_path / "tiny-llama")
    assert (served.name, served.kind, served.context_length) == ("tiny-llama", "llama", 32)
    request = served.engine.submit([1, 2, 3], SamplingParams(max_tokens=6, seed=0))
    run(served.engine)
    assert request.tokens == reference(llama, [1, 2, 3], request.params)
