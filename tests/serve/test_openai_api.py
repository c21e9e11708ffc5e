"""The real ``openai`` client against a live server holding a tiny trained model."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from serve_support import Slow

openai = pytest.importorskip("openai", reason="the test extra's openai client is not installed")

MODEL = "tiny"


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)


def test_models_list(client, served):
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert models[0].model_extra["context_length"] == served[MODEL].context_length == 64


def test_completion_is_the_models_own_continuation(client, served):
    """Greedy text equals the library's own greedy sampling of the same checkpoint."""
    s = served[MODEL]
    out = client.completions.create(model=MODEL, prompt="alpha beta ", max_tokens=12,
                                    temperature=0)
    ids = s.tokenizer.encode("alpha beta ")
    expected = list(s.model.stream(ids, 12, temperature=0))
    assert out.choices[0].text == s.tokenizer.decode(expected)
    assert out.choices[0].finish_reason == "length"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (len(ids), 12)


def test_seeds_repeat_and_streaming_gives_the_same_text(client):
    kwargs = {"model": MODEL, "prompt": "gamma ", "max_tokens": 20, "seed": 7}
    first = client.completions.create(**kwargs).choices[0].text
    assert client.completions.create(**kwargs).choices[0].text == first
    chunks = list(client.completions.create(**kwargs, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == first
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    other = client.completions.create(**{**kwargs, "seed": 8}).choices[0].text
    assert other != first


def test_n_choices_and_prompt_lists(client):
    out = client.completions.create(model=MODEL, prompt=["alpha ", "beta "], n=2, max_tokens=8,
                                    seed=1)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    texts = [c.text for c in out.choices]
    assert texts[0] != texts[1]  # choice i is seeded seed + i
    single = client.completions.create(model=MODEL, prompt="beta ", max_tokens=8, seed=2)
    assert texts[3] == single.choices[0].text
    assert out.usage.completion_tokens == 32


def test_stop_sequences_and_echo(client):
    free = client.completions.create(model=MODEL, prompt="delta ", max_tokens=30, seed=3)
    text = free.choices[0].text
    stop = text[4:6]
    out = client.completions.create(model=MODEL, prompt="delta ", max_tokens=30, seed=3,
                                    stop=[stop], echo=True)
    assert out.choices[0].text == "delta " + text[:text.find(stop)]
    assert out.choices[0].finish_reason == "stop"


def test_logprobs_are_the_models_log_softmax(client, served):
    import numpy as np

    s = served[MODEL]
    out = client.completions.create(model=MODEL, prompt="alpha", max_tokens=1, temperature=0,
                                    logprobs=3)
    lp = out.choices[0].logprobs
    logits, _ = s.model(np.array([s.tokenizer.encode("alpha")]))
    row = logits.data[0, -1].astype(np.float64)
    expected = row - row.max() - np.log(np.exp(row - row.max()).sum())
    best = np.argsort(-expected)[:3]
    assert lp.tokens == [s.tokenizer.decode([int(best[0])])]
    assert lp.token_logprobs[0] == pytest.approx(expected[best[0]], abs=1e-6)
    assert list(lp.top_logprobs[0].values()) == pytest.approx(expected[best].tolist(), abs=1e-6)


def test_echo_with_logprobs_scores_the_prompt(client, served):
    """OpenAI's echo + logprobs: the prompt's tokens first, the first with null, each other
    the model's log-probability of it after the tokens before it (also with max_tokens 0,
    and streamed)."""
    import numpy as np

    s = served[MODEL]
    prompt = "alpha beta gamma delta " * 2
    ids = s.tokenizer.encode(prompt)
    logits, _ = s.model(np.array([ids]), all_logits=True)
    rows = logits.data[0].astype(np.float64)  # row i predicts token i + 1
    rows = rows - rows.max(-1, keepdims=True)
    rows -= np.log(np.exp(rows).sum(-1, keepdims=True))
    expected = [rows[i, ids[i + 1]] for i in range(len(ids) - 1)]
    for max_tokens in (0, 3):
        out = client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens,
                                        temperature=0, echo=True, logprobs=2)
        lp = out.choices[0].logprobs
        assert out.choices[0].text.startswith(prompt)
        assert lp.tokens[:len(ids)] == [s.tokenizer.decode([t]) for t in ids]
        assert len(lp.tokens) == len(ids) + max_tokens
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        assert lp.token_logprobs[1:len(ids)] == pytest.approx(expected, abs=1e-5)
        best = np.argsort(-rows[len(ids) // 2])[:2]
        assert list(lp.top_logprobs[len(ids) // 2 + 1]) == [s.tokenizer.decode([int(t)])
                                                             for t in best]
        assert lp.text_offset[:3] == [0, len(lp.tokens[0]), len(lp.tokens[0] + lp.tokens[1])]
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=3,
                                            temperature=0, echo=True, logprobs=2, stream=True))
    assert chunks[0].choices[0].text == prompt
    assert chunks[0].choices[0].logprobs.token_logprobs[1:] == pytest.approx(expected, abs=1e-5)
    assert "".join(c.choices[0].text for c in chunks) == out.choices[0].text


def test_chat_renders_the_plain_template(client, served):
    s = served[MODEL]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "alpha"}]
    out = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10,
                                         temperature=0)
    prompt = s.tokenizer.encode("system: be brief\nuser: alpha\nassistant: ")
    assert out.usage.prompt_tokens == len(prompt)
    expected = s.tokenizer.decode(list(s.model.stream(prompt, 10, temperature=0)))
    reply = out.choices[0].message.content
    assert expected.startswith(reply) and out.choices[0].message.role == "assistant"
    stream = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10,
                                                 temperature=0, stream=True))
    assert stream[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in stream) == reply
    assert stream[-1].choices[0].finish_reason == out.choices[0].finish_reason


