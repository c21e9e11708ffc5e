"""Checkpoints: one msgpack map per file, written atomically, read strictly, never executed.

    save_checkpoint("model.ckpt", model_kind="gpt", model_config=config, model_state=sd,
                    tied={"lm_head.weight": "transformer.wte.weight"})
    ckpt = load_checkpoint("model.ckpt")      # ckpt.model_state["lm_head.weight"] is back

The map's keys, in this order (small fields first, so ``checkpoint_info`` can stop early):
``magic, version, library_version, model {kind, config}, metrics, train_state, tied, tokenizer,
tensors, optimizer, crc32``. A tensor is ``{dtype, shape, data, crc32}`` with ``data`` the raw
little-endian bytes and ``crc32`` their checksum; a tied alias is stored once, under its canonical
name. Arrays anywhere in the nested fields (optimizer moments, RNG arrays) are stored as
``{"__tensor__": tensor}``. The last key, ``crc32``, is the checksum of every byte before its value,
so damage outside the tensors is caught too.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgpack
import numpy as np

from alphagrad import __version__
from alphagrad._atomic import atomic_writer
from alphagrad.tensor.memory import is_array_shape

MAGIC = "alphagrad-checkpoint"
VERSION = 1
DTYPES = ("float32", "float64", "int64", "int32", "uint16", "uint8", "bool")
_TENSOR_TAG = "__tensor__"
_RECORD_KEYS = {"dtype", "shape", "data", "crc32"}
_FIELDS = ("magic", "version", "library_version", "model", "metrics", "train_state", "tied",
           "tokenizer", "tensors", "optimizer")
# Every checkpoint starts with a map header and then these bytes.
_SIGNATURE = msgpack.packb("magic") + msgpack.packb(MAGIC)


class CheckpointError(ValueError):
    """A file that is not a readable alphagrad checkpoint; the message names the file."""


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns; ``model_state`` holds tied aliases too."""

    model_kind: str
    model_config: dict
    model_state: dict[str, np.ndarray]
    optimizer: dict | None
    train_state: dict | None
    tokenizer: dict | None
    metrics: dict
    library_version: str
    version: int
    tied: dict[str, str] = field(default_factory=dict)


# ---- writing -------------------------------------------------------------------------------

def _tensor_record(array: np.ndarray, where: str) -> dict:
    if array.dtype.name not in DTYPES:
        raise TypeError(f"checkpoint: {where} has dtype {array.dtype}; supported: "
                        f"{', '.join(DTYPES)}")
    stored = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    data = memoryview(stored.reshape(-1).view(np.uint8))  # packed as bytes, without a copy
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": data,
            "crc32": zlib.crc32(data)}


def _plain(obj: Any, where: str) -> Any:
    """``obj`` as msgpack-ready plain data, arrays turned into tagged tensor records."""
    if isinstance(obj, np.ndarray):
        return {_TENSOR_TAG: _tensor_record(obj, where)}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint: {where} has key {key!r}; keys must be str or int")
            if key == _TENSOR_TAG:
                raise ValueError(f"checkpoint: {where} uses the reserved key {_TENSOR_TAG!r}")
            out[key] = _plain(value, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, int) and not isinstance(obj, bool) and not -2**63 <= obj < 2**64:
        raise ValueError(f"checkpoint: {where} = {obj} does not fit in 64 bits; store it as a "
                         "string (as get_rng_state does)")
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    raise TypeError(f"checkpoint: {where} has type {type(obj).__name__}, which a checkpoint "
                    "cannot hold (plain data and ndarrays only)")


def _model_tensors(model_state: dict, tied: dict[str, str]) -> dict:
    for alias, canonical in tied.items():
        if canonical not in model_state or canonical in tied:
            raise ValueError(f"checkpoint: tied alias {alias!r} points to {canonical!r}, which is "
                             "not an untied tensor of model_state")
        if alias in model_state:
            a, c = np.asarray(model_state[alias]), np.asarray(model_state[canonical])
            if a is not c and (a.dtype != c.dtype or not np.array_equal(a, c)):
                raise ValueError(f"checkpoint: {alias!r} is declared tied to {canonical!r} but "
                                 "holds different values")
    tensors = {}
    for name, array in model_state.items():
        if not isinstance(name, str):
            raise TypeError(f"checkpoint: model_state key {name!r} is not a str")
        if name not in tied:
            tensors[name] = _tensor_record(np.asarray(array), f"model_state[{name!r}]")
    return tensors


