"""The OpenAI-compatible API: /v1/models, /v1/completions, /v1/chat/completions, and the
/tokenize and /detokenize helpers. Routes only translate: the work is in ``generation.py``."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from alphagrad.serve.auth import require_api_key
from alphagrad.serve.errors import ERROR_RESPONSES, APIError, bad_request, error_json
from alphagrad.serve.generation import Choice, Generation, fit_prompt, sampling_params
from alphagrad.serve.registry import ServedModel
from alphagrad.serve.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatLogprobs,
    ChatMessage,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    Delta,
    DetokenizeRequest,
    DetokenizeResponse,
    ErrorDetail,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
    TokenLogprob,
    TopLogprob,
)

router = APIRouter(dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)
SSE = {200: {"content": {"text/event-stream": {}}, "description": "JSON, or with stream: true "
             "server-sent events ending with data: [DONE]"}}


def served_model(request: Request, name: str) -> ServedModel:
    models = request.app.state.models
    if name not in models:
        known = ", ".join(models) or "none"
        raise APIError(404, f"the model {name!r} does not exist here (loaded: {known})",
                       "model", "model_not_found")
    return models[name]


def _sse(item: BaseModel | str) -> str:
    return f"data: {item if isinstance(item, str) else item.model_dump_json()}\n\n"


def _streaming(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _sse_events(generation: Generation, chunks: AsyncIterator[BaseModel],
                      usage_chunk: BaseModel | None) -> AsyncIterator[str]:
    """The chunks as server-sent events, then usage if asked, then [DONE]; an engine failure
    (the server shutting down) ends the stream with an error event."""
    try:
        async for chunk in chunks:
            yield _sse(chunk)
        if usage_chunk is not None:
            usage_chunk.usage = generation.usage()
            yield _sse(usage_chunk)
    except RuntimeError as e:
        yield _sse(error_json(ErrorDetail(message=str(e), type="server_error")))
    finally:
        generation.cancel()  # a client that left: its slots are freed now
    yield _sse("[DONE]")


@router.get("/v1/models", response_model=ModelList)
def list_models(request: Request) -> ModelList:
    return ModelList(data=[ModelCard(id=s.name, created=s.created, kind=s.kind,
                                     context_length=s.context_length,
                                     parameters=s.model.num_parameters(),
                                     chat_template=s.chat_template.to_dict())
                           for s in request.app.state.models.values()])


# ---- completions -----------------------------------------------------------------------------

def _prompts(served: ServedModel, prompt) -> list[tuple[list[int], str | None]]:
    """(token ids, the text to echo) for each prompt of a request."""
    if isinstance(prompt, str):
        return [(served.encode(prompt), prompt)]
    if all(isinstance(p, str) for p in prompt):
        return [(served.encode(p), p) for p in prompt]
    if all(isinstance(p, int) for p in prompt):
        return [(list(prompt), None)]
    return [(list(p), None) for p in prompt]


# (token, its logprob, the likeliest alternatives): None for the prompt's first token
LogprobEntry = tuple[int, float | None, list[tuple[int, float]] | None]


def _completion_logprobs(served: ServedModel, entries: list[LogprobEntry],
                         offset: int = 0) -> CompletionLogprobs:
    tokens, offsets = [], []
    for token, _, _ in entries:
        tokens.append(served.token_text(token))
        offsets.append(offset)
        offset += len(tokens[-1])
    return CompletionLogprobs(
        tokens=tokens, token_logprobs=[lp for _, lp, _ in entries],
        top_logprobs=[None if top is None else {served.token_text(t): lp for t, lp in top}
                      for _, _, top in entries], text_offset=offsets)


def _prompt_entries(choice: Choice, request) -> list[LogprobEntry]:
    """The prompt's tokens with their logprobs, as OpenAI's echo gives them (the first has
    none: nothing comes before it)."""
    return [(choice.prompt[0], None, None)] + [
        (token, lp, top) for token, (lp, top) in zip(choice.prompt[1:], request.prompt_logprobs)]


@router.post("/v1/completions", response_model=Completion, responses=SSE)
async def completions(body: CompletionRequest, request: Request):
    """Continue each prompt (``n`` choices each), as JSON or, with ``stream``, as events.
    With ``echo`` and ``logprobs`` the prompt's tokens come first in ``logprobs``, as in
    OpenAI's API (``max_tokens: 0`` then only scores the prompt)."""
    served = served_model(request, body.model)
    logprobs = body.logprobs is not None
    jobs, echoes = [], []
    for ids, text in _prompts(served, body.prompt):
        prompt, max_tokens = fit_prompt(served, ids, body.max_tokens, body.truncate, "prompt")
        echo = text if text is not None and prompt == ids else served.decode(prompt)
        echoes += [echo if body.echo else ""] * body.n
        jobs.append((prompt, sampling_params(body, max_tokens, body.stop_strings(),
                                             body.logprobs,
                                             body.logprobs if body.echo else None)))
    generation = Generation(served, jobs, body.n)
    meta = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": served.name}

    def echo_logprobs(choice: Choice) -> list[LogprobEntry]:
        return _prompt_entries(choice, generation.requests[choice.index]) if body.echo else []

    if not body.stream:
        await generation.wait(request.is_disconnected)
        return Completion(**meta, usage=generation.usage(), choices=[
            CompletionChoice(index=c.index, text=echoes[c.index] + c.text,
                             finish_reason=c.finish_reason,
                             logprobs=_completion_logprobs(served, echo_logprobs(c) + c.logprobs)
                             if logprobs else None)
            for c in generation.choices])

    async def chunks() -> AsyncIterator[Completion]:
        echoed = [not echo for echo in echoes]
        async for choice, event in generation.events():
            if not echoed[choice.index]:  # now that the prompt has been read (and scored)
                echoed[choice.index] = True
                yield Completion(**meta, choices=[CompletionChoice(
                    index=choice.index, text=echoes[choice.index],
                    logprobs=_completion_logprobs(served, echo_logprobs(choice))
                    if logprobs else None)])
            if event.token is not None:
                yield Completion(**meta, choices=[CompletionChoice(
                    index=choice.index, text=event.text, logprobs=_completion_logprobs(
                        served, choice.logprobs[-1:]) if logprobs else None)])
            if event.finish_reason is not None:
                yield Completion(**meta, choices=[CompletionChoice(
                    index=choice.index, text=event.text, finish_reason=event.finish_reason)])

    include_usage = body.stream_options is not None and body.stream_options.include_usage
    usage = Completion(**meta, choices=[]) if include_usage else None
    return _streaming(_sse_events(generation, chunks(), usage))


