"""``alphagrad.optim``: ``alphagrad.nn.optim`` under PyTorch's name."""

from alphagrad.nn.optim import *
from alphagrad.nn.optim import __all__  # noqa: F401
