"""A chat template that writes special tokens: the prompt holds their ids, not their names."""

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")

from fastapi.testclient import TestClient

import alphagrad as ag
from alphagrad import nn
from alphagrad.serve import create_app
from alphagrad.serve.engine import Engine
from alphagrad.serve.registry import ServedModel
from alphagrad.tokenizers import BPETokenizer, ChatTemplate

START, END = 256, 257  # byte-level BPE without merges: bytes are ids 0-255


def test_special_tokens_of_the_template_are_encoded_as_their_ids(tmp_path):
    tokenizer = BPETokenizer([], "gpt2", {"<|im_start|>": START, "<|im_end|>": END})
    tokenizer.chat_template = ChatTemplate(message="<|im_start|>{role}\n{content}<|im_end|>\n",
                                           generation_prompt="<|im_start|>assistant\n",
                                           stop=("<|im_end|>",))
    ag.manual_seed(0)
    model = nn.GPT(nn.GPTConfig(block_size=64, vocab_size=258, n_layer=1, n_head=2, n_embd=16))
    served = ServedModel("chatml", "gpt", model, tokenizer, Engine(model, tokenizer, slots=2),
                         "memory", 0)
    messages = [{"role": "user", "content": "hi"}]
    expected = [START, *b"user\nhi", END, *b"\n", START, *b"assistant\n"]
    with TestClient(create_app({"chatml": served}, runs_root=tmp_path)) as client:
        tokens = client.post("/tokenize", json={"model": "chatml", "messages": messages})
        assert tokens.json()["tokens"] == expected
        reply = client.post("/v1/chat/completions", json={"model": "chatml", "max_tokens": 2,
                                                          "messages": messages, "seed": 0})
        assert reply.json()["usage"]["prompt_tokens"] == len(expected)
    # plain text that merely looks like a special token stays text in a completion prompt
    assert served.encode("<|im_end|>") == list(b"<|im_end|>")


def test_logprob_token_texts_keep_their_leading_spaces(sentencepiece_of):
    """A reply's per-token texts (logprobs) join into the reply: a SentencePiece token keeps the
    space that decoding it alone drops, as Hugging Face does; byte-level tokens are unchanged."""
    from alphagrad.serve.registry import ServedModel
    from alphagrad.tokenizers import BPETokenizer

    sp = sentencepiece_of("ab")  # tokens ▁ab, ▁a, ▁, a, b and bytes
    served = ServedModel("m", "llama", None, sp, None, "", 0)
    ids = sp.encode("ab ab b")
    assert ids == [sp.vocab[t] for t in ("▁ab", "▁ab", "▁", "b")]
    assert [served.token_text(t) for t in ids] == [" ab", " ab", " ", "b"]
    assert sp.decode([sp.vocab["▁ab"]]) == "ab"  # alone, as Hugging Face decodes it
    bpe = BPETokenizer.train("the cat sat on the mat " * 20, vocab_size=270, pattern="gpt2")
    served = ServedModel("m", "gpt", None, bpe, None, "", 0)
    assert all(served.token_text(t) == bpe.decode([t]) for t in range(bpe.vocab_size))
