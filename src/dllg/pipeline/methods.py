"""Evaluation methods, one registry keyed by prefix.

A method turns (pool, examples) into one response per example, plus the per-token expert weights when it
fuses experts. Names are `PREFIX` or `PREFIX:ARGUMENT`: `expert:NAME`, `uniform`, `entropy`, `packllm`,
`majority`, `unite`, `static:0.3,0.7`, `dllg:PATH`, `dllg-static:PATH`. Routers and merges plug in as one
`@register_method("router", ...)` entry each. Every method generates through the one decode loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dllg.decode import Generation, GenerationConfig, generate
from dllg.decode.prompts import encode_prompt, encode_user_text
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.fusion import FusionRule, make_rule
from dllg.fusion.base import parse_weights
from dllg.plugins import load_plugins
from dllg.registry import register_unique
from dllg.sources import resolve_path
from dllg.sources.fingerprint import folder_digest
from dllg.tasks.base import Example

RecordKey = tuple[str, str, str, str]  # (method, task, split, example_id): one record each


@dataclass(frozen=True)
class EvalItem:
    """One example of one task split, as a method sees it."""

    task: str
    split: str
    example: Example


@dataclass
class MethodOutput:
    response: str
    tokens: int
    finish: str
    weights: torch.Tensor | None = None  # (tokens, K) for fused methods; None for one-model methods
    extra: dict = field(default_factory=dict)  # further record fields (e.g. the static weights used)

    @classmethod
    def from_generation(cls, generation: Generation, fused: bool, **extra: object) -> MethodOutput:
        return cls(
            response=generation.text,
            tokens=len(generation.token_ids),
            finish=generation.finish_reason,
            weights=generation.weights if fused else None,
            extra=dict(extra),
        )


class Method(ABC):
    """One evaluated row. `requires` names methods whose records must exist first, on the same examples."""

    requires: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name

    def prepare(self, pool: ExpertPool) -> None:  # noqa: B027 - optional hook
        """Check the method against the pool (and load what it needs) before anything is generated."""

    def weights_digest(self) -> str | None:
        """A digest of the trained files the method adds to the experts (a gate, a router), or None; records
        keep it, so that files retrained under the same path are never mixed with their old answers."""
        return None

    @abstractmethod
    def run(
        self,
        pool: ExpertPool,
        items: list[EvalItem],
        config: GenerationConfig,
        done: Mapping[RecordKey, dict],
    ) -> list[MethodOutput]:
        """One output per item, in order; `done` holds every record written so far."""


def encode_items(pool: ExpertPool, items: list[EvalItem]) -> list[list[int]]:
    return [encode_prompt(pool.tokenizer, item.example.messages) for item in items]


def generate_items(
    pool: ExpertPool, rule: FusionRule, items: list[EvalItem], config: GenerationConfig
) -> list[Generation]:
    """The items' prompts through the one decode loop; a perplexity-weighted rule scores the user's text."""
    scored = (
        [encode_user_text(pool.tokenizer, item.example.messages) for item in items]
        if rule.needs_prompt_nll
        else None
    )
    return generate(pool, rule, encode_items(pool, items), config, scored)


class RuleMethod(Method):
    """A fusion rule applied to a whole batch: single experts, heuristics, static weights, the gate."""

    def __init__(self, name: str, rule: str, fused: bool = True, **options: object) -> None:
        super().__init__(name)
        self.rule_name = rule
        self.options = options
        self.fused = fused
        self._rule: FusionRule | None = None

    def prepare(self, pool: ExpertPool) -> None:
        self._rule = make_rule(self.rule_name, **self.options)
        self._rule.bind(pool.names)  # a bad expert name, weight count or gate fails here, not mid-run

    def weights_digest(self) -> str | None:
        gate = self.options.get("gate")
        return folder_digest(resolve_path(str(gate))) if isinstance(gate, str | Path) else None

    def run(
        self,
        pool: ExpertPool,
        items: list[EvalItem],
        config: GenerationConfig,
        done: Mapping[RecordKey, dict],
    ) -> list[MethodOutput]:
        if self._rule is None:
            self.prepare(pool)
        generations = generate_items(pool, self._rule, items, config)
        return [MethodOutput.from_generation(g, self.fused) for g in generations]


class DllgStatic(Method):
    """The dynamic-vs-static ablation: each example regenerated with rule `static` at the mean weights the
    gate gave that example's response (read from the `dllg:PATH` record, which `requires` ensures)."""

    def __init__(self, name: str, gate: str) -> None:
        super().__init__(name)
        self.dynamic = f"dllg:{gate}"
        self.requires = (self.dynamic,)
        self.gate = gate

    def weights_digest(self) -> str | None:
        return folder_digest(resolve_path(self.gate))

    def mean_weights(self, item: EvalItem, done: Mapping[RecordKey, dict]) -> list[float]:
        record = done.get((self.dynamic, item.task, item.split, item.example.id))
        if record is None or "weight_mean" not in record:
            raise DllgError(
                f"{self.name}: no {self.dynamic} record with weights for {item.task}/{item.example.id}; "
                f"evaluate {self.dynamic} first"
            )
        return [float(w) for w in record["weight_mean"]]

    def run(
        self,
        pool: ExpertPool,
        items: list[EvalItem],
        config: GenerationConfig,
        done: Mapping[RecordKey, dict],
    ) -> list[MethodOutput]:
        # Each response has its own weights; examples that share them share a batch.
        groups: dict[tuple[float, ...], list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(tuple(self.mean_weights(item, done)), []).append(index)
        outputs: list[MethodOutput | None] = [None] * len(items)
        prompts = encode_items(pool, items)
        for weights, indices in groups.items():
            rule = make_rule("static", weights=list(weights))
            generations = generate(pool, rule, [prompts[i] for i in indices], config)
            for i, generation in zip(indices, generations, strict=True):
                outputs[i] = MethodOutput.from_generation(generation, True, static_weights=list(weights))
        return [o for o in outputs if o is not None]


# --- the registry -------------------------------------------------------------------------------------

MethodFactory = Callable[[str, str], Method]  # (full name, argument after "PREFIX:") -> Method


@dataclass(frozen=True)
class MethodSpec:
    prefix: str
    form: str  # how the name is written, for messages: "expert:NAME"
    takes_argument: bool
    factory: MethodFactory


METHODS: dict[str, MethodSpec] = {}


def all_methods() -> dict[str, MethodSpec]:
    """These methods, and the ones plug-ins register (`router:*`, `merge:*` from dllg.baselines)."""
    load_plugins()
    return METHODS


def register_method(prefix: str, form: str | None = None) -> Callable[[MethodFactory], MethodFactory]:
    """Register `factory(name, argument)` under `prefix`; `form` ("router:KIND") says it takes an argument."""
    form = form or prefix

    def decorate(factory: MethodFactory) -> MethodFactory:
        register_unique(METHODS, prefix, MethodSpec(prefix, form, ":" in form, factory), "method")
        return factory

    return decorate


def method_forms() -> str:
    return ", ".join(spec.form for spec in all_methods().values())


def make_method(name: str) -> Method:
    """Parse a method name; nothing heavy is loaded until `prepare`."""
    prefix, colon, argument = name.strip().partition(":")
    spec = all_methods().get(prefix)
    if spec is None:
        raise DllgError(f"unknown method {name!r}: use one of {method_forms()}")
    if spec.takes_argument and not argument:
        raise DllgError(f"method {name!r} needs an argument: write {spec.form}")
    if colon and not spec.takes_argument:
        raise DllgError(f"method {prefix!r} takes no argument: write {spec.form}, not {name!r}")
    return spec.factory(name.strip(), argument)


@register_method("expert", "expert:NAME")
def _expert(name: str, argument: str) -> Method:
    return RuleMethod(name, "single", fused=False, expert=argument)


def _heuristic(rule: str) -> MethodFactory:
    return lambda name, _argument: RuleMethod(name, rule)


for _rule in ("uniform", "entropy", "packllm", "majority", "unite"):
    register_method(_rule)(_heuristic(_rule))


@register_method("static", "static:W1,W2,...")
def _static(name: str, argument: str) -> Method:
    return RuleMethod(name, "static", weights=parse_weights(argument, "static:0.3,0.7"))


@register_method("dllg", "dllg:PATH")
def _dllg(name: str, argument: str) -> Method:
    return RuleMethod(name, "dllg", gate=argument)


@register_method("dllg-static", "dllg-static:PATH")
def _dllg_static(name: str, argument: str) -> Method:
    return DllgStatic(name, argument)
