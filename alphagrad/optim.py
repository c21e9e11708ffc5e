"""``alphagrad.optim``: ``alphagrad.nn.optim`` under PyTorch's name."""

import sys

from alphagrad.nn.optim import *
from alphagrad.nn.optim import __all__, lr_scheduler  # noqa: F401

sys.modules[__name__ + ".lr_scheduler"] = lr_scheduler  # `from alphagrad.optim.lr_scheduler import ...`
