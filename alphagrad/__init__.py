"""alphagrad: train and run GPT-style language models on a CPU.

    >>> import alphagrad as ag
    >>> x = ag.randn(3, requires_grad=True)
    >>> (x.exp() * 2).sum().backward()
"""

import sys

__version__ = "0.1.0"

from alphagrad import nn, optim
from alphagrad.autograd import (
    Tensor,
    arange,
    enable_grad,
    from_numpy,
    full,
    functional,
    gradcheck,
    inference_mode,
    is_grad_enabled,
    no_grad,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    tensor,
    zeros,
    zeros_like,
)
from alphagrad.autograd.functional import (
    cat,
    clamp,
    clamp_max,
    clamp_min,
    cos,
    einsum,
    gather,
    matmul,
    maximum,
    minimum,
    norm,
    sin,
    sort,
    stack,
    topk,
    tril,
    triu,
    where,
)
from alphagrad.nn.serialization import load, save
from alphagrad.tensor import (
    get_default_dtype,
    get_num_threads,
    get_rng_state,
    keep_freed_memory,
    manual_seed,
    set_default_dtype,
    set_num_threads,
    set_rng_state,
)

sys.modules[__name__ + ".functional"] = functional  # so `import alphagrad.functional as F` works

float32, float64, int64, bool_ = "float32", "float64", "int64", "bool"

__all__ = [
    "Tensor", "arange", "bool_", "cat", "clamp", "clamp_max", "clamp_min", "cos", "einsum",
    "enable_grad", "float32", "float64", "from_numpy", "full", "functional", "gather",
    "get_default_dtype", "get_num_threads", "get_rng_state", "gradcheck", "inference_mode", "int64",
    "is_grad_enabled", "keep_freed_memory", "load", "manual_seed", "matmul", "maximum", "minimum", "nn",
    "no_grad", "norm", "ones", "ones_like", "optim", "rand", "rand_like", "randint", "randn",
    "randn_like", "save", "set_default_dtype", "set_num_threads", "set_rng_state", "sin", "sort",
    "stack", "tensor", "topk", "tril", "triu", "where", "zeros", "zeros_like",
]
