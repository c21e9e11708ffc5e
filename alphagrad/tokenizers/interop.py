"""tiktoken ranks files and Hugging Face ``tokenizer.json``: reading, writing, converting."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
from pathlib import Path

from alphagrad.tokenizers.pretokenize import PATTERNS


def show_bytes(b: bytes) -> str:
    """A token's bytes for people: UTF-8 text with control characters and bad bytes escaped."""
    return json.dumps(b.decode("utf-8", "backslashreplace"), ensure_ascii=False)[1:-1]


def dumps(d: dict) -> bytes:
    return json.dumps(d, ensure_ascii=False, indent=2).encode()


def tiktoken_text(ranks: dict[bytes, int]) -> str:
    return "".join(f"{base64.b64encode(b).decode()} {t}\n" for b, t in ranks.items())


def read_tiktoken(path: str | os.PathLike) -> dict[bytes, int]:
    """bytes -> rank from a tiktoken ranks file."""
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as err:
        raise ValueError(f"cannot read ({err.strerror})") from None
    ranks = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise ValueError(f"line {number} is not '<base64 token> <rank>': "
                             f"{line[:60]!r}") from None
    if len(set(ranks.values())) != len(ranks):
        raise ValueError("two tokens share a rank")
    return ranks


def merges_from_ranks(ranks: dict[bytes, int]) -> tuple[list[int], list[tuple[int, int, int]]]:
    """(byte ids, ordered merges) that reproduce tiktoken's rank-ordered BPE.

    Each multi-byte token is split as tiktoken would split it using only lower ranks; the two
    final parts are its merge.
    """
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(f"single bytes {missing[:8]} have no rank: not a byte-level vocabulary")
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[k : k + 1] for k in range(len(token))]
        while len(parts) > 2:
            best, k = min((ranks.get(parts[k] + parts[k + 1], rank), k)
                          for k in range(len(parts) - 1))
            if best >= rank:
                break
            parts[k : k + 2] = [parts[k] + parts[k + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not the merge of two lower-rank "
                             "tokens")
        merges.append((ranks[parts[0]], ranks[parts[1]], rank))
    return [ranks[bytes([b])] for b in range(256)], merges


@functools.cache
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (used in ``tokenizer.json``)."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
               *range(ord("®"), ord("ÿ") + 1)]
    hidden = [b for b in range(256) if b not in visible]
    return {**{b: chr(b) for b in visible}, **{b: chr(256 + k) for k, b in enumerate(hidden)}}


def _to_unicode(b: bytes) -> str:
    table = byte_to_unicode()
    return "".join(table[x] for x in b)


def _header(special_tokens: dict[str, int]) -> dict:
    """The opening fields of a ``tokenizer.json``, its special tokens as added tokens."""
    added = [{"id": t, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s, t in special_tokens.items()]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added}


def huggingface_dict(vocab: dict[int, bytes], merges: list[tuple[int, int, int]], pattern: str,
                     is_gpt2: bool, special_tokens: dict[str, int]) -> dict:
    special = set(special_tokens.values())
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": is_gpt2}
    if is_gpt2:
        pre_tokenizer = byte_level
    else:
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
             "invert": False},
            {**byte_level, "use_regex": False}]}
    return {
        **_header(special_tokens),
        "normalizer": None, "pre_tokenizer": pre_tokenizer, "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                    "use_regex": False},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {_to_unicode(b): t for t, b in sorted(vocab.items()) if t not in special},
            "merges": [[_to_unicode(vocab[a]), _to_unicode(vocab[b])] for a, b, _ in merges],
        },
    }


def huggingface_config(end_of_text: str | None, model_max_length: int | None) -> dict:
    """A ``tokenizer_config.json`` under which ``transformers.AutoTokenizer`` uses our
    ``tokenizer.json`` as it is (not GPT-2's rules), with the special tokens that exist."""
    return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": end_of_text,
            "eos_token": end_of_text, "unk_token": None, "pad_token": None,
            "add_prefix_space": False, "clean_up_tokenization_spaces": False,
            **({"model_max_length": model_max_length} if model_max_length else {})}


def read_huggingface(d: object) -> tuple[str, dict[str, int], list[int], list[tuple]]:
    """(pattern, special tokens, byte ids, merges) of a byte-level BPE ``tokenizer.json``.

    A foreign file is a bad value, not a programming error: ValueError, like other damage.
    """
    model = _bpe_model(d)
    if model.get("byte_fallback") or d.get("normalizer") is not None:
        raise ValueError("this is a SentencePiece-style BPE (byte_fallback or a normalizer, as "
                         "Llama 2's and TinyLlama's), not byte-level: open it with "
                         "SentencePieceBPE or alphagrad.tokenizers.load")
    pattern = _hf_pattern(d.get("pre_tokenizer"))
    vocab, merges = _vocab_and_merges(model)
    char_to_byte = {c: b for b, c in byte_to_unicode().items()}
    try:
        byte_ids = [vocab[byte_to_unicode()[b]] for b in range(256)]
    except KeyError as err:
        raise ValueError(f"byte {err.args[0]!r} is missing: not a byte-level vocabulary") from None
    out = []
    for rank, merge in enumerate(merges):
        pair = merge.split(" ") if isinstance(merge, str) else merge
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
            raise ValueError(f"merge {rank} is {merge!r:.60}; a merge is 'left right' or "
                             "[left, right]")
        left, right = pair
        if left not in vocab or right not in vocab or left + right not in vocab:
            raise ValueError(f"merge {rank} {merge!r:.60} uses a token missing from the "
                             "vocabulary")
        out.append((vocab[left], vocab[right], vocab[left + right]))
    if any(c not in char_to_byte for token in vocab for c in token):
        raise ValueError("vocabulary has tokens outside the byte-level alphabet")
    return pattern, _added_tokens(d.get("added_tokens") or []), byte_ids, out


