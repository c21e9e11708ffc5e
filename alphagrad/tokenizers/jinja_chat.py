"""Hugging Face chat templates (Jinja source) read into a ``ChatTemplate``, without running them.

Only the common loop form is understood, as SmolLM's and other ChatML templates write it:

    {% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']
    + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n'
    }}{% endif %}

that is: text and ``{{ ... }}`` outputs joining string literals, ``message['role']``,
``message['content']`` and ``eos_token`` inside the loop, then the generation prompt. Inside the
loop one ``if``/``elif``/``else`` chain on ``message['role']`` may give each role its own format
(TinyLlama-chat's form), and the generation prompt may sit at the loop's end under
``if loop.last and add_generation_prompt``. Whitespace is read as Hugging Face renders templates
(Jinja's ``trim_blocks`` and ``lstrip_blocks``), so the template may be written over several
lines. Anything else (other conditions, default system prompts, filters, macros) is refused with
a ValueError naming it, so a template is never rendered differently from how its model was
trained.
"""

from __future__ import annotations

import ast
import itertools
import re

from alphagrad.tokenizers.chat import ChatTemplate

_TAG = re.compile(r"(\{\{-?|\{%[-+]?|\{#[-+]?)(.*?)([-+]?\}\}|[-+]?%\}|[-+]?#\})", re.DOTALL)
_FIELD = re.compile(r"""message(?:\[\s*(['"])(role|content)\1\s*\]|\.(role|content))$""")
_STRING = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"$""", re.DOTALL)
_LINE_INDENT = re.compile(r"[ \t]*")


def _pieces(source: str) -> list[tuple[str, str]]:
    """("text" | "out" | "stmt", content) in order, with whitespace handled as Hugging Face
    renders templates (Jinja with ``trim_blocks`` and ``lstrip_blocks``): ``-`` trims all
    whitespace on its side; a block or comment tag drops the newline right after it and the
    indentation before it on its own line (unless marked ``+``); comments give nothing."""
    pieces: list[tuple[str, str]] = []
    pos, after, line_start = 0, "", True  # after: how the previous tag ended
    for m in _TAG.finditer(source):
        text, opening, closing = source[pos:m.start()], m.group(1), m.group(3)
        text, newline_dropped = _after_tag(text, after)
        line_start = line_start or newline_dropped
        if opening.endswith("-"):
            text = text.rstrip()
        elif not opening.startswith("{{") and not opening.endswith("+"):
            line = text.rfind("\n") + 1
            if (line > 0 or line_start) and _LINE_INDENT.fullmatch(text, line):
                text = text[:line]
        if text:
            pieces.append(("text", text))
        if not opening.startswith("{#"):
            pieces.append(("out" if opening.startswith("{{") else "stmt", m.group(2).strip()))
        after = "-" if closing.startswith("-") else \
            "block" if not closing.endswith("}}") and not closing.startswith("+") else ""
        pos, line_start = m.end(), False
    tail, _ = _after_tag(source[pos:], after)
    if tail:
        pieces.append(("text", tail))
    return pieces


def _after_tag(text: str, after: str) -> tuple[str, bool]:
    """``text`` as it follows a tag that ended as ``after`` (``"-"``: all whitespace trimmed;
    ``"block"``: one newline dropped; ``""``: as it is), and whether a newline was dropped."""
    if after == "-":
        return text.lstrip(), False
    if after == "block" and text.startswith("\n"):
        return text[1:], True
    return text, False


def _expression(expr: str, eos_token: str | None) -> str:
    """A ``+`` join of string literals, message fields and ``eos_token``, as text with
    {role}/{content}."""
    out = []
    for term in _split_plus(expr):
        if _STRING.match(term):
            out.append(ast.literal_eval(term))  # a literal only: nothing is evaluated
        elif m := _FIELD.match(term):
            out.append("{" + (m.group(2) or m.group(3)) + "}")
        elif term == "eos_token" and eos_token is not None:
            out.append(eos_token)
        else:
            raise ValueError(f"chat template: the output {{{{ {expr} }}}} uses {term!r}, which "
                             "alphagrad does not render (string literals, message['role'], "
                             "message['content'] and eos_token joined by + only)")
    return "".join(out)


def _split_plus(expr: str) -> list[str]:
    terms, start, quote = [], 0, None
    for i, ch in enumerate(expr):
        if quote:
            if ch == quote and expr[i - 1] != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "+":
            terms.append(expr[start:i].strip())
            start = i + 1
    terms.append(expr[start:].strip())
    return terms


def _text(pieces: list[tuple[str, str]], eos_token: str | None, where: str) -> str:
    parts = []
    for kind, content in pieces:
        if kind == "stmt":
            raise ValueError(f"chat template: {{% {content} %}} {where} is not supported; "
                             "alphagrad reads the plain message loop, branches on "
                             "message['role'] and the generation prompt")
        parts.append(content if kind == "text" else _expression(content, eos_token))
    return "".join(parts)


