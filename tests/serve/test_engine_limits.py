"""The engine under pressure: a full queue refuses with 429, a client that leaves stops costing work, a
request past the timeout ends with 504, and a step that raises fails its batch (500) while the server goes
on."""

import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from serve_helpers import Served, serving, tiny_pool

from dllg.experts import ExpertPool

LONG = {"max_tokens": 400, "min_tokens": 400}  # no end-of-sequence: it runs until cancelled


def long_request(text: str = "Tell me a long story.") -> dict:
    return {"model": "dllg", "messages": [{"role": "user", "content": text}], "stream": True, **LONG}


def long_client_request(stream: bool = False) -> dict:
    """The same through the openai client (min_tokens is not one of its arguments)."""
    body = long_request()
    return {
        "model": "dllg",
        "messages": body["messages"],
        "max_tokens": LONG["max_tokens"],
        "stream": stream,
        "extra_body": {"min_tokens": LONG["min_tokens"]},
    }


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def first_content(lines: Iterator[str]) -> str:
    """Read a stream up to its first content chunk (the request is running then)."""
    for line in lines:
        if '"content": "' in line and '"role"' not in line:
            return line
    raise AssertionError("the stream ended before any content")


def slowed(pool: ExpertPool, seconds: float) -> ExpertPool:
    """Each step of its first expert takes `seconds` longer: a long answer stays long on a fast machine."""
    expert = pool.experts[0]
    step = expert.step

    def slow_step(state, tokens):
        time.sleep(seconds)
        return step(state, tokens)

    expert.step = slow_step  # type: ignore[method-assign]
    return pool


@pytest.fixture(scope="module")
def narrow() -> Iterator[Served]:
    """One row and one place in the queue; 400 tokens take 4 s at least."""
    with serving(slowed(tiny_pool(), 0.01), max_batch=1, max_queue=1) as running:
        yield running


def test_full_queue_is_429_and_leaving_clients_are_cancelled(narrow: Served):
    stats = narrow.engine.stats
    cancelled, generated = stats.cancelled, stats.generated_tokens
    with httpx.Client(base_url=narrow.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json=long_request()) as running:
            lines = running.iter_lines()  # kept: a dropped line iterator closes the connection
            first_content(lines)
            with http.stream("POST", "/v1/chat/completions", json=long_request("queued")) as queued:
                assert queued.status_code == 200
                wait_for(lambda: stats.queued == 1)
                with pytest.raises(openai.RateLimitError, match="the server is full: 1 requests running"):
                    narrow.client().chat.completions.create(**long_client_request())
                assert stats.running == 1
        # both clients went away: the running request leaves the batch, the queued one never starts
        wait_for(lambda: stats.running == 0 and stats.queued == 0 and stats.cancelled == cancelled + 2)
    assert stats.generated_tokens - generated < 400  # the running one stopped early
    after = narrow.client().chat.completions.create(
        model="dllg", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert after.choices[0].message.content == narrow.alone("hi", max_new_tokens=4).text


def test_failed_step_fails_its_batch_and_the_engine_goes_on(narrow: Served, monkeypatch):
    expert = narrow.pool.experts[0]
    original = expert.step

    def fails_once(state, tokens):
        monkeypatch.setattr(expert, "step", original)
        raise RuntimeError("injected fault")

    monkeypatch.setattr(expert, "step", fails_once)
    client = narrow.client()
    messages = [{"role": "user", "content": "hi"}]
    failed = narrow.engine.stats.failed_steps
    with pytest.raises(
        openai.InternalServerError, match="the decode step failed: RuntimeError: injected fault"
    ):
        client.chat.completions.create(model="dllg", messages=messages, max_tokens=8)
    assert narrow.engine.stats.failed_steps == failed + 1
    after = client.chat.completions.create(model="dllg", messages=messages, max_tokens=8)
    assert after.choices[0].message.content == narrow.alone("hi", max_new_tokens=8).text


def test_requests_past_the_timeout_end_with_504():
    with serving(slowed(tiny_pool(), 0.01), max_batch=2, max_queue=2, timeout=0.3) as served:
        client = served.client()
        with pytest.raises(openai.APIStatusError, match=r"timeout of 0\.3 s") as raised:
            client.chat.completions.create(**long_client_request())
        assert raised.value.status_code == 504
        with pytest.raises(openai.APIError, match=r"timeout of 0\.3 s"):
            list(client.chat.completions.create(**long_client_request(stream=True)))
        wait_for(lambda: served.engine.stats.running == 0)
        assert served.engine.stats.timed_out == 2
        short = client.chat.completions.create(
            model="dllg", messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert short.choices[0].finish_reason in {"stop", "length"}