def _bpe_model(d: object) -> dict:
    """The ``model`` of a ``tokenizer.json``, which must be a BPE. A foreign file is a bad value,
    not a programming error: ValueError, like other damage."""
    model = d.get("model") if isinstance(d, dict) else None
    is_bpe = isinstance(model, dict) and model.get("type") == "BPE"
    if not is_bpe:
        raise ValueError("not a Hugging Face BPE tokenizer.json (model.type must be 'BPE')")
    return model


def _vocab_and_merges(model: dict) -> tuple[dict, list]:
    vocab, merges = model.get("vocab"), model.get("merges")
    well_formed = isinstance(vocab, dict) and isinstance(merges, list)
    if not well_formed:
        raise ValueError("model.vocab must be an object and model.merges a list")
    return vocab, merges


def _added_tokens(added: object) -> dict[str, object]:
    """``added_tokens`` as text -> id (the ids are checked where the tokenizer is built)."""
    entries = added if isinstance(added, list) else [added]
    if not all(isinstance(t, dict) and isinstance(t.get("content"), str) and "id" in t
               for t in entries):
        raise ValueError(f"added_tokens must be a list of {{\"id\": ..., \"content\": ...}} "
                         f"objects, got {added!r:.60}")
    return {t["content"]: t["id"] for t in entries}