def _statement(content: str) -> str:
    return re.sub(r"\s+", " ", content).replace('"', "'")


def _block(pieces: list, start: int, opening: str, what: str) -> int:
    """The index of the ``endif`` that closes the ``if`` at ``start`` (no nesting inside)."""
    for i in range(start + 1, len(pieces)):
        if pieces[i][0] == "stmt" and _statement(pieces[i][1]) == "endif":
            return i
        if pieces[i][0] == "stmt" and not _ROLE_BRANCH.fullmatch(_statement(pieces[i][1])):
            break
    raise ValueError(f"chat template: {{% {opening} %}} {what} must close with {{% endif %}}, "
                     "with no other statement inside")


_ROLE_TEST = r"message(?:\['role'\]|\.role) == '([^']*)'"
_ROLE_BRANCH = re.compile(rf"(?:if|elif) {_ROLE_TEST}|else")
_LAST_AND_PROMPT = {"if loop.last and add_generation_prompt",
                    "if add_generation_prompt and loop.last"}


def _role_formats(body: list, eos_token: str | None) -> tuple[str, dict[str, str]]:
    """(the default message format, per-role formats) of the message loop's body: text common
    to all roles around at most one if/elif/else chain on message['role']."""
    heads = [i for i, (kind, c) in enumerate(body) if kind == "stmt"]
    if not heads:
        return _text(body, eos_token, "inside the message loop"), {}
    first = heads[0]
    if not _statement(body[first][1]).startswith("if ") \
            or not _ROLE_BRANCH.fullmatch(_statement(body[first][1])):
        raise ValueError(f"chat template: {{% {body[first][1]} %}} inside the message loop is not "
                         "supported; alphagrad reads branches on message['role'] only")
    end = _block(body, first, body[first][1], "inside the message loop")
    prefix = _text(body[:first], eos_token, "inside the message loop")
    suffix = _text(body[end + 1:], eos_token, "inside the message loop")
    branches = [i for i in heads if first <= i < end] + [end]
    default, roles = prefix + suffix, {}
    for i, j in itertools.pairwise(branches):
        text = prefix + _text(body[i + 1:j], eos_token, "in a branch") + suffix
        m = re.fullmatch(rf"(?:if|elif) {_ROLE_TEST}", _statement(body[i][1]))
        if m is None:  # else
            default = text
        else:
            roles.setdefault(m.group(1), text)
    return default, roles


def chat_template_from_jinja(source: str, eos_token: str | None = None) -> ChatTemplate:
    """The ``ChatTemplate`` that renders as Jinja ``source`` does (for at least one message); a
    reply stops at the text the template puts after the assistant's content (or at
    ``eos_token`` if it puts none)."""
    pieces = _pieces(source)
    statements = [i for i, (kind, _) in enumerate(pieces) if kind == "stmt"]
    shape = [_statement(pieces[i][1]) for i in statements]
    if not shape or shape[0] != "for message in messages" or "endfor" not in shape \
            or shape.count("endfor") != 1 or "for message in messages" in shape[1:]:
        raise ValueError(f"chat template: its statements {shape} are not the plain form "
                         "(for message in messages ... endfor, if add_generation_prompt ... "
                         "endif) that alphagrad reads")
    loop, end_loop = statements[0], statements[shape.index("endfor")]
    body, after = pieces[loop + 1:end_loop], pieces[end_loop + 1:]
    generation_prompt = ""
    last = [i for i, (kind, c) in enumerate(body)
            if kind == "stmt" and _statement(c) in _LAST_AND_PROMPT]
    if last:  # the prompt inside the loop, after the last message
        close = _block(body, last[0], body[last[0]][1], "")
        if body[close + 1:]:
            raise ValueError("chat template: text after the loop.last generation prompt inside "
                             "the loop is not supported")
        generation_prompt = _text(body[last[0] + 1:close], eos_token, "in the prompt")
        body = body[:last[0]]
    if after and after[0][0] == "stmt" and _statement(after[0][1]) == "if add_generation_prompt" \
            and not last:
        close = _block(after, 0, "if add_generation_prompt", "")
        generation_prompt = _text(after[1:close], eos_token, "in the prompt")
        after = after[close + 1:]
    if pieces[:loop] or after:  # Hugging Face would render it, whitespace too
        raise ValueError("chat template: text outside the message loop and the generation prompt "
                         "(a bos_token, a default system prompt) is not supported")
    message, roles = _role_formats(body, eos_token)
    assistant = roles.get("assistant", message)
    if "{content}" not in message and not any("{content}" in f for f in roles.values()):
        raise ValueError("chat template: the message loop never outputs message['content']")
    after_content = assistant.rsplit("{content}", 1)[-1].replace("{role}", "").strip() \
        if "{content}" in assistant else ""
    stop = after_content or eos_token
    return ChatTemplate(message=message, generation_prompt=generation_prompt,
                        stop=(stop,) if stop else (), roles=roles)
