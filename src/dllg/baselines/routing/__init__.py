"""Routers that pick one expert per prompt, trained on the label table; heads and encoders in registries."""

from dllg.baselines.routing import embedllm, routerdc  # noqa: F401 (they register themselves)
from dllg.baselines.routing.encoders import ENCODERS, PromptEncoder, make_encoder, register_encoder
from dllg.baselines.routing.router import ROUTERS, Router, RouterHead, load_router, register_router
from dllg.baselines.routing.train import RouterTrainConfig, fit_router, label_matrix, train_router_from_table

__all__ = [
    "ENCODERS",
    "ROUTERS",
    "PromptEncoder",
    "Router",
    "RouterHead",
    "RouterTrainConfig",
    "fit_router",
    "label_matrix",
    "load_router",
    "make_encoder",
    "register_encoder",
    "register_router",
    "train_router_from_table",
]
