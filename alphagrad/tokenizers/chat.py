"""Chat templates: how a list of messages becomes the text a model continues.

A template is plain data stored with the tokenizer (``tokenizer.chat_template``, saved in its
file and so in every checkpoint), never code:

    >>> template = ChatTemplate(message="<|{role}|>{content}<|end|>\\n",
    ...                         generation_prompt="<|assistant|>", stop=("<|end|>",))
    >>> template.render([{"role": "user", "content": "Hi"}])
    '<|user|>Hi<|end|>\\n<|assistant|>'

Each message is ``message`` (or ``roles[role]``, a format of its own for that role) with
``{role}`` and ``{content}`` replaced (literally: nothing else in the string is interpreted), in
order; ``generation_prompt`` follows, and a reply ends at the first ``stop`` string. A tokenizer
without a template is served with ``PLAIN``: one ``role: content`` line per message, then
``assistant: ``, the reply ending where the model starts a new ``user:``, ``system:`` or
``assistant:`` line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChatTemplate:
    message: str = "{role}: {content}\n"
    generation_prompt: str = "assistant: "
    stop: tuple[str, ...] = field(default=("\nuser:", "\nsystem:", "\nassistant:"))
    roles: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self):
        texts = (self.message, self.generation_prompt)
        if not isinstance(self.roles, Mapping) or not all(
                isinstance(r, str) and isinstance(f, str) for r, f in self.roles.items()):
            raise ValueError("chat template: 'roles' must map role names to message formats")
        if not all(isinstance(t, str) for t in texts) or not any(
                "{content}" in f for f in (self.message, *self.roles.values())):
            raise ValueError("chat template: 'message' and 'generation_prompt' must be strings, "
                             "and a message format must contain {content}")
        stop = self.stop
        if isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop):
            raise ValueError("chat template: 'stop' must be a list of non-empty strings")
        object.__setattr__(self, "stop", tuple(stop))
        object.__setattr__(self, "roles", dict(self.roles))

    def render(self, messages: Iterable[Mapping[str, str]], add_generation_prompt: bool = True
               ) -> str:
        """The prompt text for ``messages`` (dicts with ``role`` and ``content``)."""
        text = "".join(self.roles.get(m["role"], self.message).replace("{role}", m["role"])
                       .replace("{content}", m["content"]) for m in messages)
        return text + self.generation_prompt if add_generation_prompt else text

    def literals(self) -> str:
        """All the text the template itself writes (to find the special tokens among it)."""
        return "".join((self.message, self.generation_prompt, *self.roles.values()))

    def to_dict(self) -> dict:
        return {"message": self.message, "generation_prompt": self.generation_prompt,
                "stop": list(self.stop), **({"roles": self.roles} if self.roles else {})}

    @classmethod
    def from_dict(cls, d: object) -> ChatTemplate:
        if not isinstance(d, dict) or set(d) - {"message", "generation_prompt", "stop", "roles"}:
            raise ValueError("chat template: expected a map with 'message', 'generation_prompt', "
                             "'stop' and optionally 'roles'")
        try:
            return cls(**d)
        except TypeError:
            raise ValueError("chat template: 'stop' must be a list of non-empty strings") from None


PLAIN = ChatTemplate()
