"""The FastAPI app: OpenAI's chat and completion endpoints (plain and streamed), the model list, a health
check and a live page, over one engine. Every problem becomes an OpenAI-shaped error; none stops the server.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dllg.decode.config import GenerationConfig
from dllg.decode.loop import Generation
from dllg.decode.prompts import encode_prompt, encode_user_text
from dllg.errors import DllgError
from dllg.serve.engine import Engine, Event, Job, ServeError
from dllg.serve.protocol import (
    ChatRequest,
    CompletionRequest,
    GenerationRequest,
    choice,
    envelope,
    error_body,
    usage,
    validation_message,
    weights_extension,
)
from dllg.serve.streaming import AnswerStream, Piece

DEFAULT_MAX_TOKENS = 256  # a request without max_tokens gets this many at most (less if the context is full)
# how often a plain (not streamed) request checks that its client is still there
DISCONNECT_POLL_SECONDS = 0.5
R = TypeVar("R", bound=GenerationRequest)


class Service:
    """What the handlers share: the engine, the model's id and how a request becomes a job."""

    def __init__(self, engine: Engine, model_id: str, fusion: str) -> None:
        self.engine, self.model_id, self.fusion = engine, model_id, fusion
        self.tokenizer = engine.pool.tokenizer
        self.experts = engine.pool.names
        self.created = int(time.time())

    def model_card(self) -> dict:
        extension = {"experts": self.experts, "fusion": self.fusion, "context": self.engine.context}
        return {
            "id": self.model_id,
            "object": "model",
            "created": self.created,
            "owned_by": "dllg",
            "dllg": extension,
        }

    def check_model(self, model: str) -> None:
        if model != self.model_id:
            raise ServeError(
                404,
                f"unknown model {model!r}: this server serves {self.model_id!r} (GET /v1/models)",
                param="model",
            )

    def generation_config(
        self, body: GenerationRequest, budget: int | None, prompt_tokens: int
    ) -> GenerationConfig:
        """The request's settings, with its token budget checked against the context."""
        context = self.engine.context
        if prompt_tokens >= context:
            raise ServeError(
                400,
                f"the prompt has {prompt_tokens} tokens but the context holds {context}: shorten the prompt",
                param="messages" if isinstance(body, ChatRequest) else "prompt",
            )
        room = context - prompt_tokens
        if budget is not None and budget > room:
            raise ServeError(
                400,
                f"max_tokens={budget} does not fit: the prompt has {prompt_tokens} of the context's "
                f"{context} tokens; ask for at most {room}",
                param="max_tokens",
            )
        max_new = budget if budget is not None else min(DEFAULT_MAX_TOKENS, room)
        if body.min_tokens > max_new:
            raise ServeError(
                400, f"min_tokens={body.min_tokens} exceeds max_tokens={max_new}", param="min_tokens"
            )
        try:
            return GenerationConfig(
                max_new_tokens=max_new,
                min_new_tokens=body.min_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                seed=body.seed,
                stop=body.stop_strings,
            )
        except DllgError as exc:
            raise ServeError(400, str(exc)) from exc

    async def answer(
        self,
        request: Request,
        body: GenerationRequest,
        budget: int | None,
        prompt: list[int],
        scored: list[int] | None,
    ) -> Response:
        config = self.generation_config(body, budget, len(prompt))
        job = Job(prompt, config, asyncio.get_running_loop(), scored)
        self.engine.submit(job)
        reply = Reply(self, body, job, chat=isinstance(body, ChatRequest))
        if body.stream:
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(reply.stream(), media_type="text/event-stream", headers=headers)
        return JSONResponse(await reply.whole(request))


