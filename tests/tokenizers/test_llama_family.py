"""Llama-family tokenizer folders: SmolLM's byte-level BPE (digits split before GPT-2's
pattern, added special tokens) against Hugging Face tokenizers, and chat templates read from
tokenizer_config.json against jinja2's rendering."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alphagrad.tokenizers import BPETokenizer
from alphagrad.tokenizers.chat import ChatTemplate
from alphagrad.tokenizers.jinja_chat import chat_template_from_jinja

# Without Hugging Face's tokenizers, this test folder itself imports as "tokenizers" (a namespace
# package); asking for a submodule skips then instead of handing back the folder.
pytest.importorskip("tokenizers.models")
import tokenizers as hf

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"}, {"role": "user", "content": "Why {so}?"}]


def assert_renders_as_hugging_face(template, source: str, messages: list, **variables) -> None:
    """``template`` renders ``messages`` as jinja2 renders ``source`` with transformers' settings
    (trim_blocks, lstrip_blocks), with and without the generation prompt."""
    jinja2 = pytest.importorskip("jinja2")
    reference = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    for generation_prompt in (True, False):
        want = reference.render(messages=messages, add_generation_prompt=generation_prompt,
                                **variables)
        assert template.render(messages, generation_prompt) == want


def smollm_like(folder, individual_digits: bool = True):
    """A tokenizer built as SmolLM's: Digits, then ByteLevel with GPT-2's regex."""
    rng = np.random.default_rng(0)
    words = ["model", " the", " 42", "  x", "3.14", "don't", " café", "\n\n", "\t", "١٢٣"]
    text = "".join(rng.choice(words, size=4000))
    pre = hf.pre_tokenizers
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = pre.Sequence([pre.Digits(individual_digits=individual_digits),
                                      pre.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = hf.decoders.ByteLevel()
    tok.train_from_iterator([text], hf.trainers.BpeTrainer(
        vocab_size=350, special_tokens=SPECIALS, initial_alphabet=pre.ByteLevel.alphabet()))
    folder.mkdir(exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return tok


@pytest.mark.parametrize("individual_digits", [True, False])
def test_digits_then_byte_level_encodes_as_hugging_face(tmp_path, individual_digits):
    reference = smollm_like(tmp_path, individual_digits)
    ours = BPETokenizer.from_pretrained(tmp_path)
    assert ours.chat_template is None  # no tokenizer_config.json
    rng = np.random.default_rng(1)
    pieces = ["a", " ", "  ", "1", "23", " 4", "x'", "'s", "\n", "\t\t", "!?", "é", "٣", "Ⅻ",
              "model", " the", "  7"]
    texts = ["".join(rng.choice(pieces, size=rng.integers(1, 12))) for _ in range(300)]
    texts += ["<|im_start|>user\nHi 12 there<|im_end|>\n", "2024-01-01  \n 9"]
    for text in texts:
        want = reference.encode(text).ids
        assert ours.encode(text, allowed_special="all") == want, repr(text)
        assert ours.decode(want) == text


def test_chat_template_from_tokenizer_config_renders_as_jinja(tmp_path):
    pytest.importorskip("jinja2")
    smollm_like(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": CHATML, "eos_token": "<|im_end|>"}))
    template = BPETokenizer.from_pretrained(tmp_path).chat_template
    assert template.stop == ("<|im_end|>",)
    assert_renders_as_hugging_face(template, CHATML, MESSAGES)


# The same loop written over several lines: whitespace control, attribute access, comments,
# newlines after block tags and indented tags, which Hugging Face's Jinja settings trim.
MULTI_LINE = [
    ("{%- for message in messages %}\n  {{- '<|im_start|>' + message.role + '\\n' + "
     "message.content + '<|im_end|>\\n' }}\n{%- endfor %}\n{%- if add_generation_prompt "
     "%}\n  {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"),
    ("{# ChatML #}\n{% for message in messages %}\n{{ '<|im_start|>' + message['role'] + '\\n' "
     "+ message['content'] + '<|im_end|>\\n' }}\n{% endfor %}\n{% if add_generation_prompt %}\n"
     "    {{ '<|im_start|>assistant\\n' }}\n{% endif %}\n"),
    ("{% for message in messages %}\n    {{ message.role + ': ' + message.content }}\n"
     "    {% endfor %}\n{% if add_generation_prompt %}\n  A:{% endif %}"),
    ("{% for message in messages +%}\n{{ message['content'] }}\n{%+ endfor %}"
     "{% if add_generation_prompt %}A{% endif %}"),
]


# TinyLlama-chat's form: a branch per role, eos_token after each message, the generation prompt
# inside the loop after the last message
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
          "{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + "
          "eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + "
          "message['content'] + eos_token }}\n{% endif %}\n"
          "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
          "{% endfor %}")
# a default branch and text common to every role
WITH_ELSE = ("{% for message in messages %}<m>{% if message.role == \"system\" %}[sys] "
             "{{ message.content }}{% elif message.role == 'user' %}Q: {{ message.content }}"
             "{% else %}{{ message.role + ': ' + message.content }}{% endif %}</m>\n{% endfor %}"
             "{% if add_generation_prompt %}A:{% endif %}")


@pytest.mark.parametrize("source", [ZEPHYR, WITH_ELSE])
def test_templates_that_branch_on_the_role_render_as_hugging_face(source):
    template = chat_template_from_jinja(source, eos_token="</s>")
    messages = [*MESSAGES, {"role": "tool", "content": "42"}]
    assert_renders_as_hugging_face(template, source, messages, eos_token="</s>")
    assert ChatTemplate.from_dict(template.to_dict()) == template
    if source == ZEPHYR:
        assert template.stop == ("</s>",) and template.generation_prompt == "<|assistant|>\n"


@pytest.mark.parametrize("source", MULTI_LINE)
def test_multi_line_templates_render_as_hugging_face(source):
    assert_renders_as_hugging_face(chat_template_from_jinja(source), source, MESSAGES)


@pytest.mark.parametrize("source, message", [
    (("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\\nYou are SmolLM<|im_end|>\\n' }}{% endif %}"
      "{{ message['content'] }}{% endfor %}{% if add_generation_prompt %}{{ 'A:' }}{% endif %}"),
     "inside the message loop is not supported"),
    (("{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}"
      "{% if add_generation_prompt %}{{ 'A:' }}{% endif %}"), "outside the message loop"),
    (("{% for message in messages %}{% if message['role'] == 'user' %}{% if x %}"
      "{{ message['content'] }}{% endif %}{% endif %}{% endfor %}"), "with no other statement"),
    (("{% for message in messages %}{{ message['content'] }}"
      "{% if loop.last and add_generation_prompt %}A{% endif %}B{% endfor %}"),
     "text after the loop.last generation prompt"),
    (("{% for message in messages %}{{ message['content'] }}{% endfor %}  \n"
      "{% if add_generation_prompt %}{{ 'A:' }}{% endif %}"), "outside the message loop"),
    (("{% for message in messages %}{{ message['content'] | trim }}{% endfor %}"
      "{% if add_generation_prompt %}{{ 'A:' }}{% endif %}"),
     "uses \"message\\['content'\\] \\| trim\""),
])
def test_unsupported_chat_templates_are_named(tmp_path, source, message):
    with pytest.raises(ValueError, match=message):
        chat_template_from_jinja(source)
    smollm_like(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": source}))
    with pytest.warns(UserWarning, match="chat requests use the plain template"):
        assert BPETokenizer.from_pretrained(tmp_path).chat_template is None