def _digits_then_gpt2(individual: bool) -> str:
    """One regex that splits as a Digits pre-tokenizer followed by GPT-2's ByteLevel split
    (SmolLM's): digits stand alone (or in runs), and whitespace before a digit ends its own piece
    as it would at the end of the text."""
    digits = r"\p{N}" if individual else r"\p{N}+"
    return (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|""" + digits
            + r"""| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+""")


def _hf_pattern(pre: object) -> str:
    is_sequence = isinstance(pre, dict) and pre.get("type") == "Sequence"
    steps = pre.get("pretokenizers", []) if is_sequence else [pre]
    steps = steps if isinstance(steps, list) else [steps]  # a lone step is refused below
    if len(steps) == 2 and isinstance(steps[0], dict) and steps[0].get("type") == "Digits":
        byte_level = steps[1]
        if not (isinstance(byte_level, dict) and byte_level.get("type") == "ByteLevel"
                and byte_level.get("use_regex", True) and not byte_level.get("add_prefix_space")):
            raise ValueError("a Digits pre-tokenizer is supported only before ByteLevel "
                             "(use_regex=true, add_prefix_space=false)")
        return _digits_then_gpt2(bool(steps[0].get("individual_digits", False)))
    byte_level = [s for s in steps if isinstance(s, dict) and s.get("type") == "ByteLevel"]
    splits = [s for s in steps if isinstance(s, dict) and s.get("type") == "Split"]
    if len(byte_level) != 1 or len(steps) != len(byte_level) + len(splits) or len(splits) > 1:
        raise ValueError("pre_tokenizer must be ByteLevel, optionally after one regex Split")
    if byte_level[0].get("add_prefix_space"):
        raise ValueError("ByteLevel add_prefix_space=true is not supported")
    if splits:
        pattern = splits[0].get("pattern")
        regex_pattern = pattern.get("Regex") if isinstance(pattern, dict) else None
        isolated = splits[0].get("behavior") == "Isolated" and not splits[0].get("invert")
        if not isinstance(regex_pattern, str) or not isolated:
            raise ValueError("the Split pre-tokenizer must be an isolated, non-inverted Regex")
        return regex_pattern
    if byte_level[0].get("use_regex", True):
        return PATTERNS["gpt2"]
    raise ValueError("pre_tokenizer does not split text (ByteLevel use_regex=false, no Split)")


# ----------------------------------------------------------------------------- SentencePiece BPE
_SP_SPACE = "▁"


def is_sentencepiece(d: object) -> bool:
    """Whether a ``tokenizer.json`` is SentencePiece-style BPE (byte fallback, ``▁`` for spaces)
    rather than byte-level."""
    if not isinstance(d, dict):
        return False
    model, pre = d.get("model"), d.get("pre_tokenizer")
    return (isinstance(model, dict) and bool(model.get("byte_fallback"))) \
        or d.get("normalizer") is not None \
        or (isinstance(pre, dict) and pre.get("type") == "Metaspace")


def _steps(node: object, key: str) -> list:
    if isinstance(node, dict) and node.get("type") == "Sequence":
        steps = node.get(key)
        return steps if isinstance(steps, list) else [steps]
    return [] if node is None else [node]


def _is_replace(step: object, old: str, new: str) -> bool:
    return isinstance(step, dict) and step.get("type") == "Replace" \
        and step.get("pattern") == {"String": old} and step.get("content") == new


def read_sentencepiece(d: object) -> dict:
    """The ``SentencePieceBPE`` arguments of a SentencePiece-style BPE ``tokenizer.json``: Llama
    2's form (a normalizer that prepends ``▁`` and turns spaces into ``▁``) or the Metaspace
    pre-tokenizer's; anything else is refused by name."""
    model = _bpe_model(d)
    if not model.get("byte_fallback"):
        raise ValueError("a SentencePiece-style BPE without byte_fallback (unknown characters "
                         "become <unk>) is not supported")
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ValueError(f"model.{key} = {model[key]!r:.40} is not supported")
    vocab, merges = _vocab_and_merges(model)
    normalizers = _steps(d.get("normalizer"), "normalizers")
    pre = d.get("pre_tokenizer")
    if normalizers:
        prepends = [s for s in normalizers if isinstance(s, dict) and s.get("type") == "Prepend"]
        replaces = [s for s in normalizers if _is_replace(s, " ", _SP_SPACE)]
        if len(normalizers) != 2 or len(prepends) != 1 or len(replaces) != 1 \
                or prepends[0].get("prepend") != _SP_SPACE or pre is not None:
            raise ValueError("normalizer must be Llama 2's: Prepend('▁') and Replace(' ', '▁'), "
                             "with no pre_tokenizer")
        prepend, split = "segments", False
    elif isinstance(pre, dict) and pre.get("type") == "Metaspace":
        if pre.get("replacement", _SP_SPACE) != _SP_SPACE:
            raise ValueError(f"Metaspace replacement {pre.get('replacement')!r:.20} is not "
                             "supported (only '▁')")
        scheme = pre.get("prepend_scheme")
        if scheme is None:  # the older form
            scheme = "always" if pre.get("add_prefix_space", True) else "never"
        if scheme not in ("first", "always", "never"):
            raise ValueError(f"Metaspace prepend_scheme {scheme!r:.20} is not supported")
        prepend, split = scheme, bool(pre.get("split", True))
    else:
        raise ValueError("a byte-fallback BPE needs a normalizer or a Metaspace pre_tokenizer that "
                         "turns spaces into '▁'")
    decoders = _steps(d.get("decoder"), "decoders")
    strip = any(isinstance(s, dict) and (
        (s.get("type") == "Strip" and s.get("content") == " " and s.get("start", 0) >= 1)
        or (s.get("type") == "Metaspace" and s.get("prepend_scheme", "always") != "never"
            and s.get("add_prefix_space", True))) for s in decoders)
    specials = _added_tokens(d.get("added_tokens") or [])
    post = d.get("post_processor")
    first = post.get("single", [None])[0] if isinstance(post, dict) \
        and post.get("type") == "TemplateProcessing" and isinstance(post.get("single"), list) \
        and post["single"] else None
    bos = first.get("SpecialToken", {}).get("id") if isinstance(first, dict) else None
    return {"vocab": vocab, "merges": merges, "special_tokens": specials, "prepend": prepend,
            "split": split, "strip": strip, "bos_token": bos if bos in specials else None}


def sentencepiece_dict(vocab: dict[str, int], merges: list[tuple[str, str]],
                       special_tokens: dict[str, int], prepend: str, split: bool, strip: bool,
                       bos_token: str | None) -> dict:
    """A ``tokenizer.json`` for ``read_sentencepiece``'s fields, in the form it was read from."""
    metaspace = {"type": "Metaspace", "replacement": _SP_SPACE,
                 "prepend_scheme": "never" if prepend == "segments" else prepend, "split": split}
    normalizer = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": _SP_SPACE},
        {"type": "Replace", "pattern": {"String": " "}, "content": _SP_SPACE}]}
    decoders = [{"type": "Replace", "pattern": {"String": _SP_SPACE}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]
    decoders += [{"type": "Strip", "content": " ", "start": 1, "stop": 0}] if strip else []
    post = None
    if bos_token is not None:
        bos = {"id": bos_token, "type_id": 0}
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": bos}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": bos}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos_token, "type_id": 1}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos_token: {"id": bos_token, "ids": [special_tokens[bos_token]],
                                               "tokens": [bos_token]}}}
    return {
        **_header(special_tokens),
        "normalizer": normalizer if prepend == "segments" else None,
        "pre_tokenizer": (metaspace if split else None) if prepend == "segments" else metaspace,
        "post_processor": post, "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": None,
                  "unk_token": "<unk>" if "<unk>" in vocab else None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [list(m) for m in merges]},
    }
