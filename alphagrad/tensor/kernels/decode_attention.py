"""Attention of new tokens from many independent sequences over their own cached keys, in one call.

A server's decoding step holds one new token (or a prompt chunk) from each of several
sequences, every one at its own length, each with its keys and values in its own slot of a
cache (S, NKV, capacity, hs). Token i belongs to slot ``token_slot[i]`` at position
``token_pos[i]`` and attends causally to that slot's positions 0..token_pos[i], its own key
included (the caller writes the new keys and values into the cache first). One call covers all
of them: calling the per-sequence kernel once per sequence cost 8x a single call's Python
overhead at 8 streams.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, index_array, output
from alphagrad.tensor.kernels._exp import fast_exp
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel

# Below this many multiply-adds (query heads x keys x hs) one thread is done first (measured:
# 4 heads of 4 tokens x 64 keys x 16 1.07x faster on two threads, of one token 0.9x).
PARALLEL_MIN_SIZE = 1 << 14


@kernel(parallel=True)
def _slot_attention(q, keys, values, token_slot, token_pos, scale, out):
    # q, out (NH, N, hs); keys, values (S, NKV, capacity, hs); token_slot, token_pos (N,)
    NH, N, hs = q.shape
    group = NH // keys.shape[1]
    scale = q.dtype.type(scale)
    for task in prange(NH * N):
        h, i = task // N, task % N
        length = token_pos[i] + 1
        k = keys[token_slot[i], h // group]  # (capacity, hs)
        v = values[token_slot[i], h // group]
        qi, o = q[h, i], out[h, i]
        scores = np.empty(length, q.dtype)
        top = q.dtype.type(-np.inf)
        for t in range(length):
            s = q.dtype.type(0.0)
            for d in range(hs):
                s += qi[d] * k[t, d]
            scores[t] = s * scale
            top = max(top, scores[t])
        total = q.dtype.type(0.0)
        for t in range(length):
            scores[t] = fast_exp(scores[t] - top)
            total += scores[t]
        o[:] = 0.0
        for t in range(length):
            w = scores[t] / total
            for d in range(hs):
                o[d] += w * v[t, d]


_slot_attention_serial = serial_twin(_slot_attention)


def slot_attention(q: np.ndarray, keys: np.ndarray, values: np.ndarray, token_slot: np.ndarray,
                   token_pos: np.ndarray, scale: float, out: np.ndarray | None = None
                   ) -> np.ndarray:
    """softmax(q kᵀ · scale) v for queries q (NH, N, hs) of N tokens from independent sequences:
    token i reads slot ``token_slot[i]`` of keys/values (S, NKV, capacity, hs) up to position
    ``token_pos[i]``. NKV may divide NH (grouped-query attention). Returns (NH, N, hs).
    """
    op = "slot_attention"
    q = float_array(op, "q", q)
    keys = float_array(op, "keys", keys, q.dtype)
    values = float_array(op, "values", values, q.dtype)
    token_slot = index_array(op, "token_slot", token_slot)
    token_pos = index_array(op, "token_pos", token_pos)
    if q.ndim != 3 or keys.ndim != 4 or values.shape != keys.shape \
            or keys.shape[3] != q.shape[2] or q.shape[0] % keys.shape[1]:
        raise ValueError(f"{op}: q {q.shape} must be (NH, N, hs) and keys, values {keys.shape}, "
                         f"{values.shape} (S, NKV, capacity, hs) with NKV dividing NH")
    N = q.shape[1]
    if token_slot.shape != (N,) or token_pos.shape != (N,):
        raise ValueError(f"{op}: token_slot {token_slot.shape} and token_pos {token_pos.shape} "
                         f"must be ({N},), one per query")
    if N and not (0 <= token_slot.min() and token_slot.max() < keys.shape[0]
                  and 0 <= token_pos.min() and token_pos.max() < keys.shape[2]):
        raise ValueError(f"{op}: token_slot must be in [0, {keys.shape[0]}) and token_pos in "
                         f"[0, {keys.shape[2]})")
    out = output(op, out, q.shape, q.dtype)
    work = q.shape[0] * q.shape[2] * int(token_pos.sum() + N)
    kernel_ = _slot_attention if use_parallel(work, PARALLEL_MIN_SIZE) else _slot_attention_serial
    kernel_(q, keys, values, token_slot, token_pos, scale, out)
    return out
