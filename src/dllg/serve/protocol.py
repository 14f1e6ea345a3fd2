"""The OpenAI-compatible request and response JSON: requests validated by pydantic, responses built as dicts.

Beyond OpenAI's fields a request may set `min_tokens` (as vLLM: no end-of-sequence before that many tokens)
and `dllg_weights: true`, which adds to each choice (or stream delta) `"dllg": {"experts": [names],
"tokens": [{"token": text, "weights": [one per expert]}]}`: which expert wrote each token.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length"}  # dllg's reason -> OpenAI's


class StreamOptions(BaseModel):
    include_usage: bool = False


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, tool_calls, ...: not used

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class GenerationRequest(BaseModel):
    """What both endpoints take. Unknown fields (user, presence_penalty, ...) are ignored, as OpenAI-style
    servers do; those that would change the answer's shape (n) are refused."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    min_tokens: int = Field(0, ge=0)
    temperature: float = Field(0.0, ge=0, le=2)  # dllg's default: greedy, so answers repeat
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    dllg_weights: bool = False

    @field_validator("n")
    @classmethod
    def one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is served: send n separate requests (with different seeds)")
        return n

    @field_validator("stop")
    @classmethod
    def non_empty_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if any(not s for s in stops):
            raise ValueError("an empty stop string would stop at once: remove it")
        return stop

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens

    def chat(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]

    @property
    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(GenerationRequest):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def one_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError(f"{len(prompt)} prompts given: send one prompt per request")
        return prompt

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    @property
    def token_budget(self) -> int | None:
        return self.max_tokens


# -- errors ------------------------------------------------------------------------------------------


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def validation_message(exc: ValidationError | list[dict]) -> tuple[str, str | None]:
    """The first problem as one line naming the field, and the field (OpenAI's `param`)."""
    errors = exc.errors() if isinstance(exc, ValidationError) else exc
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", first["msg"])
        return f"the request body is not valid JSON ({reason}): send a JSON object", None
    where = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(where) or None
    message = str(first["msg"]).removeprefix("Value error, ")
    got = first.get("input")
    if first.get("type") == "missing":
        return f"{param}: required field missing", param
    shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
    return (f"{param}: {message} (got {shown})" if param else message), param


# -- responses ---------------------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def weights_extension(experts: list[str], tokens: list[tuple[str, list[float]]]) -> dict:
    return {"experts": experts, "tokens": [{"token": t, "weights": w} for t, w in tokens]}


def choice(chat: bool, text: str | None, finish: str | None, delta: bool, role: bool = False) -> dict:
    """One choice: a chat message or delta, or a completion's text; `finish` in dllg's terms."""
    body: dict = {"index": 0}
    if chat:
        content = {"role": "assistant"} if role or not delta else {}
        if text is not None:
            content["content"] = text
        body["delta" if delta else "message"] = content
    else:
        body["text"] = text or ""
    body["logprobs"] = None
    body["finish_reason"] = FINISH_REASONS.get(finish, finish) if finish else None
    return body


def envelope(chat: bool, ident: str, created: int, model: str, chunk: bool) -> dict:
    kind = ("chat.completion.chunk" if chunk else "chat.completion") if chat else "text_completion"
    return {"id": ident, "object": kind, "created": created, "model": model}
