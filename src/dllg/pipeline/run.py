"""A run config, end to end: load the experts and tasks it names, collect labels, build features, train."""

import sys
from pathlib import Path

import torch

from dllg.config import ExpertSpec, LlamaCppOptions, RunConfig
from dllg.decode import GenerationConfig
from dllg.decode.prompts import encode_prompt
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.experts.loading import load_expert
from dllg.gate import Gate, GateConfig, build_gate
from dllg.pipeline.collect import TaskExample, collect_labels, read_labels
from dllg.pipeline.features import FeatureExample, extract_features
from dllg.pipeline.fresh import set_aside
from dllg.pipeline.holdout import is_validation
from dllg.pipeline.sharding import Shard
from dllg.pipeline.train import GateExample, TrainConfig, train_gate
from dllg.tasks import get_task


def load_pool(config: RunConfig, experts: list[ExpertSpec] | None = None) -> ExpertPool:
    return ExpertPool(
        [
            load_expert(
                e.name,
                e.device,
                e.dtype,
                e.backend,
                e.placement,
                e.resources,
                config.ray.address,
                e.llamacpp.model_dump(exclude_none=True),
            )
            for e in experts or config.experts
        ]
    )


def feature_experts(config: RunConfig) -> list[ExpertSpec]:
    """The experts as teacher forcing reads them: on `features.backend` when it is set (llama.cpp's
    context options dropped for hf), else as the config names them."""
    backend = config.features.backend
    if backend is None:
        return list(config.experts)
    switched = {"backend": backend, "llamacpp": LlamaCppOptions()}
    return [e if e.backend == backend else e.model_copy(update=switched) for e in config.experts]


def load_training_examples(config: RunConfig) -> list[TaskExample]:
    """Training splits only: the task refuses an evaluation split here."""
    if not config.tasks:
        raise DllgError("the config names no tasks: add a tasks: list (e.g. - name: gsm_symbolic)")
    items = []
    for spec in config.tasks:
        task = get_task(spec.name)
        data = Path(spec.data) if spec.data else None
        for example in task.load(spec.split, training=True, limit=spec.limit, data_path=data):
            items.append(TaskExample(spec.name, spec.split, example))
    return items


def run_collect(
    config: RunConfig, pool: ExpertPool | None = None, fresh: bool = False, shard: Shard | None = None
) -> dict[str, int]:
    """Collect the label table; `fresh` sets an existing table aside first (renamed, not deleted). A `shard`
    collects only its examples, into its own file beside the table (`dllg merge-shards` joins them)."""
    c = config.collect
    out = shard.path(c.out) if shard else c.out
    if fresh:
        announce_set_aside(set_aside(out))
    pool = pool or load_pool(config)
    examples = load_training_examples(config)
    if shard:
        examples = [i for i in examples if shard.holds(i.task, i.split, i.example.id)]
    generation = GenerationConfig(max_new_tokens=c.max_new_tokens, temperature=c.temperature, seed=c.seed)
    return collect_labels(pool, examples, out, generation, c.batch_size, c.workers)


def label_vectors(labels: list[dict], expert_names: list[str]) -> dict[str, torch.Tensor]:
    """Example id -> (K,) labels, for examples every expert has a label for."""
    by_example: dict[str, dict[str, int]] = {}
    for record in labels:
        by_example.setdefault(record["example_id"], {})[record["expert"]] = int(record["label"])
    return {
        eid: torch.tensor([float(got[name]) for name in expert_names])
        for eid, got in by_example.items()
        if all(name in got for name in expert_names)
    }


def reference_responses(config: RunConfig, items: list[TaskExample], labels: list[dict]) -> dict[str, str]:
    """What teacher forcing reads: the task's solution, else a correct rollout (features.reference)."""
    rollouts: dict[str, str] = {}
    for record in labels:
        if record["label"] and record["example_id"] not in rollouts:
            rollouts[record["example_id"]] = record["response"]
    refs = {}
    for item in items:
        solution = item.example.metadata.get("solution") if config.features.reference == "task" else None
        text = solution or rollouts.get(item.example.id)
        if text:
            refs[item.example.id] = text
    return refs


def run_train(
    config: RunConfig, pool: ExpertPool | None = None, fresh: bool = False, fresh_features: bool = False
) -> dict[str, float]:
    """Features (cached) then the gate; `fresh` / `fresh_features` set the run folder / the feature cache
    aside first (renamed, not deleted)."""
    if fresh_features:
        announce_set_aside(set_aside(config.features.dir))
    if fresh:
        announce_set_aside(set_aside(config.train.out_dir))
    pool = pool or load_pool(config, feature_experts(config))
    labels = read_labels(config.collect.out)
    if not labels:
        raise DllgError(f"no labels in {config.collect.out}: run `dllg collect --config ...` first")
    vectors = label_vectors(labels, pool.names)
    items = [i for i in load_training_examples(config) if i.example.id in vectors]
    refs = reference_responses(config, items, labels)
    eos = pool.tokenizer.eos_token_id
    feature_items = []
    for item in items:
        if item.example.id not in refs:
            continue
        response = list(pool.tokenizer(refs[item.example.id], add_special_tokens=False)["input_ids"])
        response = response[: config.features.max_response_tokens - 1] + ([eos] if eos is not None else [])
        prompt = encode_prompt(pool.tokenizer, item.example.messages)
        feature_items.append(FeatureExample(item.example.id, prompt, response))
    if not feature_items:
        raise DllgError("no example has both labels from every expert and a reference response to train on")
    cache = extract_features(pool, feature_items, config.features.dir, config.features.batch_size)
    states = cache.load_all([f.example_id for f in feature_items])
    examples = [GateExample(f.example_id, states[f.example_id], vectors[f.example_id]) for f in feature_items]
    train = [e for e in examples if not is_validation(e.example_id, config.train.val_fraction)]
    val = [e for e in examples if is_validation(e.example_id, config.train.val_fraction)]
    gate_config = config.gate.model_copy(
        update={
            "expert_names": pool.names,
            "hidden_sizes": [e.hidden_size for e in pool.experts],
            "feature_backends": [e.backend for e in pool.experts],
            "aux_model": config.gate.aux_model or smallest_expert_source(pool),
        }
    )
    train_config = TrainConfig(**config.train.model_dump(exclude={"out_dir", "val_fraction"}))
    gate = build_seeded_gate(gate_config, train_config.seed)
    return train_gate(gate, train, val, train_config, config.train.out_dir)


def announce_set_aside(moved: Path | None) -> None:
    if moved is not None:
        print(f"set aside the earlier output as {moved}", file=sys.stderr)


def build_seeded_gate(config: GateConfig, seed: int) -> Gate:
    """The gate's initial weights (head, projection, LoRA) drawn from the training seed: one config, one
    gate. The global generator is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_gate(config)


def smallest_expert_source(pool: ExpertPool) -> str:
    """The paper's aux LM is the smallest model at hand; by default, the smallest expert."""
    sizes = [e.parameter_count() for e in pool.experts]
    return pool.experts[sizes.index(min(sizes))].source
