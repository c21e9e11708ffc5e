"""The CPU backend: NumPy arrays in, NumPy arrays out; Numba kernels for the hot paths."""

from alphagrad.tensor.broadcast import broadcast_shape, unbroadcast
from alphagrad.tensor.dtypes import get_default_dtype, set_default_dtype
from alphagrad.tensor.memory import keep_freed_memory
from alphagrad.tensor.random import generator, get_rng_state, manual_seed, set_rng_state
from alphagrad.tensor.threads import get_num_threads, set_num_threads

__all__ = [
    "broadcast_shape",
    "generator",
    "get_default_dtype",
    "get_num_threads",
    "get_rng_state",
    "keep_freed_memory",
    "manual_seed",
    "set_default_dtype",
    "set_num_threads",
    "set_rng_state",
    "unbroadcast",
]
