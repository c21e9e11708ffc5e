"""KV caches: the keys and values of earlier positions, so decoding runs only the new tokens.

A model family talks to a cache through three calls, which is all it takes to serve both
``generate`` and the server's continuous batching:

    pos = kv_cache.positions(T)         # (T,) positions of the T new tokens of idx (B, T)
    y = kv_cache[i].attend(q, k, v, scale)  # layer i: keep k, v; attend q over all keys so far
    rows = kv_cache.readout(T)          # the positions whose logits are wanted

``KVCache`` holds B sequences that share one length (``generate``'s batch). ``SlotKVCache``
holds many independent sequences, one per slot, each at its own length: one forward runs the
new tokens of several slots flattened into one row ``(1, N)`` (``SlotKVCache.step``), so every
matrix product covers all of them while each attends only to its own slot.

A family with grouped-query attention names the number of key/value heads ``n_kv_head`` in
its config; otherwise ``n_head`` is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from alphagrad.autograd import functional as F
from alphagrad.autograd.creation import from_numpy
from alphagrad.autograd.tensor import Tensor
from alphagrad.tensor.kernels import slot_attention


class LayerKV:
    """One layer's keys and values, (B, NH, capacity, hs) each, filled position by position."""

    def __init__(self, batch: int, n_head: int, capacity: int, head_size: int, dtype: Any):
        self.keys = np.empty((batch, n_head, capacity, head_size), dtype)
        self.values = np.empty_like(self.keys)
        self.length = 0

    def extend(self, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append k, v (B, NH, T, hs); return all keys and values so far (views, no copy)."""
        end = self.length + k.shape[2]
        if end > self.keys.shape[2]:
            raise ValueError(f"KV cache: {end} positions exceed its capacity {self.keys.shape[2]}")
        self.keys[:, :, self.length:end] = k
        self.values[:, :, self.length:end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def attend(self, q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> Tensor:
        """Causal attention of q (B, NH, T, hs) over the cached keys followed by k, v."""
        keys, values = self.extend(k.data, v.data)
        return F.causal_attention(q, from_numpy(keys), from_numpy(values), scale)


class KVCache:
    """Per-layer buffers for B sequences of one common length (at most ``capacity``)."""

    def __init__(self, n_layer: int, batch: int, n_head: int, capacity: int, head_size: int,
                 dtype: Any):
        self.layers = [LayerKV(batch, n_head, capacity, head_size, dtype) for _ in range(n_layer)]
        self.capacity = capacity

    def __getitem__(self, i: int) -> LayerKV:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def length(self) -> int:
        return self.layers[0].length

    def positions(self, T: int) -> np.ndarray:
        end = self.length + T
        if end > self.capacity:
            raise ValueError(f"a sequence of length {end} does not fit block_size "
                             f"{self.capacity}; crop it (idx[:, -block_size:])")
        return np.arange(self.length, end, dtype=np.int64)

    def readout(self, T: int) -> slice:
        return slice(T - 1, T)

    def reset(self) -> None:
        """Forget every position (to refill from a cropped context)."""
        for layer in self.layers:
            layer.length = 0


class SlotKVCache:
    """Independent sequences, one per slot, each at its own length: a server's cache.

        cache = new_slot_cache(model, slots=8)
        step = cache.step(slots=[3, 0], counts=[5, 1])   # 5 prompt tokens of slot 3, 1 of slot 0
        logits, _ = model(idx, kv_cache=step)            # idx (1, 6); logits (1, 2, V)
        cache.free(3)                                    # the slot's sequence is done
    """

    def __init__(self, n_layer: int, slots: int, n_head: int, capacity: int, head_size: int,
                 dtype: Any):
        shape = (slots, n_head, capacity, head_size)
        self.keys = [np.zeros(shape, dtype) for _ in range(n_layer)]
        self.values = [np.zeros(shape, dtype) for _ in range(n_layer)]
        self.lengths = np.zeros(slots, np.int64)
        self.capacity = capacity
        self.scale = 1.0 / math.sqrt(head_size)  # unless the model passes its own

    @property
    def slots(self) -> int:
        return len(self.lengths)

    def free(self, slot: int) -> None:
        self.lengths[slot] = 0

    def step(self, slots: Sequence[int], counts: Sequence[int],
             readout: Sequence[int] | None = None) -> SlotStep:
        """Plan one forward over ``counts[j]`` new tokens of slot ``slots[j]``, in that order;
        logits come back for the last ``readout[j]`` tokens of each segment (0, 1 or up to
        ``counts[j]``; the last token of each by default). The slots' lengths advance now."""
        slots, counts = np.asarray(slots, np.int64), np.asarray(counts, np.int64)
        if len(set(slots.tolist())) != len(slots) or (counts < 1).any():
            raise ValueError("SlotKVCache.step: each slot at most once, with >= 1 token")
        ends = self.lengths[slots] + counts
        if (ends > self.capacity).any():
            raise ValueError(f"SlotKVCache.step: {int(ends.max())} positions exceed the "
                             f"capacity {self.capacity} of a slot")
        wanted = np.ones(len(slots), np.int64) if readout is None else np.asarray(readout, np.int64)
        if wanted.shape != counts.shape or (wanted < 0).any() or (wanted > counts).any():
            raise ValueError("SlotKVCache.step: readout asks for 0 to counts[j] rows per slot")
        starts = self.lengths[slots].copy()
        self.lengths[slots] = ends
        return SlotStep(self, slots, starts, counts, wanted)


class SlotStep:
    """One forward's view of a ``SlotKVCache``: the model-facing calls of a cache."""

    def __init__(self, cache: SlotKVCache, slots: np.ndarray, starts: np.ndarray,
                 counts: np.ndarray, wanted: np.ndarray):
        self.cache, self.slots, self.starts, self.counts = cache, slots, starts, counts
        self.offsets = np.concatenate([[0], np.cumsum(counts)])  # segment j is [o_j, o_j+1)
        self.wanted = wanted
        self.token_slot = np.repeat(slots, counts)  # (N,) the slot of each new token
        self.token_pos = np.arange(self.offsets[-1]) - np.repeat(self.offsets[:-1] - starts,
                                                                 counts)  # (N,) its position

    def __getitem__(self, layer: int) -> _SlotLayer:
        return _SlotLayer(self, layer)

    def positions(self, T: int) -> np.ndarray:
        if T != self.offsets[-1]:
            raise ValueError(f"SlotStep: planned {self.offsets[-1]} tokens, got {T}")
        return self.token_pos

    def readout(self, T: int) -> np.ndarray:
        first = np.repeat(self.offsets[1:] - self.wanted, self.wanted)  # (R,) segment's first row
        rank = np.arange(len(first)) - np.repeat(np.cumsum(self.wanted) - self.wanted, self.wanted)
        return first + rank


class _SlotLayer:
    def __init__(self, step: SlotStep, layer: int):
        self.step, self.layer = step, layer

    def attend(self, q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> Tensor:
        """q, k, v (1, NH, N, hs): every token against its own slot's keys, in one call."""
        step, cache = self.step, self.step.cache
        keys, values = cache.keys[self.layer], cache.values[self.layer]
        keys[step.token_slot, :, step.token_pos] = k.data[0].transpose(1, 0, 2)  # (N, NKV, hs)
        values[step.token_slot, :, step.token_pos] = v.data[0].transpose(1, 0, 2)
        scale = cache.scale if scale is None else scale
        out = slot_attention(q.data[0], keys, values, step.token_slot, step.token_pos, scale)
        return from_numpy(out[None])  # (1, NH, N, hs)


def _geometry(model) -> tuple[int, int, int, int, Any]:
    """(n_layer, key/value heads, block_size, head size, dtype) from a model's config."""
    c = model.config
    dtype = next(model.parameters()).dtype
    return c.n_layer, getattr(c, "n_kv_head", c.n_head), c.block_size, c.n_embd // c.n_head, dtype


def new_kv_cache(model, batch: int) -> KVCache:
    """Empty buffers for every layer of ``model``, as long as its context."""
    n_layer, n_kv, capacity, hs, dtype = _geometry(model)
    return KVCache(n_layer, batch, n_kv, capacity, hs, dtype)


def new_slot_cache(model, slots: int) -> SlotKVCache:
    """``slots`` independent sequences for ``model``, each as long as its context."""
    n_layer, n_kv, capacity, hs, dtype = _geometry(model)
    return SlotKVCache(n_layer, slots, n_kv, capacity, hs, dtype)
