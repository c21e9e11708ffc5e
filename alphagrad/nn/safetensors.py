"""Read and write safetensors files (Hugging Face's weight format) with NumPy alone.

A file is an 8-byte little-endian header length N, N bytes of JSON
(``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``,
offsets relative to the end of the header), then the raw little-endian tensor bytes.

    >>> save_safetensors("w.safetensors", {"w": np.ones((2, 3), np.float32)}, {"format": "np"})
    >>> load_safetensors("w.safetensors")["w"].shape
    (2, 3)
"""

from __future__ import annotations

import itertools
import json
import math
import os
import struct
from collections.abc import Mapping

import numpy as np

from alphagrad.tensor.memory import is_array_shape

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"), "BF16": np.dtype("<u2"),  # NumPy has no bfloat16: read as its bits
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items() if name != "BF16"}
_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


class SafetensorsError(ValueError):
    """A file that is not valid safetensors; the message names the file and the fault."""


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (name → array or Tensor) and string ``metadata`` to ``path``."""
    arrays = {}
    for name, value in tensors.items():
        array = np.asarray(getattr(value, "data", value))
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype not in _NAMES:
            raise TypeError(f"save_safetensors: tensor {name!r} has dtype {array.dtype}, which "
                            f"safetensors cannot hold here ({', '.join(map(str, _NAMES))})")
        arrays[name] = np.asarray(array, dtype, order="C")
    header: dict = {}
    if metadata:
        bad = {k: v for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)}
        if bad:
            raise TypeError(f"save_safetensors: metadata must map str to str, got {bad}")
        header["__metadata__"] = dict(metadata)
    # largest items first, so every tensor starts aligned to its own item size
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    offset = 0
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:  # written beside the target, then renamed: all or nothing
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in order:
            arrays[name].tofile(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_header(path: str | os.PathLike) -> tuple[dict, dict[str, str], int]:
    """The tensor entries, the metadata and the byte offset where the data begins."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path}: {size} bytes is too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise SafetensorsError(f"{path}: header length {n} does not fit a {size}-byte file; "
                                   "is this a safetensors file?")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsError(f"{path}: the header is not valid JSON ({e})") from None
        except RecursionError:
            raise SafetensorsError(f"{path}: the header is nested too deeply") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: the header must be a JSON object")
    metadata = header.pop("__metadata__", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
    data_start, data_size = 8 + n, size - 8 - n
    spans = [_span(path, name, entry, data_size) for name, entry in header.items()]
    spans.sort()
    if any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
        raise SafetensorsError(f"{path}: tensors overlap in the data section")
    return header, metadata, data_start


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _span(path: str | os.PathLike, name: str, entry: object, data_size: int) -> tuple[int, int]:
    """The [begin, end) data bytes of one header entry, after checking every field's type and
    that its size fits the file (so nothing is allocated for what the file does not hold)."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise SafetensorsError(f"{path}: tensor {name!r} has a malformed entry {entry!r:.200}; "
                               "expected dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise SafetensorsError(f"{path}: tensor {name!r} has dtype {dtype!r:.80}, which this "
                               f"reader does not know ({', '.join(_DTYPES)})")
    if not is_array_shape(shape, _DTYPES[dtype].itemsize):
        raise SafetensorsError(f"{path}: tensor {name!r} has shape {shape!r:.80}; a shape is a "
                               "list of at most 32 non-negative ints that an array can have")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets)):
        raise SafetensorsError(f"{path}: tensor {name!r} has data_offsets {offsets!r:.80}; "
                               "expected [begin, end], non-negative ints")
    begin, end = offsets
    nbytes = math.prod(shape) * _DTYPES[dtype].itemsize
    if not begin <= end <= data_size or end - begin != nbytes:
        raise SafetensorsError(
            f"{path}: tensor {name!r} ({dtype} {shape}) has offsets [{begin}, {end}] that do "
            f"not match its size {nbytes} within {data_size} data bytes")
    return begin, end


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor in the file as a writable NumPy array (BF16 widened to float32)."""
    header, _, data_start = read_header(path)
    tensors = {}
    with open(path, "rb") as f:
        for name, entry in header.items():
            begin, end = entry["data_offsets"]
            f.seek(data_start + begin)
            dtype = _DTYPES[entry["dtype"]]
            array = np.fromfile(f, dtype, (end - begin) // dtype.itemsize)
            if entry["dtype"] == "BF16":  # bfloat16 is the top half of a float32
                array = (array.astype(np.uint32) << 16).view(np.float32)
            tensors[name] = array.reshape(entry["shape"]).astype(array.dtype.newbyteorder("="),
                                                                 copy=False)
    return tensors