class Reply:
    """One request's answer, sent whole or as server-sent events."""

    def __init__(self, service: Service, body: GenerationRequest, job: Job, chat: bool) -> None:
        self.service, self.body, self.job, self.chat = service, body, job, chat
        self.answer = AnswerStream(service.tokenizer, job.config.stop)
        self.ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _envelope(self, chunk: bool) -> dict:
        return envelope(self.chat, self.ident, self.created, self.service.model_id, chunk)

    def _usage(self, generation: Generation) -> dict:
        return usage(len(self.job.prompt), len(generation.token_ids))

    def _with_weights(self, body: dict, pieces: list[Piece]) -> dict:
        if self.body.dllg_weights:
            body["dllg"] = weights_extension(self.service.experts, pieces)
        return body

    async def whole(self, request: Request) -> dict:
        """Wait for the answer; a client that leaves meanwhile cancels it."""
        pieces: list[Piece] = []
        finished = False
        getter: asyncio.Future[Event] | None = None
        try:
            while True:
                getter = getter or asyncio.ensure_future(self.job.events.get())
                done, _ = await asyncio.wait({getter}, timeout=DISCONNECT_POLL_SECONDS)
                if not done:
                    if await request.is_disconnected():
                        getter.cancel()
                        raise ServeError(499, "the client closed the connection")
                    continue
                event, getter = getter.result(), None
                if event.error is not None:
                    finished = True
                    raise event.error
                pieces += self.answer.push(event.tokens, event.weights.tolist(), event.finished)
                if event.finished is not None:
                    finished = True
                    generation = event.finished
                    break
        finally:
            if not finished:
                self.service.engine.cancel(self.job)
        text = generation.text
        body = self._with_weights(choice(self.chat, text, generation.finish_reason, delta=False), pieces)
        return {**self._envelope(chunk=False), "choices": [body], "usage": self._usage(generation)}

    def _chunk(self, choices: list[dict], usage_counts: dict | None = None) -> str:
        body = {**self._envelope(chunk=True), "choices": choices}
        if self.body.include_usage:
            body["usage"] = usage_counts
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def stream(self) -> AsyncIterator[str]:
        """Server-sent events: OpenAI's chunks, then `data: [DONE]`; a client that leaves cancels the job."""
        finished = False
        try:
            if self.chat:
                yield self._chunk([choice(True, "", None, delta=True, role=True)])
            while not finished:
                # every event waiting goes out in one chunk: a busy server sends fewer, larger ones
                events = [await self.job.events.get()]
                while not self.job.events.empty():
                    events.append(self.job.events.get_nowait())
                pieces: list[Piece] = []
                for event in events:
                    pieces += self.answer.push(event.tokens, event.weights.tolist(), event.finished)
                text = "".join(piece for piece, _ in pieces)
                if text or (pieces and self.body.dllg_weights):
                    yield self._chunk([self._with_weights(choice(self.chat, text, None, delta=True), pieces)])
                last = events[-1]  # nothing comes after a job's last event
                finished = last.error is not None or last.finished is not None
                if last.error is not None:
                    error = last.error
                    yield f"data: {json.dumps(error_body(error.message, error.kind, error.param))}\n\n"
                elif last.finished is not None:
                    reason = last.finished.finish_reason
                    yield self._chunk([choice(self.chat, None if self.chat else "", reason, delta=True)])
                    if self.body.include_usage:
                        yield self._chunk([], self._usage(last.finished))
            yield "data: [DONE]\n\n"
        finally:
            if not finished:  # the client went away (the stream was cancelled): stop the work too
                self.service.engine.cancel(self.job)


async def parse_body(request: Request, model: type[R]) -> R:
    """The JSON body as `model`; malformed JSON or a bad field is a 400 naming the problem."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServeError(400, f"the request body is not valid JSON ({exc}): send a JSON object") from exc
    if not isinstance(data, dict):
        raise ServeError(400, f"the request body is a JSON {type(data).__name__}: send a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = validation_message(exc)
        raise ServeError(400, message, param=param) from exc


def encoded(encode: Callable[[], list[int]], param: str) -> list[int]:
    try:
        return encode()
    except DllgError as exc:
        raise ServeError(400, str(exc), param=param) from exc


def create_app(engine: Engine, model_id: str = "dllg", fusion: str | None = None) -> FastAPI:
    """The app over `engine`; the engine's thread runs while the app does."""
    service = Service(engine, model_id, fusion or engine.rule.name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="dllg serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.kind, exc.param), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        message = f"{exc.detail}: {where} (see GET /v1/models, POST /v1/chat/completions)"
        return JSONResponse(error_body(message, "invalid_request_error"), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        message = f"internal error: {type(exc).__name__}: {exc}"
        return JSONResponse(error_body(message, "server_error"), status_code=500)

    @app.get("/health")
    async def health() -> JSONResponse:
        limits = {"max_batch": engine.max_batch, "max_queue": engine.max_queue, "timeout": engine.timeout}
        status = "ok" if engine.alive else "engine stopped"
        body = {"status": status, "model": service.model_id, **asdict(engine.stats), **limits}
        return JSONResponse(body, status_code=200 if engine.alive else 503)

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [service.model_card()]}

    @app.get("/v1/models/{model:path}")
    async def model(model: str) -> dict:
        service.check_model(model)
        return service.model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await parse_body(request, ChatRequest)
        service.check_model(body.model)
        messages = body.chat()
        prompt = encoded(lambda: encode_prompt(service.tokenizer, messages, chat=True), "messages")
        scored = (
            encoded(lambda: encode_user_text(service.tokenizer, messages), "messages")
            if engine.rule.needs_prompt_nll
            else None
        )
        return await service.answer(request, body, body.token_budget, prompt, scored)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await parse_body(request, CompletionRequest)
        service.check_model(body.model)
        text = body.text()
        prompt = encoded(lambda: encode_prompt(service.tokenizer, text, chat=False), "prompt")
        if not prompt:
            raise ServeError(400, "the prompt is empty: give some text to continue", param="prompt")
        scored = (
            encoded(lambda: encode_user_text(service.tokenizer, text), "prompt")
            if engine.rule.needs_prompt_nll
            else None
        )
        return await service.answer(request, body, body.token_budget, prompt, scored)

    @app.get("/", response_class=HTMLResponse)
    async def live_page() -> str:
        from dllg.view.live_page import render_live_page

        return render_live_page(service.experts, service.model_id, title=f"dllg serve: {service.fusion}")

    return app
