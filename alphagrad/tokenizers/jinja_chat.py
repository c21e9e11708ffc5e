"""Hugging Face chat templates (Jinja source) read into a ``ChatTemplate``, without running them.

Only the common loop form is understood, as SmolLM's and other ChatML templates write it:

    {% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']
    + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n'
    }}{% endif %}

that is: text and ``{{ ... }}`` outputs joining string literals, ``message['role']`` and
``message['content']`` inside the loop, then the generation prompt. Whitespace is read as
Hugging Face renders templates (Jinja's ``trim_blocks`` and ``lstrip_blocks``), so the template
may be written over several lines. Anything else (conditions
inside the loop, default system prompts, filters, macros) is refused with a ValueError naming
it, so a template is never rendered differently from how its model was trained.
"""

from __future__ import annotations

import ast
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
        if after == "-":
            text = text.lstrip()
        elif after == "block" and text.startswith("\n"):
            text, line_start = text[1:], True
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
    tail = source[pos:]
    tail = tail.lstrip() if after == "-" else \
        tail[1:] if after == "block" and tail.startswith("\n") else tail
    if tail:
        pieces.append(("text", tail))
    return pieces


def _expression(expr: str) -> str:
    """A ``+`` join of string literals and message fields, as text with {role}/{content}."""
    out = []
    for term in _split_plus(expr):
        if _STRING.match(term):
            out.append(ast.literal_eval(term))  # a literal only: nothing is evaluated
        elif m := _FIELD.match(term):
            out.append("{" + (m.group(2) or m.group(3)) + "}")
        else:
            raise ValueError(f"chat template: the output {{{{ {expr} }}}} uses {term!r}, which "
                             "alphagrad does not render (string literals and message['role'], "
                             "message['content'] joined by + only)")
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


def _text(pieces: list[tuple[str, str]], where: str) -> str:
    parts = []
    for kind, content in pieces:
        if kind == "stmt":
            raise ValueError(f"chat template: {{% {content} %}} {where} is not supported; "
                             "alphagrad reads the plain message loop and generation prompt")
        parts.append(content if kind == "text" else _expression(content))
    return "".join(parts)


def chat_template_from_jinja(source: str, eos_token: str | None = None) -> ChatTemplate:
    """The ``ChatTemplate`` that renders as Jinja ``source`` does; a reply stops at the text the
    template puts after each message's content (or at ``eos_token`` if it puts none)."""
    pieces = _pieces(source)
    statements = [(i, c) for i, (kind, c) in enumerate(pieces) if kind == "stmt"]
    shape = [re.sub(r"\s+", " ", c) for _, c in statements]
    if shape != ["for message in messages", "endfor", "if add_generation_prompt", "endif"]:
        raise ValueError(f"chat template: its statements {shape} are not the plain form "
                         "(for message in messages ... endfor, if add_generation_prompt ... "
                         "endif) that alphagrad reads")
    (loop, end_loop), (gen, end_gen) = [i for i, _ in statements[:2]], \
        [i for i, _ in statements[2:]]
    outside = pieces[:loop] + pieces[end_loop + 1:gen] + pieces[end_gen + 1:]
    if outside:  # Hugging Face would render it, whitespace too
        raise ValueError("chat template: text outside the message loop and the generation prompt "
                         "(a bos_token, a default system prompt) is not supported")
    message = _text(pieces[loop + 1:end_loop], "inside the message loop")
    if "{content}" not in message:
        raise ValueError("chat template: the message loop never outputs message['content']")
    after = message.rsplit("{content}", 1)[1].replace("{role}", "").strip()
    stop = after or eos_token
    return ChatTemplate(message=message,
                        generation_prompt=_text(pieces[gen + 1:end_gen], "in the prompt"),
                        stop=(stop,) if stop else ())
