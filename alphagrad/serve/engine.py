"""Continuous batching: the requests for one model decode together, one forward per step.

    engine = Engine(model, tokenizer, slots=16)
    request = engine.submit(prompt_ids, SamplingParams(max_tokens=50, seed=0))
    while engine.step():           # or engine.start(): a thread that steps while there is work
        pass
    request.text, request.finish_reason

Every running request owns a slot of a ``SlotKVCache``. A step feeds the newest token of every
decoding request, and chunks of the prompts still being read, as one flattened row through the
model: every matrix product covers them all, and each attends only to its own slot. Prompts
are read in chunks of ``prefill_chunk`` tokens at fixed offsets, at most ``prefill_tokens``
prompt tokens a step, so a long prompt holds the running streams back by one chunk at a time,
and a request's tokens do not depend on what runs beside it. Requests join between steps; a
cancelled one leaves its slot before the next step.

Sampling is ``alphagrad.nn.generate.sample`` with a generator per request (``seed``), so a
request gives the tokens ``model.stream`` gives with the same seed. No HTTP here: the server
passes an ``on_event`` callback per request.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphagrad.autograd.grad_mode import no_grad
from alphagrad.nn.generate import sample
from alphagrad.nn.kv_cache import new_slot_cache
from alphagrad.tensor import threads
from alphagrad.train.sampling import TextDecoder


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is sampled and when it ends.

    ``stop`` strings end it (and are not part of its text), as do ``stop_token_ids``;
    ``logprobs`` asks for each token's log-probability and that many likeliest alternatives,
    ``prompt_logprobs`` the same for each prompt token after the first (``max_tokens`` may then
    be 0: the prompt is only scored).
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    logprobs: int | None = None
    prompt_logprobs: int | None = None


@dataclass
class TokenEvent:
    """What a request reports: a new token and the text it completes, or (``token`` None) its
    end, with ``finish_reason`` "stop", "length", "cancelled" or "error" (then ``error``)."""

    token: int | None
    text: str
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None
    finish_reason: str | None = None
    error: str | None = None


@dataclass(eq=False)
class Request:
    """One sequence being generated; ``tokens`` and ``text`` grow as it runs."""

    id: int
    prompt: list[int]
    params: SamplingParams
    on_event: Callable[[TokenEvent], None] | None = None
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    prompt_logprobs: list[tuple[float, list[tuple[int, float]]]] = field(default_factory=list)
    finish_reason: str | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    slot: int | None = None
    prefilled: int = 0  # prompt tokens already in the cache
    cancelled: bool = False
    rng: Any = None
    decoder: Any = None  # a TextDecoder, while text is still to come
    _held: str = ""  # text that may still turn out to start a stop string

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could be the start of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


def token_logprobs(logits: np.ndarray, tokens: Sequence[int], top: int
                   ) -> list[tuple[float, list[tuple[int, float]]]]:
    """For each row of ``logits`` (R, V): the log-probability of ``tokens[r]`` and the ``top``
    likeliest tokens with theirs, likeliest first."""
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    lp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))  # (R, V)
    chosen = lp[np.arange(len(lp)), np.asarray(tokens, np.int64)]
    k = min(top, lp.shape[1])
    best = np.argpartition(-lp, k - 1, axis=1)[:, :k] if k else np.zeros((len(lp), 0), int)
    best = np.take_along_axis(best, np.argsort(-np.take_along_axis(lp, best, 1), axis=1,
                                               kind="stable"), 1)  # (R, k) likeliest first
    return [(float(c), [(int(t), float(lp[r, t])) for t in row])
            for r, (c, row) in enumerate(zip(chosen, best))]


class Engine:
    """Runs the requests for one model in batched steps; ``slots`` requests at once, the rest
    wait their turn."""

    def __init__(self, model: Any, tokenizer: Any = None, slots: int = 16,
                 prefill_chunk: int = 64, prefill_tokens: int = 256,
                 serial_below: int = threads.SERIAL_ROWS):
        if slots < 1 or prefill_chunk < 1 or prefill_tokens < 1:
            raise ValueError("Engine: slots, prefill_chunk and prefill_tokens must be >= 1")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.block_size = model.config.block_size
        self.vocab_size = model.config.vocab_size
        self.cache = new_slot_cache(model, slots)
        self.prefill_chunk, self.prefill_tokens = prefill_chunk, prefill_tokens
        self.serial_below = serial_below
        end = getattr(tokenizer, "end_of_text", None)
        self.end_of_text = tokenizer.special_tokens[end] if end is not None else None
        self._free = list(range(slots))[::-1]
        self._waiting: deque[Request] = deque()
        self._running: list[Request] = []
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.steps = 0

    # ---- requests ---------------------------------------------------------------------------

    def submit(self, prompt: Sequence[int], params: SamplingParams,
               on_event: Callable[[TokenEvent], None] | None = None) -> Request:
        """Queue a request; it joins the running ones at the next step with a free slot."""
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ValueError("the prompt is empty")
        if min(prompt) < 0 or max(prompt) >= self.vocab_size:
            raise ValueError(f"token id {max(prompt) if max(prompt) >= 0 else min(prompt)} is "
                             f"out of range for the vocabulary of {self.vocab_size}")
        if len(prompt) + params.max_tokens > self.block_size:
            raise ValueError(f"{len(prompt)} prompt tokens + max_tokens {params.max_tokens} "
                             f"exceed the context length {self.block_size}")
        decoder = TextDecoder(self.tokenizer) if self.tokenizer is not None else None
        request = Request(next(self._ids), prompt, params, on_event,
                          rng=np.random.default_rng(params.seed), decoder=decoder)
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is shut down")
            if params.max_tokens == 0 and params.prompt_logprobs is None:
                self._finish(request, "length")
            else:
                self._waiting.append(request)
                self._wake.notify()
        return request

    def cancel(self, request: Request) -> None:
        """Stop ``request`` (a client went away): its slot is free before the next step."""
        with self._wake:
            request.cancelled = True
            self._wake.notify()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def free_slots(self) -> int:
        return len(self._free)

    # ---- stepping ---------------------------------------------------------------------------

    def _admit(self) -> None:
        with self._wake:
            for request in [r for r in self._running if r.cancelled]:
                self._release(request, "cancelled")
            for request in [r for r in self._waiting if r.cancelled]:
                self._waiting.remove(request)
                self._finish(request, "cancelled")
            while self._waiting and self._free:
                request = self._waiting.popleft()
                request.slot = self._free.pop()
                self.cache.free(request.slot)
                self._running.append(request)

    def _plan(self) -> tuple[list[Request], list[list[int]]]:
        """The requests in this step and the tokens each feeds: every decoding request's
        newest token, then prompt chunks within the step's budget (at least one)."""
        batch, feeds, budget = [], [], self.prefill_tokens
        for r in self._running:
            if r.prefilled == len(r.prompt):
                batch.append(r)
                feeds.append(r.tokens[-1:])
        for r in self._running:
            if r.prefilled < len(r.prompt):
                chunk = r.prompt[r.prefilled:r.prefilled + self.prefill_chunk]
                if len(chunk) > budget and budget < self.prefill_tokens:
                    break
                batch.append(r)
                feeds.append(chunk)
                budget -= len(chunk)
        return batch, feeds

    @staticmethod
    def _rows(request: Request, fed: int) -> int:
        """How many of the ``fed`` tokens' logits the step needs: the last one when it ends
        the prompt or decodes, every one when the prompt is being scored, else none."""
        if request.prefilled < len(request.prompt) and request.params.prompt_logprobs is not None:
            return fed
        return int(request.prefilled + fed >= len(request.prompt))

    def step(self) -> bool:
        """Admit waiting requests, run one forward, sample; False when there was nothing to do."""
        self._admit()
        if not self._running:
            return False
        batch, feeds = self._plan()
        rows = [self._rows(r, len(f)) for r, f in zip(batch, feeds)]
        step = self.cache.step([r.slot for r in batch], [len(f) for f in feeds], readout=rows)
        idx = np.fromiter(itertools.chain.from_iterable(feeds), np.int64)[None, :]  # (1, N)
        with no_grad(), threads.serial_below(idx.shape[1], self.serial_below):
            logits, _ = self.model(idx, kv_cache=step)
        ends = np.cumsum(rows)
        for request, fed, n, end in zip(batch, feeds, rows, ends):
            mine = logits.data[0, end - n:end]  # (n, V)
            if request.prefilled < len(request.prompt):
                if request.params.prompt_logprobs is not None:  # row i predicts token start+i+1
                    scored = mine[:len(request.prompt) - request.prefilled - 1]
                    request.prompt_logprobs += token_logprobs(
                        scored, request.prompt[request.prefilled + 1:][:len(scored)],
                        request.params.prompt_logprobs)
                    mine = mine[len(scored):]
                request.prefilled += len(fed)
            if len(mine) == 0:
                continue
            if request.params.max_tokens == 0:
                self._release(request, "length")
                continue
            try:
                self._sample(request, mine[-1])
            except IndexError as e:  # a token the tokenizer cannot decode: this request only
                self._release(request, "error", str(e))
        self.steps += 1
        return True

    def _sample(self, request: Request, row: np.ndarray) -> None:
        p = request.params
        token = int(sample(row[None], p.temperature, p.top_k, p.top_p, request.rng)[0])
        logprob = top = None
        if p.logprobs is not None:
            [(logprob, top)] = token_logprobs(row[None], [token], p.logprobs)
        request.tokens.append(token)
        if token == self.end_of_text or token in p.stop_token_ids:
            self._release(request, "stop")
            return
        text, reason = self._new_text(request, token)
        request.text += text
        self._emit(request, TokenEvent(token, text, logprob, top))
        if reason is None and len(request.tokens) == p.max_tokens:
            reason = "length"
        if reason is not None:
            self._release(request, reason)

    def _new_text(self, request: Request, token: int) -> tuple[str, str | None]:
        """The text that ``token`` adds, and "stop" if it completed a stop string."""
        if request.decoder is None:
            return "", None
        held = request._held + request.decoder.push(token)
        stops = request.params.stop
        found = [i for i in (held.find(s) for s in stops) if i >= 0]
        if found:
            request._held, request.decoder = "", None  # nothing after a stop string is text
            return held[:min(found)], "stop"
        keep = _held_back(held, stops)
        request._held = held[len(held) - keep:]
        return held[:len(held) - keep], None

    def _release(self, request: Request, reason: str, error: str | None = None) -> None:
        with self._wake:
            if request in self._running:
                self._running.remove(request)
                self._free.append(request.slot)
                self.cache.free(request.slot)
        self._finish(request, reason, error)

    def _finish(self, request: Request, reason: str, error: str | None = None) -> None:
        tail = ""
        if reason in ("length", "stop") and request.decoder is not None:
            tail = request._held + request.decoder.flush()
        request.text += tail
        request.finish_reason, request.error = reason, error
        self._emit(request, TokenEvent(None, tail, finish_reason=reason, error=error))
        request.done.set()

    @staticmethod
    def _emit(request: Request, event: TokenEvent) -> None:
        if request.on_event is not None:
            request.on_event(event)

    # ---- the thread -------------------------------------------------------------------------

    def start(self) -> Engine:
        """Step in a background thread whenever there is work, until ``close``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="alphagrad-engine",
                                            daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not (self._waiting or self._running):
                    self._wake.wait()
                if self._closed:
                    return
            try:
                self.step()
            except Exception as e:  # noqa: BLE001 (a bug must not hang the clients: end them)
                for request in list(self._running):
                    self._release(request, "error", f"{type(e).__name__}: {e}")

    def close(self, message: str = "the server is shutting down") -> None:
        """Stop stepping; every request not yet done ends with an error event."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
        for request in list(self._running):
            self._release(request, "error", message)
        while self._waiting:
            self._finish(self._waiting.popleft(), "error", message)
