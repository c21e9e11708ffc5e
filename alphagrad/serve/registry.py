"""The models a server holds: each loaded once, named, with its tokenizer and its engine.

A source is a checkpoint file, a run folder (its best checkpoint, else its latest) or a local
Hugging Face GPT-2 or Llama folder, of any model family ``load_model`` reads. A model is named
after its run folder, its file or its folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphagrad.serve.engine import Engine
from alphagrad.tokenizers import PLAIN, ChatTemplate
from alphagrad.train.sampling import TextDecoder, checkpoint_file, encode_prompt, load_model


@dataclass
class ServedModel:
    name: str
    kind: str
    model: Any
    tokenizer: Any
    engine: Engine
    source: str
    created: int

    @property
    def context_length(self) -> int:
        return self.model.config.block_size

    @property
    def chat_template(self) -> ChatTemplate:
        return getattr(self.tokenizer, "chat_template", None) or PLAIN

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise ValueError(f"model {self.name!r} has no tokenizer: send token ids, not text")
        return encode_prompt(self.tokenizer, text)

    def encode_chat(self, text: str) -> list[int]:
        """The ids of a prompt the chat template rendered: the special tokens the template
        writes (``<|im_start|>`` and the like) become their ids, as the model saw them in
        training, not the characters of their names."""
        template = self.chat_template
        specials = [s for s in getattr(self.tokenizer, "special_tokens", {})
                    if s in template.literals()]
        if not specials:
            return self.encode(text)
        return encode_prompt(self.tokenizer, text, specials)

    def decode(self, tokens: list[int]) -> str:
        if self.tokenizer is None:
            raise ValueError(f"model {self.name!r} has no tokenizer: it cannot make text")
        return self.tokenizer.decode(tokens)

    def token_text(self, token: int) -> str:
        """One token's text as it stands inside a reply: with the leading space that ``decode``
        of a SentencePiece token alone drops, a split character's bytes as U+FFFD."""
        if self.tokenizer is None:
            raise ValueError(f"model {self.name!r} has no tokenizer: it cannot make text")
        decoder = TextDecoder(self.tokenizer)
        return decoder.push(token) + decoder.flush()

    def start_token(self) -> int | None:
        """The token an empty prompt starts from (``<|endoftext|>``, as GPT-2), if any."""
        return self.engine.end_of_text


def _name(path: Path, checkpoint: Path) -> str:
    if path.is_dir():
        return path.resolve().name
    parent = checkpoint.resolve().parent
    return parent.parent.name if parent.name == "checkpoints" else checkpoint.stem


def load(source: str | Path, slots: int = 16, name: str | None = None) -> ServedModel:
    """Load one model, of any family ``load_model`` reads; its engine starts with the app."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint, run folder or model folder")
    checkpoint = checkpoint_file(path)
    model, tokenizer, _ = load_model(checkpoint)
    return ServedModel(name or _name(path, checkpoint), model.kind, model, tokenizer,
                       Engine(model, tokenizer, slots=slots), str(checkpoint), int(time.time()))


def load_all(sources: list[str | Path], slots: int = 16) -> dict[str, ServedModel]:
    """Every source loaded, by a unique name (``-2``, ``-3``... added on a clash)."""
    models: dict[str, ServedModel] = {}
    for source in sources:
        served = load(source, slots)
        base, n = served.name, 1
        while served.name in models:
            n += 1
            served.name = f"{base}-{n}"
        models[served.name] = served
    return models