def _pieces(*, model_kind: str, model_config: dict, model_state: dict,
            tied: dict[str, str] | None = None, optimizer: dict | None = None,
            train_state: dict | None = None, tokenizer: dict | None = None,
            metrics: dict | None = None) -> Iterator[bytes]:
    """The file's bytes up to the final checksum, a piece at a time (one tensor per piece)."""
    tied = dict(tied or {})
    fields = {
        "magic": MAGIC, "version": VERSION, "library_version": __version__,
        "model": {"kind": str(model_kind), "config": _plain(dict(model_config), "model_config")},
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "train_state": _plain(train_state, "train_state"),
        "tied": _plain(tied, "tied"),
        "tokenizer": _plain(tokenizer, "tokenizer"),
        "tensors": _model_tensors(model_state, tied),
        "optimizer": _plain(optimizer, "optimizer"),
    }
    packer = msgpack.Packer(use_bin_type=True)
    yield packer.pack_map_header(len(_FIELDS) + 1)
    for key in _FIELDS:
        yield packer.pack(key)
        if key == "tensors":
            yield packer.pack_map_header(len(fields[key]))
            for name, record in fields[key].items():
                yield packer.pack(name) + packer.pack(record)
        else:
            yield packer.pack(fields[key])
    yield packer.pack("crc32") + b"\xce"  # 0xCE: a msgpack uint32 follows


def _write_pieces(f: IO[bytes], pieces: Iterator[bytes]) -> None:
    crc = 0
    for piece in pieces:
        f.write(piece)
        crc = zlib.crc32(piece, crc)
    f.write(struct.pack(">I", crc))


def encode_checkpoint(**checkpoint_fields: Any) -> bytes:
    """The bytes ``save_checkpoint`` writes, in memory (arguments as there)."""
    buffer = io.BytesIO()
    _write_pieces(buffer, _pieces(**checkpoint_fields))
    return buffer.getvalue()


def save_checkpoint(path: str | Path, *, model_kind: str, model_config: dict, model_state: dict,
                    tied: dict[str, str] | None = None, optimizer: dict | None = None,
                    train_state: dict | None = None, tokenizer: dict | None = None,
                    metrics: dict | None = None) -> None:
    """Write a self-contained checkpoint to ``path`` atomically.

    ``model_state`` maps state_dict names to arrays; ``tied`` maps alias names to the canonical
    name they share storage with (stored once). ``optimizer``, ``train_state``, ``tokenizer`` and
    ``metrics`` are nested plain data (dict/list/str/int/float/bool/bytes/None) whose leaves may
    be ndarrays; integers wider than 64 bits must be strings.
    """
    pieces = _pieces(
        model_kind=model_kind, model_config=model_config, model_state=model_state, tied=tied,
        optimizer=optimizer, train_state=train_state, tokenizer=tokenizer, metrics=metrics)
    first = next(pieces)  # everything is checked before the old file can be touched
    with atomic_writer(path, "wb") as f:
        _write_pieces(f, itertools.chain([first], pieces))


# ---- reading -------------------------------------------------------------------------------

