"""Routers and merges as evaluation methods: `router:FOLDER` and `merge:METHOD_OR_FOLDER`."""

import hashlib
from collections.abc import Mapping
from pathlib import Path

from dllg.decode import GenerationConfig, generate
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.fusion import make_rule
from dllg.paths import cache_dir
from dllg.pipeline.methods import EvalItem, Method, MethodOutput, RecordKey, encode_items, register_method

# Merges made from the pool on first use, with these options; task arithmetic also needs the base model
# the experts were tuned from (merge:task_arithmetic@BASE), and adds their task vectors at lambda 1.
DEFAULT_MERGE_OPTIONS: dict[str, dict] = {"linear": {}, "slerp": {"t": 0.5}, "task_arithmetic": {}}


class RouterMethod(Method):
    """One expert per prompt, chosen by a trained router. A router's answer is its expert's greedy answer:
    where the records already hold that expert's answer to the example it is reused (no generation, and no
    second answer of the same expert that batching could make differ); the rest generate with rule
    `single`, grouped by expert."""

    def __init__(self, name: str, folder: str) -> None:
        super().__init__(name)
        self.folder = folder
        self._router = None

    def weights_digest(self) -> str | None:
        from dllg.sources import resolve_path
        from dllg.sources.fingerprint import folder_digest

        return folder_digest(resolve_path(self.folder))

    def prepare(self, pool: ExpertPool) -> None:
        from dllg.baselines.routing import load_router

        self._router = load_router(self.folder)
        if list(self._router.experts) != pool.names:
            raise DllgError(
                f"router {self.folder} was trained for experts {self._router.experts}, the pool has "
                f"{pool.names}: give the same experts in the same order"
            )

    def run(
        self,
        pool: ExpertPool,
        items: list[EvalItem],
        config: GenerationConfig,
        done: Mapping[RecordKey, dict],
    ) -> list[MethodOutput]:
        if self._router is None:
            self.prepare(pool)
        choices = self._router.choose([item.example.prompt for item in items])
        outputs: list[MethodOutput | None] = [
            recorded_answer(pool, expert, item, done) for item, expert in zip(items, choices, strict=True)
        ]
        for expert in sorted(set(choices)):
            rows = [i for i, choice in enumerate(choices) if choice == expert and outputs[i] is None]
            if not rows:
                continue
            group = [items[i] for i in rows]
            generations = generate(
                pool, make_rule("single", expert=expert), encode_items(pool, group), config
            )
            for row, generation in zip(rows, generations, strict=True):
                outputs[row] = MethodOutput.from_generation(generation, False, routed_to=pool.names[expert])
        return [o for o in outputs if o is not None]


def recorded_answer(
    pool: ExpertPool, expert: int, item: EvalItem, done: Mapping[RecordKey, dict]
) -> MethodOutput | None:
    """The answer `expert:NAME` (or `expert:INDEX`) already recorded for this example, or None. Every record
    in a file was made with the same experts and generation settings (evaluate refuses others), so it is
    that expert's greedy answer here; the router's record verifies it again, like any answer."""
    name = pool.names[expert]
    for method in (f"expert:{name}", f"expert:{expert}"):
        record = done.get((method, item.task, item.split, item.example.id))
        if record is not None and all(k in record for k in ("response", "tokens", "finish")):
            return MethodOutput(
                response=record["response"],
                tokens=record["tokens"],
                finish=record["finish"],
                extra={"routed_to": name, "answer_from": method},
            )
    return None


class MergeMethod(Method):
    """A merged model alone: a folder written by `dllg merge`, or a merge of the pool made on first use."""

    def __init__(self, name: str, argument: str) -> None:
        super().__init__(name)
        self.argument = argument
        self._pool: ExpertPool | None = None

    def _folder(self, pool: ExpertPool) -> Path:
        if Path(self.argument).is_dir():
            return Path(self.argument)
        method, _, base = self.argument.partition("@")
        if method not in DEFAULT_MERGE_OPTIONS:
            raise DllgError(
                f"method {self.name!r}: give a merged folder (`dllg merge ... --out DIR`), one of "
                f"{', '.join(DEFAULT_MERGE_OPTIONS)}, or task_arithmetic@BASE"
            )
        from dllg.baselines.merging import get_merge, merge_experts
        from dllg.sources.fingerprint import weights_fingerprint

        if get_merge(method).needs_base != bool(base):
            raise DllgError(
                f"method {self.name!r}: {method} needs the experts' base, write merge:{method}@BASE"
                if not base
                else f"method {self.name!r}: {method} takes no base, write merge:{method}"
            )
        sources = [e.source for e in pool.experts]
        fingerprints = "\n".join(weights_fingerprint(s) for s in [*sources, *([base] if base else [])])
        digest = hashlib.sha256(fingerprints.encode()).hexdigest()[:12]  # stable across processes
        out = cache_dir() / "merges" / f"{method}-{digest}"
        if not (out / "config.json").is_file():
            merge_experts(method, sources, out, base=base or None, **DEFAULT_MERGE_OPTIONS[method])
        return out

    def prepare(self, pool: ExpertPool) -> None:
        from dllg.experts.loading import load_expert

        first = pool.experts[0]
        merged = load_expert(str(self._folder(pool)), device=first.device, dtype=first.dtype)
        self._pool = ExpertPool([merged])

    def run(
        self,
        pool: ExpertPool,
        items: list[EvalItem],
        config: GenerationConfig,
        done: Mapping[RecordKey, dict],
    ) -> list[MethodOutput]:
        if self._pool is None:
            self.prepare(pool)
        assert self._pool is not None
        generations = generate(self._pool, make_rule("single"), encode_items(self._pool, items), config)
        return [MethodOutput.from_generation(g, False) for g in generations]


@register_method("router", "router:FOLDER")
def _router(name: str, argument: str) -> Method:
    return RouterMethod(name, argument)


@register_method("merge", "merge:linear|slerp|task_arithmetic@BASE|FOLDER")
def _merge(name: str, argument: str) -> Method:
    return MergeMethod(name, argument)
