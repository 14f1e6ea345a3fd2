"""The OpenAI-compatible endpoints, driven by the official `openai` client against a real server: the answers
are the decode loop's, streamed or not, with stop strings, budgets, usage counts and per-token weights."""

import threading

import httpx
import openai
import pytest
import torch
from serve_helpers import EXPERTS, RULE, Served

from dllg.decode.prompts import encode_prompt

PROMPTS = ["What is 3 + 4?", "Write a Python function that reverses a string.", "Hello!", "def add(a, b):"]


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def streamed(client: "openai.OpenAI", **request: object) -> tuple[str, list, list]:
    """The joined content of a streamed chat answer, its finish reasons and its chunks."""
    chunks = list(client.chat.completions.create(stream=True, **request))  # type: ignore[call-overload]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return text, reasons, chunks


def test_models_lists_the_one_model(served: Served):
    client = served.client()
    models = client.models.list().data
    assert [m.id for m in models] == ["dllg"]
    assert models[0].model_extra["dllg"] == {"experts": EXPERTS, "fusion": RULE, "context": 512}
    with pytest.raises(openai.NotFoundError, match="unknown model"):
        client.models.retrieve("gpt-4")


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_chat_answer_is_the_decode_loops(served: Served, prompt: str):
    reply = served.client().chat.completions.create(model="dllg", messages=chat(prompt), max_tokens=24)
    alone = served.alone(prompt, max_new_tokens=24)
    assert reply.choices[0].message.content == alone.text
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == {"eos": "stop", "length": "length"}[alone.finish_reason]
    prompt_tokens = len(encode_prompt(served.pool.tokenizer, prompt))
    assert reply.usage.prompt_tokens == prompt_tokens
    assert reply.usage.completion_tokens == len(alone.token_ids)
    assert reply.usage.total_tokens == prompt_tokens + len(alone.token_ids)


def test_completion_reads_the_raw_prompt(served: Served):
    reply = served.client().completions.create(model="dllg", prompt=PROMPTS[3], max_tokens=16)
    alone = served.alone(PROMPTS[3], chat=False, max_new_tokens=16)
    assert reply.choices[0].text == alone.text
    assert reply.usage.prompt_tokens == len(encode_prompt(served.pool.tokenizer, PROMPTS[3], chat=False))
    assert reply.choices[0].text != served.alone(PROMPTS[3], max_new_tokens=16).text  # no chat template


def test_stream_joins_to_the_whole_answer(served: Served):
    client = served.client()
    request = {"model": "dllg", "messages": chat(PROMPTS[1]), "max_tokens": 20}
    whole = client.chat.completions.create(**request)
    text, reasons, chunks = streamed(client, **request, stream_options={"include_usage": True})
    assert text == whole.choices[0].message.content
    assert reasons == [whole.choices[0].finish_reason]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # it did stream
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage  # usage last, as OpenAI sends it
    assert all(c.usage is None for c in chunks[:-1])


def test_completion_stream_joins_to_the_whole_answer(served: Served):
    client = served.client()
    request = {"model": "dllg", "prompt": PROMPTS[0], "max_tokens": 12}
    whole = client.completions.create(**request).choices[0].text
    chunks = list(client.completions.create(stream=True, **request))
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True])
def test_stop_strings_cut_the_answer(served: Served, stream: bool):
    prompt = PROMPTS[1]
    free = served.alone(prompt, max_new_tokens=40).text
    assert len(free) > 12
    stops = [free[9:12], "never appears \x00"]  # three characters from the middle of the free answer
    cut = free[: free.find(stops[0])]
    client = served.client()
    request = {"model": "dllg", "messages": chat(prompt), "max_tokens": 40, "stop": stops}
    if stream:
        text, reasons, _ = streamed(client, **request)
    else:
        reply = client.chat.completions.create(**request)
        text, reasons = reply.choices[0].message.content, [reply.choices[0].finish_reason]
    assert text == cut == served.alone(prompt, max_new_tokens=40, stop=tuple(stops)).text
    assert reasons == ["stop"]
    single = client.chat.completions.create(**{**request, "stop": stops[0]})  # one string, not a list
    assert single.choices[0].message.content == cut


