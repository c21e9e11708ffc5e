"""Optimizers and learning-rate schedules (public as ``alphagrad.optim``).

>>> from alphagrad import optim
>>> opt = optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.1)
"""

from alphagrad.nn.optim import lr_scheduler
from alphagrad.nn.optim.adam import Adam, AdamW
from alphagrad.nn.optim.lr_scheduler import LRScheduler
from alphagrad.nn.optim.optimizer import Optimizer
from alphagrad.nn.optim.schedules import constant, linear, warmup_cosine
from alphagrad.nn.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "LRScheduler",
    "Optimizer",
    "constant",
    "linear",
    "lr_scheduler",
    "warmup_cosine",
]
