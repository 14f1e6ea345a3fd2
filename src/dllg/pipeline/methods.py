"""Evaluation methods, one registry keyed by prefix.

A method turns (pool, examples) into one response per example, plus the per-token expert weights when it
fuses experts. Names are `PREFIX` or `PREFIX:ARGUMENT`: `expert:NAME`, `uniform`, `entropy`, `packllm`,
`majority`, `unite`, `static:0.3,0.7`, `dllg:PATH`, `dllg-sharp:POWER:PATH` (the gate's weights sharpened),
`dllg-static:PATH`. Routers and merges plug in as one
`@register_method("router", ...)` entry each. Every method generates through the one decode loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from dllg.decode import Generation, GenerationConfig, generate_stream
from dllg.decode.drafting import ReferenceDrafter
from dllg.decode.prompts import encode_prompt, encode_user_text
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.fusion import FusionRule, make_rule
from dllg.fusion.base import parse_weights
from dllg.fusion.learned_gate import check_power
from dllg.fusion.static import RowStatic
from dllg.plugins import load_plugins
from dllg.registry import register_unique
from dllg.shipped import PRESET_FILE
from dllg.sources import resolve_path
from dllg.sources.fingerprint import folder_digest
from dllg.tasks.base import Example

T = TypeVar("T")
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
            extra=_drafting_counts(generation) | extra,
        )


@dataclass
class TogetherPlan:
    """How a method decodes beside other methods (`dllg eval --together`): its fusion rule, with a row's
    state for every item of the group, and its output made from a generation (item index, generation)."""

    rule: FusionRule
    output: Callable[[int, Generation], MethodOutput]


class Method(ABC):
    """One evaluated row. `requires` names methods whose records must exist first, on the same examples;
    `decodes_together`: it may share rows with other such methods (a fusion rule over every expert)."""

    requires: tuple[str, ...] = ()
    decodes_together = False

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

    def together(
        self, pool: ExpertPool, items: list[EvalItem], done: Mapping[RecordKey, dict], wanted: list[bool]
    ) -> TogetherPlan:
        """Its plan for decoding `items` beside other methods; it answers those flagged in `wanted` (the
        rule still keeps a row's state for the others)."""
        raise DllgError(f"method {self.name!r} decodes alone, not together with others")

    def stream(
        self,
        pool: ExpertPool,
        items: list[EvalItem],
        config: GenerationConfig,
        done: Mapping[RecordKey, dict],
        max_rows: int,
    ) -> Iterator[tuple[int, MethodOutput]]:
        """(item index, output) for every item, as each is ready, at most `max_rows` in work at once.
        Here: `run` a batch of `max_rows` at a time; methods that generate keep their batch full instead."""
        for start in range(0, len(items), max_rows):
            outputs = self.run(pool, items[start : start + max_rows], config, done)
            yield from enumerate(outputs, start)


class StreamingMethod(Method):
    """A method that generates: it keeps its batch full as answers finish (`stream`); `run` is that stream,
    every item at once, in order."""

    def run(
        self,
        pool: ExpertPool,
        items: list[EvalItem],
        config: GenerationConfig,
        done: Mapping[RecordKey, dict],
    ) -> list[MethodOutput]:
        return in_order(self.stream(pool, items, config, done, len(items)), len(items))

    @abstractmethod
    def stream(
        self,
        pool: ExpertPool,
        items: list[EvalItem],
        config: GenerationConfig,
        done: Mapping[RecordKey, dict],
        max_rows: int,
    ) -> Iterator[tuple[int, MethodOutput]]: ...


def _drafting_counts(generation: Generation) -> dict:
    """Speculative decoding's drafted tokens fed and kept: what a drafter saved, per answer."""
    return {"drafted": generation.drafted, "accepted": generation.accepted} if generation.drafted else {}


def gate_digest(gate: str | Path) -> str:
    """What a record made with gate folder `gate` was made with. A shipped gate's preset.json is left out:
    only `--preset` reads it (description, experts, default options), never `dllg:FOLDER`, so editing it
    must not refuse the records that the gate made."""
    return folder_digest(resolve_path(str(gate)), skip={PRESET_FILE})


def encode_items(pool: ExpertPool, items: list[EvalItem]) -> list[list[int]]:
    return [encode_prompt(pool.tokenizer, item.example.messages) for item in items]


def stream_items(
    pool: ExpertPool,
    rule: FusionRule,
    items: list[EvalItem],
    config: GenerationConfig,
    max_rows: int | None,
    done: Mapping[RecordKey, dict] | None = None,
) -> Iterator[tuple[int, Generation]]:
    """The items' prompts through the one decode loop, `max_rows` rows at once (continuous batching); a
    perplexity-weighted rule scores the user's text. With the `reference` drafter, every record in `done`
    for the same example (another method's answer) is a reference to draft from."""
    scored = (
        [encode_user_text(pool.tokenizer, item.example.messages) for item in items]
        if rule.needs_prompt_nll
        else None
    )
    prompts = encode_items(pool, items)
    drafter = reference_drafter(pool, items, prompts, done or {}) if config.speculate == "reference" else None
    return generate_stream(pool, rule, prompts, config, scored, drafter=drafter, max_rows=max_rows)


def reference_drafter(
    pool: ExpertPool, items: list[EvalItem], prompts: list[list[int]], done: Mapping[RecordKey, dict]
) -> ReferenceDrafter:
    """A `reference` drafter holding, for each item's prompt, the recorded answers to its example."""
    answers: dict[tuple[str, str, str], list[str]] = {}
    for (_, task, split, example_id), record in done.items():
        if record.get("response"):
            answers.setdefault((task, split, example_id), []).append(record["response"])
    drafter = ReferenceDrafter()
    for item, prompt in zip(items, prompts, strict=True):
        texts = dict.fromkeys(answers.get((item.task, item.split, item.example.id), []))  # routers copy
        drafter.add(prompt, (pool.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts))
    return drafter


def in_order(stream: Iterator[tuple[int, T]], count: int) -> list[T]:
    """A stream's (index, result) pairs as the list of its `count` results, in index order."""
    finished = dict(stream)
    return [finished[i] for i in range(count)]


def generate_items(
    pool: ExpertPool, rule: FusionRule, items: list[EvalItem], config: GenerationConfig
) -> list[Generation]:
    """The items' generations in order, all rows in one batch."""
    return in_order(stream_items(pool, rule, items, config, None), len(items))


class RuleMethod(StreamingMethod):
    """A fusion rule applied to a whole batch: single experts, heuristics, static weights, the gate."""

    def __init__(self, name: str, rule: str, fused: bool = True, **options: object) -> None:
        super().__init__(name)
        self.rule_name = rule
        self.options = options
        self.fused = fused
        self.decodes_together = fused  # `single` runs one expert: it cannot share rows that run both
        self._rule: FusionRule | None = None

    def prepare(self, pool: ExpertPool) -> None:
        self._rule = make_rule(self.rule_name, **self.options)
        self._rule.bind(pool.names)  # a bad expert name, weight count or gate fails here, not mid-run

    def weights_digest(self) -> str | None:
        gate = self.options.get("gate")
        return gate_digest(gate) if isinstance(gate, str | Path) else None

    def stream(
        self,
        pool: ExpertPool,
        items: list[EvalItem],
        config: GenerationConfig,
        done: Mapping[RecordKey, dict],
        max_rows: int,
    ) -> Iterator[tuple[int, MethodOutput]]:
        if self._rule is None:
            self.prepare(pool)
        assert self._rule is not None
        for index, generation in stream_items(pool, self._rule, items, config, max_rows, done):
            yield index, MethodOutput.from_generation(generation, self.fused)

    def together(
        self, pool: ExpertPool, items: list[EvalItem], done: Mapping[RecordKey, dict], wanted: list[bool]
    ) -> TogetherPlan:
        if not self.decodes_together:
            return super().together(pool, items, done, wanted)
        rule = make_rule(self.rule_name, **self.options)  # its own state: not the one `stream` uses
        return TogetherPlan(rule, lambda _index, generation: MethodOutput.from_generation(generation, True))


class DllgStatic(StreamingMethod):
    """The dynamic-vs-static ablation: each example regenerated with rule `static` at the mean weights the
    gate gave that example's response (read from the `dllg:PATH` record, which `requires` ensures)."""

    decodes_together = True

    def __init__(self, name: str, gate: str) -> None:
        super().__init__(name)
        self.dynamic = f"dllg:{gate}"
        self.requires = (self.dynamic,)
        self.gate = gate

    def weights_digest(self) -> str | None:
        return gate_digest(self.gate)

    def mean_weights(self, item: EvalItem, done: Mapping[RecordKey, dict]) -> list[float]:
        record = done.get((self.dynamic, item.task, item.split, item.example.id))
        if record is None or "weight_mean" not in record:
            raise DllgError(
                f"{self.name}: no {self.dynamic} record with weights for {item.task}/{item.example.id}; "
                f"evaluate {self.dynamic} first"
            )
        return [float(w) for w in record["weight_mean"]]

    def stream(
        self,
        pool: ExpertPool,
        items: list[EvalItem],
        config: GenerationConfig,
        done: Mapping[RecordKey, dict],
        max_rows: int,
    ) -> Iterator[tuple[int, MethodOutput]]:
        # Each response has its own weights, each row of one batch its own (rule static_rows).
        weights = [self.mean_weights(item, done) for item in items]
        rule = RowStatic(weights)
        for index, generation in stream_items(pool, rule, items, config, max_rows, done):
            yield index, MethodOutput.from_generation(generation, True, static_weights=weights[index])

    def together(
        self, pool: ExpertPool, items: list[EvalItem], done: Mapping[RecordKey, dict], wanted: list[bool]
    ) -> TogetherPlan:
        # the rows it does not answer still need weights: even ones, never read
        even = [1.0 / len(pool)] * len(pool)
        weights = [
            self.mean_weights(item, done) if w else even for item, w in zip(items, wanted, strict=True)
        ]
        return TogetherPlan(
            RowStatic(weights),
            lambda index, generation: MethodOutput.from_generation(
                generation, True, static_weights=weights[index]
            ),
        )


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


@register_method("dllg-sharp", "dllg-sharp:POWER:PATH")
def _dllg_sharp(name: str, argument: str) -> Method:
    power, _, gate = argument.partition(":")
    try:
        value = float(power)
    except ValueError:
        value = None
    if value is None or not gate:
        raise DllgError(f"method {name!r}: write dllg-sharp:POWER:PATH, e.g. dllg-sharp:4:runs/gate")
    return RuleMethod(name, "dllg", gate=gate, power=check_power(value))


@register_method("dllg-static", "dllg-static:PATH")
def _dllg_static(name: str, argument: str) -> Method:
    return DllgStatic(name, argument)