def test_max_tokens_ends_with_length(served: Served):
    reply = served.client().chat.completions.create(
        model="dllg", messages=chat(PROMPTS[2]), max_tokens=5, extra_body={"min_tokens": 5}
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5


def test_weights_come_per_token(served: Served):
    prompt = PROMPTS[0]
    request = {
        "model": "dllg",
        "messages": chat(prompt),
        "max_tokens": 16,
        "extra_body": {"dllg_weights": True},
    }
    client = served.client()
    reply = client.chat.completions.create(**request)
    alone = served.alone(prompt, max_new_tokens=16)
    extension = reply.choices[0].model_extra["dllg"]
    assert extension["experts"] == EXPERTS
    tokens = extension["tokens"]
    assert "".join(t["token"] for t in tokens) == reply.choices[0].message.content
    kept = len(alone.token_ids) - (alone.finish_reason == "eos")  # the end-of-sequence token has no text
    assert len(tokens) == kept
    got = torch.tensor([t["weights"] for t in tokens])
    assert torch.allclose(got, alone.weights[:kept], atol=1e-5)
    assert got.std(0).max() > 0  # the rule's weights change over the answer: they are not a constant
    _, _, chunks = streamed(client, **request)
    with_text = [c.choices[0] for c in chunks if c.choices and c.choices[0].delta.content]
    for delta in with_text:
        pieces = delta.model_extra["dllg"]["tokens"]
        assert "".join(p["token"] for p in pieces) == delta.delta.content
    streamed_weights = [
        p["weights"]
        for c in chunks
        if c.choices
        for p in (c.choices[0].model_extra or {}).get("dllg", {}).get("tokens", [])
    ]
    assert torch.allclose(torch.tensor(streamed_weights), got)


def test_concurrent_requests_get_their_answers_alone(served: Served):
    prompts = [f"{PROMPTS[i % len(PROMPTS)]} ({i})" for i in range(6)]  # six at once, four rows
    client = served.client()
    answers: dict[int, str] = {}
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            reply = client.chat.completions.create(model="dllg", messages=chat(prompts[i]), max_tokens=20)
            answers[i] = reply.choices[0].message.content
        except BaseException as exc:
            errors.append(exc)

    before = served.engine.stats.steps, served.engine.stats.generated_tokens
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [answers[i] for i in range(6)] == [served.alone(p, max_new_tokens=20).text for p in prompts]
    steps = served.engine.stats.steps - before[0]
    tokens = served.engine.stats.generated_tokens - before[1]
    assert steps < tokens  # several rows per step: they were batched, not served one after another


BAD = [
    ({"model": "gpt-4"}, 404, "model", "unknown model 'gpt-4'"),
    ({"max_tokens": 0}, 400, "max_tokens", "greater than or equal to 1"),
    ({"max_tokens": -3}, 400, "max_tokens", "greater than or equal to 1"),
    ({"max_tokens": 10**9}, 400, "max_tokens", "does not fit"),
    ({"n": 2}, 400, "n", "only n=1"),
    ({"messages": []}, 400, "messages", "at least 1 item"),
    ({"messages": chat("many words " * 300)}, 400, "messages", "context holds 512"),
    ({"temperature": -0.5}, 400, "temperature", "greater than or equal to 0"),
    ({"temperature": 7}, 400, "temperature", "less than or equal to 2"),
    ({"top_p": 0}, 400, "top_p", "greater than 0"),
    ({"top_p": 1.5}, 400, "top_p", "less than or equal to 1"),
    ({"stop": ["", "x"]}, 400, "stop", "empty stop string"),
    ({"min_tokens": 50, "max_tokens": 10}, 400, "min_tokens", "exceeds max_tokens"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages.0.role", "role"),
    ({"model": None}, 400, "model", "valid string"),
]


@pytest.mark.parametrize(("change", "status", "param", "message"), BAD, ids=[str(b[0])[:40] for b in BAD])
def test_bad_input_is_a_4xx_with_one_line(
    served: Served, change: dict, status: int, param: str, message: str
):
    body = {"model": "dllg", "messages": chat("hi"), "max_tokens": 4, **change}
    response = httpx.post(f"{served.url}/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert message in error["message"] and "\n" not in error["message"]
    assert error["param"] == param


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"model": "dllg", "messages": [', "not valid JSON"),
        (b"[1, 2]", "JSON list: send a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_body_is_a_400(served: Served, body: bytes, message: str):
    response = httpx.post(f"{served.url}/v1/chat/completions", content=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_bad_input_through_the_client_and_the_server_goes_on(served: Served):
    client = served.client()
    with pytest.raises(openai.NotFoundError, match="unknown model"):
        client.chat.completions.create(model="other", messages=chat("hi"))
    with pytest.raises(openai.BadRequestError, match="one prompt per request"):
        client.completions.create(model="dllg", prompt=["a", "b"])
    with pytest.raises(openai.BadRequestError, match="prompt is empty"):
        client.completions.create(model="dllg", prompt="")
    assert httpx.post(f"{served.url}/v1/nothing", json={}).status_code == 404
    assert httpx.get(f"{served.url}/health").json()["status"] == "ok"
    reply = client.chat.completions.create(model="dllg", messages=chat("hi"), max_tokens=3)
    assert reply.choices[0].message.content == served.alone("hi", max_new_tokens=3).text
