"""A trained router: prompt encoder + scoring head, saved as safetensors + JSON; one expert per prompt.

Scoring heads (one file each) subclass `RouterHead` and register with `@register_router`.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dllg.baselines.routing.encoders import PromptEncoder, encoder_from_spec
from dllg.errors import DllgError
from dllg.registry import register_unique
from dllg.sources import resolve_path

WEIGHTS = "router.safetensors"
CONFIG = "router.json"


class RouterHead(torch.nn.Module):
    """Maps frozen prompt embeddings (N, d) to one score per expert (N, K); higher = better expert."""

    kind = ""

    def __init__(self, input_dim: int, num_experts: int, **options: Any) -> None:
        super().__init__()
        self.options = {"input_dim": input_dim, "num_experts": num_experts, **options}

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """labels (N, K) in {0, 1}; mask (N, K) marks the (prompt, expert) pairs the table has."""
        raise NotImplementedError


ROUTERS: dict[str, type[RouterHead]] = {}


def register_router(kind: str) -> Callable[[type[RouterHead]], type[RouterHead]]:
    def wrap(cls: type[RouterHead]) -> type[RouterHead]:
        cls.kind = kind
        return register_unique(ROUTERS, kind, cls, "router")

    return wrap


def make_head(kind: str, **options: Any) -> RouterHead:
    if kind not in ROUTERS:
        raise DllgError(f"unknown router kind {kind!r}: use one of {', '.join(sorted(ROUTERS))}")
    return ROUTERS[kind](**options)


class Router:
    def __init__(self, head: RouterHead, encoder: PromptEncoder, experts: list[str]) -> None:
        self.head = head.eval()
        self.encoder = encoder
        self.experts = experts  # names as in the label table, index = the expert's place in the pool

    @torch.no_grad()
    def scores(self, prompts: list[str]) -> torch.Tensor:
        return self.head.scores(self.encoder.encode(prompts))

    def choose(self, prompts: list[str]) -> list[int]:
        """The index of the expert to use for each prompt."""
        if not prompts:
            return []
        return self.scores(prompts).argmax(dim=1).tolist()

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
        save_file(state, str(out / WEIGHTS))
        config = {
            "kind": self.head.kind,
            "head": self.head.options,
            "encoder": self.encoder.spec(),
            "experts": self.experts,
        }
        (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        return out


def load_router(folder: str | Path, encoder: PromptEncoder | None = None) -> Router:
    """Rebuild a saved router; pass `encoder` to reuse one already loaded (e.g. an expert of the pool)."""
    folder = resolve_path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise DllgError(f"{folder} is not a router: expected {CONFIG} and {WEIGHTS} from `dllg route train`")
    config = json.loads((folder / CONFIG).read_text())
    head = make_head(config["kind"], **config["head"])
    head.load_state_dict(load_file(str(folder / WEIGHTS)))
    if encoder is None:
        encoder = encoder_from_spec(config["encoder"])
    if encoder.dim != head.options["input_dim"]:
        raise DllgError(
            f"encoder gives {encoder.dim}-d embeddings but the router at {folder} was trained on "
            f"{head.options['input_dim']}-d ones: use the encoder it was trained with ({config['encoder']})"
        )
    return Router(head, encoder, config["experts"])
