"""Held-out evaluation: loss, perplexity and bits per byte, estimated over a fixed set of
windows (``evaluate``, what training reports) or exact over every token (``evaluate_full``)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from alphagrad.autograd.grad_mode import no_grad
from alphagrad.train.data import TokenDataset, iter_eval_batches, windows
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
    return _metrics(total / count, bytes_per_token)


def evaluate_full(model: Any, dataset: TokenDataset, block_size: int, batch_size: int = 8,
                  bytes_per_token: float | None = None) -> dict[str, float]:
    """The exact mean loss over every token of ``dataset`` after the first: the tokens are cut
    into consecutive windows of ``block_size`` (the last one shorter), and each token is
    predicted once from the tokens before it in its window.

        >>> evaluate_full(model, TokenDataset("data/val.bin"), 64)
        {'loss': 1.93, 'perplexity': 6.89, 'bits_per_byte': 2.78}
    """
    if len(dataset) < 2:
        raise ValueError(f"{dataset.path} has {len(dataset)} tokens; evaluation needs at least 2")
    last = len(dataset) - 1  # targets are tokens[1:]
    starts = np.arange(0, last, block_size)
    full, tail = starts[starts + block_size <= last], starts[starts + block_size > last]
    batches = [full[i:i + batch_size] for i in range(0, len(full), batch_size)]
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        with no_grad():
            for group in [*batches, *([tail] if len(tail) else [])]:
                T = min(block_size, last - int(group[0]))
                x, y = windows(dataset, group, T)
                _, loss = model(x, y)
                total += loss.item() * y.size
    finally:
        model.train(was_training)
    return _metrics(total / last, bytes_per_token)


def _metrics(loss: float, bytes_per_token: float | None) -> dict[str, float]:
    result = {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
    if bytes_per_token:
        result["bits_per_byte"] = loss / math.log(2) / bytes_per_token
    return result
