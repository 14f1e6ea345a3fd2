"""What the server's tests share: a real uvicorn server on a free loopback port over tiny experts built in
memory, the openai client that talks to it, and the decode loop's own answer to compare with."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import openai

from dllg.decode import Generation, GenerationConfig, generate
from dllg.decode.prompts import encode_prompt
from dllg.ensemble import Ensemble
from dllg.experts import ExpertPool
from dllg.fusion import make_rule
from dllg.serve.app import create_app
from dllg.serve.engine import Engine
from dllg.serve.server import background_server

EXPERTS = ["tiny:0", "tiny:1"]
RULE = "entropy"  # weights that change from token to token


@dataclass
class Served:
    url: str
    engine: Engine
    pool: ExpertPool

    def client(self, **options: object) -> "openai.OpenAI":
        # no retries: a test that expects a 429 or 500 must see it, not a retried success
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=60, **options
        )

    def alone(self, prompt: str | list[dict], chat: bool = True, **settings: object) -> Generation:
        """What the decode loop gives this prompt on its own (a fresh rule, the same experts)."""
        ids = encode_prompt(self.pool.tokenizer, prompt, chat)
        return generate(self.pool, make_rule(RULE), [ids], GenerationConfig(**settings))[0]  # type: ignore[arg-type]


def tiny_pool() -> ExpertPool:
    return Ensemble(EXPERTS, device="cpu", dtype="fp32").pool


@contextmanager
def serving(pool: ExpertPool, **limits: float) -> Iterator[Served]:
    """A server over `pool` (fused by RULE) with these engine limits, stopped on leaving."""
    engine = Engine(pool, make_rule(RULE), **limits)  # type: ignore[arg-type]
    with background_server(create_app(engine)) as url:
        yield Served(url, engine, pool)