def _damaged(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is damaged: {detail}; use another checkpoint")


def _check_record(path: Path, record: Any, where: str) -> None:
    if not isinstance(record, dict) or set(record) != _RECORD_KEYS:
        raise _damaged(path, f"{where} is not a tensor record")
    dtype, shape, data, crc = (record[k] for k in ("dtype", "shape", "data", "crc32"))
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _damaged(path, f"{where} has unsupported dtype {dtype!r:.80}")
    if not is_array_shape(shape, np.dtype(dtype).itemsize):
        raise _damaged(path, f"{where} has invalid shape {shape!r:.80}")
    if not isinstance(data, bytes) or not isinstance(crc, int):
        raise _damaged(path, f"{where} has invalid data")
    expected = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    if len(data) != expected:
        raise _damaged(path, f"at tensor {where}: {len(data)} bytes for shape {tuple(shape)} "
                             f"{dtype} (needs {expected})")
    if zlib.crc32(data) != crc:
        raise _damaged(path, f"at tensor {where} (checksum mismatch)")


def _build_array(record: dict) -> np.ndarray:
    """The record's array; its bytes are dropped as it is built, so loading holds one copy."""
    data = record.pop("data")
    stored = np.frombuffer(data, dtype=np.dtype(record["dtype"]).newbyteorder("<"))
    return stored.astype(record["dtype"]).reshape(record["shape"])  # a fresh, writable copy


_MAX_DEPTH = 64  # nesting in the plain-data fields; a file's own cannot be deeper than this


def _walk(path: Path, obj: Any, where: str, on_tensor: Callable[[dict, str], Any],
          depth: int = 0) -> Any:
    """Check nested plain data; tensor records are handed to ``on_tensor``."""
    if depth > _MAX_DEPTH:
        raise _damaged(path, f"{where} is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR_TAG}:
            return on_tensor(obj[_TENSOR_TAG], where)
        out = {}
        for key, value in obj.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise _damaged(path, f"{where} has a key of type {type(key).__name__}")
            out[key] = _walk(path, value, f"{where}.{key}", on_tensor, depth + 1)
        return out
    if isinstance(obj, list):
        return [_walk(path, v, f"{where}[{i}]", on_tensor, depth + 1) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    raise _damaged(path, f"{where} holds a value of type {type(obj).__name__}")


def _open(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None


def _truncated(path: Path) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is truncated: its data ends early, so the file may "
                           "be incomplete (an interrupted copy or save?); use another checkpoint")


def _check_header(path: Path, f: IO[bytes]) -> None:
    """Magic first, so a foreign file is named as such rather than as damaged."""
    head = f.read(1 + len(_SIGNATURE))
    f.seek(0)
    signed = head[1:1 + len(_SIGNATURE)] == _SIGNATURE[:len(head) - 1]
    if head and not (0x80 <= head[0] <= 0x8F and signed):  # 0x8N: a map of N keys
        raise CheckpointError(f"{path} is not an alphagrad checkpoint")
    if len(head) < 1 + len(_SIGNATURE):
        raise _truncated(path)


def _unpacker(path: Path, f: IO[bytes], size: int) -> msgpack.Unpacker:
    """A reader of the file's msgpack that never holds more than one object's bytes twice."""
    _check_header(path, f)
    return msgpack.Unpacker(f, raw=False, strict_map_key=False, max_buffer_size=max(size, 1))


@contextlib.contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """msgpack's exceptions as CheckpointErrors that say what is wrong."""
    try:
        yield
    except CheckpointError:
        raise
    except msgpack.OutOfData:
        raise _truncated(path) from None
    except msgpack.StackError:
        raise _damaged(path, "cannot decode (nested too deeply)") from None
    except (ValueError, TypeError) as e:  # how malformed msgpack surfaces
        raise _damaged(path, f"cannot decode ({e})") from None


def _file_crc_ok(f: IO[bytes], size: int) -> bool:
    """Whether the last 4 bytes are the checksum of all before them, read a block at a time."""
    f.seek(0)
    crc, left = 0, size - 4
    while left > 0:
        block = f.read(min(left, 1 << 20))
        crc, left = zlib.crc32(block, crc), left - len(block)
    return struct.pack(">I", crc) == f.read(4)


def _check_version(path: Path, top: dict) -> None:
    version = top.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _damaged(path, f"invalid format version {version!r}")
    if version > VERSION:
        raise CheckpointError(f"checkpoint {path} was written by a newer alphagrad (version "
                              f"{version}; this one reads up to {VERSION}); upgrade alphagrad")


def _expect(path: Path, value: Any, kind: type | tuple, where: str) -> None:
    if not isinstance(value, kind):
        raise _damaged(path, f"{where} has type {type(value).__name__}")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint written by ``save_checkpoint``.

    Raises ``CheckpointError`` naming the file if it is missing, foreign, from a newer version,
    truncated or damaged; every check runs before any array is built, and the file is streamed,
    so at most the tensors' bytes plus the largest tensor are held at once.
    """
    path = Path(path)
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        unpacker = _unpacker(path, f, size)
        with _decoding(path):
            top = unpacker.unpack()
        if unpacker.tell() != size:
            raise _damaged(path, f"{size - unpacker.tell()} unexpected bytes at the end")
        del unpacker  # its read buffer is as large as the largest tensor
        crc_ok = _file_crc_ok(f, size)
    if not isinstance(top, dict):
        raise _damaged(path, "unexpected layout")
    _check_version(path, top)
    if list(top) != [*_FIELDS, "crc32"]:
        raise _damaged(path, f"unexpected fields {sorted(map(str, top))}")
    model, tensors, tied = top["model"], top["tensors"], top["tied"]
    _expect(path, top["library_version"], str, "library_version")
    _expect(path, model, dict, "model")
    _expect(path, model.get("kind"), str, "model.kind")
    _expect(path, model.get("config"), dict, "model.config")
    _expect(path, top["metrics"], dict, "metrics")
    for name in ("train_state", "tokenizer", "optimizer"):
        _expect(path, top[name], (dict, type(None)), name)
    _expect(path, tensors, dict, "tensors")
    _expect(path, tied, dict, "tied")
    for alias, canonical in tied.items():
        if not isinstance(alias, str) or not isinstance(canonical, str) \
                or canonical not in tensors:
            raise _damaged(path, f"tied alias {alias!r} points to a missing tensor")
    nested = ("model", "metrics", "train_state", "tokenizer", "optimizer")
    for name, record in tensors.items():
        _expect(path, name, str, "a tensor name")
        _check_record(path, record, repr(name))
    for name in nested:
        _walk(path, top[name], name, lambda record, where: _check_record(path, record, where))
    if not crc_ok:
        raise _damaged(path, "checksum mismatch outside the tensor data")

    model_state = {name: _build_array(record) for name, record in tensors.items()}
    model_state.update({alias: model_state[canonical] for alias, canonical in tied.items()})
    out = {name: _walk(path, top[name], name, lambda record, where: _build_array(record))
           for name in nested}
    return Checkpoint(
        model_kind=model["kind"], model_config=out["model"]["config"], model_state=model_state,
        optimizer=out["optimizer"], train_state=out["train_state"], tokenizer=out["tokenizer"],
        metrics=out["metrics"], library_version=top["library_version"], version=top["version"],
        tied=dict(tied))


def checkpoint_info(path: str | Path) -> dict:
    """The small fields of a checkpoint (model, metrics, train_state, versions), read without
    loading the tensors. Checksums are not verified here: use ``load_checkpoint`` to use one.

    >>> checkpoint_info("runs/x/checkpoints/best.ckpt")["train_state"]["step"]
    """
    path = Path(path)
    with _open(path) as f, _decoding(path):
        unpacker = _unpacker(path, f, os.fstat(f.fileno()).st_size)
        unpacker.read_map_header()
        info: dict = {}
        while "train_state" not in info:
            key = unpacker.unpack()
            info[key] = unpacker.unpack()
            if key == "version":
                _check_version(path, info)
    if list(info) != list(_FIELDS[:6]) or not isinstance(info["model"], dict):
        raise _damaged(path, "unexpected layout")

    def build(record: dict, where: str) -> np.ndarray:
        _check_record(path, record, where)
        return _build_array(record)

    info = {k: _walk(path, v, k, build) for k, v in info.items()}
    model = info.pop("model")
    info.update(model_kind=model.get("kind"), model_config=model.get("config"))
    del info["magic"]
    return info


# ---- a run's checkpoints/ folder -----------------------------------------------------------

_STEP_FILE = re.compile(r"step-(\d+)\.ckpt")


class CheckpointManager:
    """A folder of ``step-XXXXXXXX.ckpt`` files (the last ``keep_last`` kept) plus ``best.ckpt``.

        manager = CheckpointManager(run / "checkpoints", keep_last=3)
        manager.save(step, is_best=val_loss < best, model_kind="gpt", model_config=..., ...)
        resume_from = manager.latest()
    """

    def __init__(self, folder: str | Path, keep_last: int = 3):
        if not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(f"CheckpointManager: keep_last must be a positive int, got "
                             f"{keep_last!r}")
        self.folder = Path(folder)
        self.keep_last = keep_last

    def path_for(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}.ckpt"

    @property
    def best_path(self) -> Path:
        return self.folder / "best.ckpt"

    def save(self, step: int, *, is_best: bool = False, **checkpoint_fields: Any) -> Path:
        """Write the checkpoint for ``step`` (fields as ``save_checkpoint``); prune old ones."""
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"CheckpointManager.save: step must be a non-negative int, got "
                             f"{step!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path_for(step)
        save_checkpoint(path, **checkpoint_fields)
        if is_best:
            with open(path, "rb") as src, atomic_writer(self.best_path, "wb") as dst:
                shutil.copyfileobj(src, dst)
        for old in self.steps()[:-self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def steps(self) -> list[Path]:
        """The step checkpoints on disk, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir()
                 if (m := _STEP_FILE.fullmatch(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def best(self) -> Path | None:
        return self.best_path if self.best_path.exists() else None
