"""The main job: a preset's model trained on given data, or on the built-in corpus.

    trainer = make_trainer("char-tiny")               # builds runs/data/char-tiny/ once, reuses it
    trainer.fit()                                     # Ctrl-C saves a checkpoint and stops

    config = resolve_config("char-tiny", "my.toml", ["max_iters=100"])   # the merge on its own

A config is the preset's fields, then a TOML file's, then explicit fields (data and output
folders), then ``key=value`` overrides: each layer replaces only the fields it names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from alphagrad._atomic import atomic_write_text
from alphagrad.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, load
from alphagrad.train.config import TrainConfig, read_toml
from alphagrad.train.corpus import stdlib_files
from alphagrad.train.data import TokenDataset, prepare
from alphagrad.train.distributed import current_world
from alphagrad.train.presets import BUILTIN_RECIPE, Preset, get_preset
from alphagrad.train.trainer import Trainer

Progress = Callable[[str, int, int], None]  # (phase, done, total)
RECIPE = BUILTIN_RECIPE  # written last: its presence means the folder is complete
SPLITS = ("train", "val")


def resolve_config(preset: str | None = None, config_file: str | Path | None = None,
                   overrides: Iterable[str] = (), **fields: Any) -> TrainConfig:
    """The TrainConfig from ``preset``, then ``config_file``, then ``fields`` (None values are
    skipped), then ``overrides`` (``"key=value"`` strings). A config file may name the preset.

    >>> resolve_config("char-tiny", overrides=["max_iters=50"]).max_iters
    50
    """
    values = read_toml(config_file) if config_file is not None else {}
    name = preset or values.get("preset")
    base = dict(get_preset(name).config, preset=name) if name else {}
    config = TrainConfig.from_dict(base | values, source=str(config_file or f"preset {name}"))
    fields = {k: v for k, v in fields.items() if v is not None}
    return config.replace(**fields).with_overrides(overrides)


def _recipe(preset: Preset, corpus: bytes, files: int) -> dict[str, Any]:
    return {"preset": preset.name, "tokenizer_kind": preset.tokenizer_kind,
            "vocab_size": preset.vocab_size, "pattern": "gpt4" if preset.tokenizer_kind == "bpe"
            else None, "corpus_files": files, "corpus_bytes": len(corpus),
            "corpus_sha256": hashlib.sha256(corpus).hexdigest()}


def _is_built(folder: Path, recipe: dict[str, Any]) -> bool:
    """Whether ``folder`` holds data made by ``recipe`` whose files carry its tokenizer's
    fingerprint (anything missing, damaged or different means: build again)."""
    try:
        saved = json.loads((folder / RECIPE).read_text(encoding="utf-8"))
        fingerprint = load(folder / "tokenizer.json").fingerprint()
        return saved == recipe | {"fingerprint": fingerprint} and all(
            TokenDataset(folder / f"{split}.bin").fingerprint == fingerprint for split in SPLITS)
    except (OSError, ValueError):
        return False


def builtin_data(preset: str | Preset, root: str | Path = "runs",
                 log: Callable[[str], None] | None = None,
                 progress: Progress | None = None) -> Path:
    """``root/data/<preset>``: the built-in corpus (the standard library's own sources, see
    ``corpus.py``) tokenized with the preset's tokenizer, trained on that corpus. Built on the
    first call and reused while the corpus and the recipe stay the same.

    >>> builtin_data("char-tiny")
    PosixPath('runs/data/char-tiny')
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    log = log or (lambda message: None)
    folder = Path(root) / "data" / preset.name
    files = stdlib_files(preset.corpus_bytes)
    corpus = b"".join(path.read_bytes() for path in files)
    recipe = _recipe(preset, corpus, len(files))
    if _is_built(folder, recipe):
        log(f"data: {folder} (built earlier from {len(files)} standard-library files)")
        return folder
    log(f"data: building {folder} from {len(files)} standard-library files "
        f"({len(corpus) / 1e6:.1f} MB under {files[0].parent})")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECIPE).unlink(missing_ok=True)
    tokenizer = _train_tokenizer(preset, corpus, files, progress)
    prepare(files, tokenizer, folder,
            progress=progress and (lambda done, total: progress("tokenize", done, total)))
    atomic_write_text(folder / RECIPE, json.dumps(
        recipe | {"fingerprint": tokenizer.fingerprint()}, indent=2) + "\n")
    return folder


def _train_tokenizer(preset: Preset, corpus: bytes, files: list[Path],
                     progress: Progress | None) -> Any:
    if preset.tokenizer_kind == "bpe":
        return BPETokenizer.train(
            files, preset.vocab_size, pattern="gpt4",
            progress=progress and (lambda done, total: progress("merges", done, total)))
    kinds = {"char": CharTokenizer, "word": WordTokenizer}
    if preset.tokenizer_kind not in kinds:
        raise ValueError(f"preset {preset.name!r}: unknown tokenizer kind "
                         f"{preset.tokenizer_kind!r} (known: bpe, char, word)")
    return kinds[preset.tokenizer_kind].train(corpus.decode("utf-8", errors="replace"),
                                              preset.vocab_size)


def make_trainer(preset: str | None = None, *, data: str | Path | None = None,
                 config_file: str | Path | None = None, overrides: Iterable[str] = (),
                 out: str | Path | None = None, init_from: str | Path | None = None,
                 runs_root: str | Path = "runs", callbacks: tuple = (),
                 log: Callable[[str], None] | None = None,
                 progress: Progress | None = None) -> Trainer:
    """A Trainer for the merged config (see ``resolve_config``), ready to ``fit()``.

    With no data folder anywhere in the config, a preset trains on ``builtin_data``; the run
    folder is ``out``, or a new one under ``runs_root``.

    >>> make_trainer("char-tiny", overrides=["max_iters=100"]).fit()["status"]
    'completed'
    """
    config = resolve_config(preset, config_file, overrides,
                            data_dir=data and str(Path(data).resolve()),
                            out_dir=out and str(out),
                            init_from=init_from and str(Path(init_from).resolve()))
    if config.data_dir is None:
        if config.preset is None:
            raise ValueError("no training data: give a data folder made by prepare "
                             "(alphagrad train --data DIR) or a preset to train on the built-in "
                             "corpus (alphagrad train --preset char-tiny)")
        world = current_world()  # rank 0 builds the data; the others wait for its folder
        folder = builtin_data(config.preset, runs_root, log, progress) if world.is_main else None
        folder = Path(world.broadcast_json(folder and str(folder.resolve())))
        config = config.replace(data_dir=str(folder))
    elif not Path(config.data_dir).is_dir():
        raise FileNotFoundError(f"data folder {config.data_dir} does not exist; make it with "
                                "alphagrad prepare")
    return Trainer(config, callbacks=callbacks, runs_root=runs_root)


def resume_trainer(path: str | Path, overrides: Iterable[str] = (), callbacks: tuple = (),
                   runs_root: str | Path | None = None) -> Trainer:
    """``Trainer.resume`` of a run folder or checkpoint, with ``key=value`` overrides of the
    settings a started run may change (``trainer.RESUMABLE``)."""
    return Trainer.resume(path, callbacks=callbacks, runs_root=runs_root, overrides=overrides)
