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
    is_grad_enabled,
    no_grad,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from alphagrad.autograd.functional import cat, matmul, maximum, minimum, stack, where
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
    "Tensor", "arange", "bool_", "cat", "enable_grad", "float32", "float64", "from_numpy", "full",
    "functional", "get_default_dtype", "get_num_threads", "get_rng_state", "gradcheck", "int64",
    "is_grad_enabled", "keep_freed_memory", "manual_seed", "matmul", "maximum", "minimum", "nn", "no_grad", "ones",
    "ones_like", "optim", "rand", "randint", "randn", "set_default_dtype", "set_num_threads",
    "set_rng_state", "stack", "tensor", "where", "zeros", "zeros_like",
]
