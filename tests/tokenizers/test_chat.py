"""Chat templates: plain data saved with the tokenizer, rendered literally."""

import pytest

from alphagrad.tokenizers import PLAIN, BPETokenizer, CharTokenizer, ChatTemplate, load

MESSAGES = [{"role": "system", "content": "Be {brief}."}, {"role": "user", "content": "Hi"}]


def test_plain_layout():
    assert PLAIN.render(MESSAGES) == "system: Be {brief}.\nuser: Hi\nassistant: "
    assert PLAIN.render(MESSAGES, add_generation_prompt=False).endswith("user: Hi\n")


def test_a_template_renders_literally_and_nothing_else_is_interpreted():
    t = ChatTemplate("<{role}>{content}</s>", "<assistant>", ("</s>",))
    assert t.render(MESSAGES) == "<system>Be {brief}.</s><user>Hi</s><assistant>"
    sneaky = ChatTemplate("{role.__class__}{content}", "", ("x",))
    assert sneaky.render([{"role": "u", "content": "c"}]) == "{role.__class__}c"


@pytest.mark.parametrize("make", [lambda: CharTokenizer.train("hello world"),
                                  lambda: BPETokenizer.train("hello world " * 20, 260)])
def test_saved_with_the_tokenizer_without_changing_its_fingerprint(make, tmp_path):
    tok = make()
    before = tok.fingerprint()
    tok.chat_template = ChatTemplate("[{role}] {content}\n", "[assistant] ", ("\n[",))
    assert tok.fingerprint() == before
    tok.save(tmp_path / "tok.json")
    back = load(tmp_path / "tok.json")
    assert back.chat_template == tok.chat_template and back == tok
    assert make().chat_template is None


@pytest.mark.parametrize("bad", [{"message": "no content"}, {"message": 3},
                                 {"stop": "x"}, {"stop": [""]}, {"stop": 5}, {"extra": 1}, []])
def test_bad_templates_are_refused_clearly(bad):
    with pytest.raises(ValueError, match="chat template"):
        ChatTemplate.from_dict(bad)