# ---- chat ------------------------------------------------------------------------------------

def render_chat(served: ServedModel, messages: list[ChatMessage],
                add_generation_prompt: bool = True) -> list[int]:
    return served.encode_chat(served.chat_template.render(
        [{"role": m.role, "content": m.text()} for m in messages], add_generation_prompt))


def _token_logprob(served: ServedModel, token: int, logprob: float) -> TopLogprob:
    text = served.token_text(token)
    raw = served.tokenizer.token_bytes(token) if hasattr(served.tokenizer, "token_bytes") \
        else text.encode()
    return TopLogprob(token=text, logprob=logprob, bytes=list(raw))


def _chat_logprobs(served: ServedModel, entries) -> ChatLogprobs:
    content = []
    for token, logprob, top in entries:
        first = _token_logprob(served, token, logprob)
        content.append(TokenLogprob(**first.model_dump(), top_logprobs=[
            _token_logprob(served, t, lp) for t, lp in top]))
    return ChatLogprobs(content=content)


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=SSE)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    """Reply to ``messages``, rendered by the model's chat template (``GET /v1/models`` shows
    it), as JSON or, with ``stream``, as ``chat.completion.chunk`` events."""
    served = served_model(request, body.model)
    if body.top_logprobs and not body.logprobs:
        raise bad_request("top_logprobs needs logprobs: true", "top_logprobs")
    ids = render_chat(served, body.messages)
    limit = body.max_completion_tokens or body.max_tokens
    prompt, max_tokens = fit_prompt(served, ids, limit, body.truncate, "messages")
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    stop = body.stop_strings() + served.chat_template.stop
    generation = Generation(served, [(prompt, sampling_params(body, max_tokens, stop, logprobs))],
                            body.n)
    meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
            "model": served.name}

    if not body.stream:
        await generation.wait(request.is_disconnected)
        return ChatCompletion(**meta, usage=generation.usage(), choices=[
            ChatChoice(index=c.index, message=AssistantMessage(content=c.text),
                       finish_reason=c.finish_reason,
                       logprobs=_chat_logprobs(served, c.logprobs) if body.logprobs else None)
            for c in generation.choices])

    async def chunks() -> AsyncIterator[ChatCompletionChunk]:
        for choice in generation.choices:
            yield ChatCompletionChunk(**meta, choices=[ChunkChoice(
                index=choice.index, delta=Delta(role="assistant", content=""))])
        async for choice, event in generation.events():
            if event.token is not None:
                yield ChatCompletionChunk(**meta, choices=[ChunkChoice(
                    index=choice.index, delta=Delta(content=event.text),
                    logprobs=_chat_logprobs(served, choice.logprobs[-1:])
                    if body.logprobs else None)])
            if event.finish_reason is not None:
                yield ChatCompletionChunk(**meta, choices=[ChunkChoice(
                    index=choice.index, delta=Delta(content=event.text or None),
                    finish_reason=event.finish_reason)])

    include_usage = body.stream_options is not None and body.stream_options.include_usage
    usage = ChatCompletionChunk(**meta, choices=[]) if include_usage else None
    return _streaming(_sse_events(generation, chunks(), usage))


# ---- tokens ----------------------------------------------------------------------------------

@router.post("/tokenize", response_model=TokenizeResponse)
def tokenize(body: TokenizeRequest, request: Request) -> TokenizeResponse:
    """The token ids of ``prompt``, or of ``messages`` as the chat template renders them."""
    served = served_model(request, body.model)
    if (body.prompt is None) == (body.messages is None):
        raise bad_request("send exactly one of prompt and messages", "prompt")
    tokens = served.encode(body.prompt) if body.prompt is not None else \
        render_chat(served, body.messages, body.add_generation_prompt)
    return TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=served.context_length)


@router.post("/detokenize", response_model=DetokenizeResponse)
def detokenize(body: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    served = served_model(request, body.model)
    vocab = served.model.config.vocab_size
    bad = [t for t in body.tokens if t >= vocab]
    if bad:
        raise bad_request(f"token id {bad[0]} is out of range for the vocabulary of {vocab}",
                          "tokens")
    return DetokenizeResponse(prompt=served.decode(body.tokens))
