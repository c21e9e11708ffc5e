"""The bridge between one API call and the engine: its sequences, their events, their results.

An API call may run several sequences (``n`` choices, several prompts); each becomes an engine
request whose events arrive on this call's asyncio queue, tagged with the choice's index.
Cancelling (a client that went away) takes every unfinished sequence out of the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from alphagrad.serve.engine import Request, SamplingParams, TokenEvent
from alphagrad.serve.errors import bad_request
from alphagrad.serve.registry import ServedModel
from alphagrad.serve.schemas import Sampling, Usage


@dataclass
class Choice:
    """What one sequence has produced so far."""

    index: int
    prompt: list[int]
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    logprobs: list[tuple[int, float, list[tuple[int, float]]]] = field(default_factory=list)
    finish_reason: str | None = None


def fit_prompt(served: ServedModel, prompt: list[int], max_tokens: int | None, truncate: bool,
               param: str) -> tuple[list[int], int]:
    """The prompt (cut to its end if ``truncate``) and the max_tokens that fit the context."""
    context = served.context_length
    if not prompt:
        start = served.start_token()
        if start is None:
            raise bad_request(f"{param} is empty and this model has no start token", param)
        prompt = [start]
    if max_tokens is not None and max_tokens >= context:
        raise bad_request(f"max_tokens {max_tokens} leaves no room for a prompt in the context "
                          f"length of {context} tokens", "max_tokens", "context_length_exceeded")
    room = context - (max_tokens if max_tokens is not None else 1)
    if len(prompt) > room:
        if not truncate:
            raise bad_request(
                f"this model's context length is {context} tokens; the {param} has "
                f"{len(prompt)} tokens and max_tokens asks for {max_tokens or 1} more. Shorten "
                "the prompt, lower max_tokens, or send truncate: true", param,
                "context_length_exceeded")
        prompt = prompt[len(prompt) - room:]
    return prompt, max_tokens if max_tokens is not None else context - len(prompt)


def sampling_params(body: Sampling, max_tokens: int, stop: tuple[str, ...],
                    logprobs: int | None, prompt_logprobs: int | None = None) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=body.temperature,
                          top_k=body.top_k, top_p=body.top_p if body.top_p < 1.0 else None,
                          seed=body.seed, stop=stop, logprobs=logprobs,
                          prompt_logprobs=prompt_logprobs)


class Generation:
    """The sequences of one API call: ``n`` choices for each (prompt, params), choice i of a
    prompt seeded ``seed + i``."""

    def __init__(self, served: ServedModel, jobs: list[tuple[list[int], SamplingParams]],
                 n: int):
        self.served = served
        self.queue: asyncio.Queue[tuple[int, TokenEvent]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.choices: list[Choice] = []
        self.requests: list[Request] = []
        for prompt, params in jobs:
            for i in range(n):
                index = len(self.choices)
                seed = None if params.seed is None else params.seed + i
                self.choices.append(Choice(index, prompt))

                def put(event: TokenEvent, index: int = index) -> None:
                    loop.call_soon_threadsafe(self.queue.put_nowait, (index, event))

                try:
                    self.requests.append(served.engine.submit(prompt, replace(params, seed=seed),
                                                              put))
                except (ValueError, RuntimeError) as e:  # RuntimeError: shutting down
                    self.cancel()
                    raise bad_request(str(e)) from None

    async def events(self) -> AsyncIterator[tuple[Choice, TokenEvent]]:
        """Each sequence's events as they come, the choice updated, until every one ended.
        An engine error raises RuntimeError after the events before it."""
        open_ = len(self.choices)
        while open_:
            index, event = await self.queue.get()
            choice = self.choices[index]
            choice.text += event.text
            if event.token is not None:
                choice.tokens.append(event.token)
                if event.logprob is not None:
                    choice.logprobs.append((event.token, event.logprob, event.top_logprobs or []))
            if event.finish_reason is not None:
                open_ -= 1
                if event.finish_reason == "error":
                    self.cancel()
                    raise RuntimeError(event.error or "generation failed")
                choice.finish_reason = event.finish_reason
            yield choice, event

    async def wait(self, is_disconnected) -> list[Choice]:
        """Run to the end; stop early (and free the slots) if the client goes away."""
        watcher = asyncio.create_task(self._watch(is_disconnected))
        try:
            async for _ in self.events():
                pass
        finally:
            watcher.cancel()
        return self.choices

    async def _watch(self, is_disconnected) -> None:
        while True:
            await asyncio.sleep(0.25)
            if await is_disconnected():
                self.cancel()
                return

    def cancel(self) -> None:
        for request in self.requests:
            if not request.done.is_set():
                self.served.engine.cancel(request)

    def usage(self) -> Usage:
        prompt = sum(len(c.prompt) for c in self.choices)
        completion = sum(len(r.tokens) for r in self.requests)
        return Usage(prompt_tokens=prompt, completion_tokens=completion,
                     total_tokens=prompt + completion)
