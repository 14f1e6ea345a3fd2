"""Fusion rules: one file each, found through one registry (`RULES`, `make_rule`)."""

from dllg.fusion import (  # noqa: F401  (importing registers the rules)
    entropy,
    learned_gate,
    majority,
    packllm,
    single,
    static,
    uniform,
    unite,
)
from dllg.fusion.base import (
    RULES,
    FusionInput,
    FusionOutput,
    FusionRule,
    PromptContext,
    WeightedRule,
    make_rule,
    register_rule,
    rule_options,
)

__all__ = [
    "RULES",
    "FusionInput",
    "FusionOutput",
    "FusionRule",
    "PromptContext",
    "WeightedRule",
    "make_rule",
    "register_rule",
    "rule_options",
]