def test_errors_have_openais_shape_and_status(client, live):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="nope", prompt="x")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="x", temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="alpha " * 20, max_tokens=10)
    assert e.value.body["code"] == "context_length_exceeded"
    truncated = client.completions.create(model=MODEL, prompt="alpha " * 20, max_tokens=10,
                                          extra_body={"truncate": True})
    assert truncated.usage.prompt_tokens == 54
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": ""}])
    assert e.value.body["param"] == "messages[0].role"
    for body in (b"{not json", b"[1, 2]"):
        r = httpx.post(live.url + "/v1/completions", content=body,
                       headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("the request body")


def test_tokenize_and_detokenize_round_trip(live, served):
    tok = served[MODEL].tokenizer
    r = httpx.post(live.url + "/tokenize", json={"model": MODEL, "prompt": "beta gamma"}).json()
    assert r["tokens"] == tok.encode("beta gamma") and r["max_model_len"] == 64
    back = httpx.post(live.url + "/detokenize", json={"model": MODEL, "tokens": r["tokens"]})
    assert back.json() == {"prompt": "beta gamma"}
    assert httpx.get(live.url + "/health").json() == {"status": "ok", "models": [MODEL]}


def test_eight_concurrent_streams_get_the_tokens_they_get_alone(client):
    def stream(seed: int) -> str:
        chunks = client.completions.create(model=MODEL, prompt=f"{'alpha beta ' * (seed % 3)}x",
                                           max_tokens=24, seed=seed, stream=True)
        return "".join(c.choices[0].text for c in chunks)

    alone = [stream(seed) for seed in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(stream, range(8)))
    assert together == alone
    assert len(set(alone)) > 1


def test_a_client_that_disconnects_frees_its_slot(live, served, monkeypatch):
    engine = served[MODEL].engine
    monkeypatch.setattr(engine, "model", Slow(engine.model))
    body = {"model": MODEL, "prompt": "alpha", "max_tokens": 55, "stream": True}
    with httpx.Client(base_url=live.url) as http, http.stream("POST", "/v1/completions",
                                                               json=body) as r:
        assert next(r.iter_lines()).startswith("data: ")
        request = engine._running[0]
    deadline = time.monotonic() + 5
    while engine.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.running == 0 and engine.free_slots == 16
    assert request.finish_reason == "cancelled" and len(request.tokens) < 40
