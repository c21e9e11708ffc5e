"""Held-out evaluation: loss, perplexity and bits per byte over a fixed set of batches."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from alphagrad.autograd.grad_mode import no_grad
from alphagrad.train.data import TokenDataset, iter_eval_batches
from alphagrad.train.distributed import World


def evaluate(model: Any, dataset: TokenDataset, batch_size: int, block_size: int,
             max_batches: int, bytes_per_token: float | None = None,
             world: World | None = None) -> dict[str, float]:
    """Mean loss over the same ``max_batches`` windows every time, so evaluations compare.

    ``bytes_per_token`` (text bytes per token of this data) turns the loss into bits per byte,
    the number that compares across tokenizers. With a ``world`` of several ranks, each rank
    takes every ``world.size``-th batch and the sums are added up over the ranks.

        >>> evaluate(model, TokenDataset("data/val.bin"), 8, 64, max_batches=20)
        {'loss': 1.91, 'perplexity': 6.75, 'bits_per_byte': 2.75}
    """
    was_training = model.training
    model.eval()
    world = world or World()
    batches = iter_eval_batches(dataset, batch_size, block_size, max_batches)
    total, count = 0.0, 0
    try:
        with no_grad():
            for x, y in itertools.islice(batches, world.rank, None, world.size):
                _, loss = model(x, y)
                total += loss.item() * y.size
                count += y.size
    finally:
        model.train(was_training)
    total, count = world.allreduce_sum(np.array([total, count], np.float64))
    loss = total / count
    result = {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
    if bytes_per_token:
        result["bits_per_byte"] = loss / math.log(2) / bytes_per_token
    return result
