"""Train a router on the label table `dllg collect` writes: one 0/1 label per (prompt, expert).

The prompt encoder is frozen, so prompts are embedded once and the head trains full-batch in seconds.
"""

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dllg.baselines.routing.encoders import PromptEncoder
from dllg.baselines.routing.router import Router, make_head
from dllg.errors import DllgError
from dllg.jsonl import read_records


@dataclass
class RouterTrainConfig:
    kind: str = "embedllm"
    dim: int = 32
    steps: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-4
    temperature: float = 0.2  # routerdc only
    seed: int = 0


@dataclass
class LabelMatrix:
    example_ids: list[str]
    prompts: list[str]
    labels: torch.Tensor  # (N, K) 0/1
    mask: torch.Tensor  # (N, K) 1 where the table has the pair
    experts: list[str]


def record_prompts(records: list[dict]) -> dict[str, str]:
    """example_id -> prompt text: a record's own `prompt` field, else its task's example (by split)."""
    prompts: dict[str, str] = {}
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        text = r.get("prompt", r.get("prompts"))
        if isinstance(text, str):
            prompts[r["example_id"]] = text
    for r in records:
        if r["example_id"] not in prompts:
            if not r.get("task"):
                raise DllgError(
                    f"label record {r['example_id']!r} has neither a prompt nor a task to load it from"
                )
            wanted[(r["task"], r.get("split") or "train")].add(r["example_id"])
    for (task_name, split), ids in wanted.items():
        from dllg.tasks import get_task

        found = {e.id: e.prompt for e in get_task(task_name).load(split) if e.id in ids}
        missing = sorted(ids - found.keys())
        if missing:
            raise DllgError(
                f"{len(missing)} example ids of the labels are not in task {task_name!r} split {split!r} "
                f"(e.g. {missing[0]!r}): was the table collected from other data (--data)?"
            )
        prompts.update(found)
    return prompts


def _expert_column(source: str, table_names: list[str]) -> str:
    """The table's name for an expert given as on the command line (catalog name, folder, tiny:SEED)."""
    if source in table_names:
        return source
    try:
        from dllg.sources import resolve_source

        name = resolve_source(source).name
    except DllgError:
        name = source
    if name not in table_names:
        raise DllgError(f"expert {source!r} has no labels in the table: it has {', '.join(table_names)}")
    return name


def label_matrix(records: list[dict], experts: list[str]) -> LabelMatrix:
    if not records:
        raise DllgError("the label table is empty: run `dllg collect` first")
    table_names = list(dict.fromkeys(r["expert"] for r in records))
    columns = [_expert_column(e, table_names) for e in experts]
    index = {name: k for k, name in enumerate(columns)}
    ids = list(dict.fromkeys(r["example_id"] for r in records))
    rows = {i: n for n, i in enumerate(ids)}
    labels = torch.zeros(len(ids), len(columns))
    mask = torch.zeros(len(ids), len(columns))
    for r in records:
        if r["expert"] in index:
            labels[rows[r["example_id"]], index[r["expert"]]] = float(r["label"])
            mask[rows[r["example_id"]], index[r["expert"]]] = 1.0
    prompts = record_prompts(records)
    return LabelMatrix(ids, [prompts[i] for i in ids], labels, mask, columns)


def fit_router(
    prompts: list[str],
    labels: torch.Tensor,
    mask: torch.Tensor,
    experts: list[str],
    encoder: PromptEncoder,
    config: RouterTrainConfig,
) -> Router:
    torch.manual_seed(config.seed)
    embeddings = encoder.encode(prompts).clone()  # a normal tensor, even from an inference-mode encoder
    options = {"dim": config.dim} | ({"temperature": config.temperature} if config.kind == "routerdc" else {})
    head = make_head(config.kind, input_dim=encoder.dim, num_experts=len(experts), **options)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    head.train()
    for _ in range(config.steps):
        optimiser.zero_grad()
        loss = head.loss(embeddings, labels, mask)
        loss.backward()
        optimiser.step()
    return Router(head, encoder, experts)


def routing_metrics(router: Router, matrix: LabelMatrix) -> dict[str, float]:
    """Share of prompts answered right when routed, by the best single expert, and by an oracle."""
    chosen = torch.tensor(router.choose(matrix.prompts))
    correct = matrix.labels * matrix.mask
    return {
        "routed": correct[torch.arange(len(chosen)), chosen].mean().item(),
        "best_single": correct.mean(0).max().item(),
        "oracle": correct.max(1).values.mean().item(),
    }


def train_router_from_table(
    labels_path: str | Path,
    experts: list[str],
    encoder: PromptEncoder,
    config: RouterTrainConfig,
    out_dir: str | Path,
) -> tuple[Router, dict[str, float]]:
    matrix = label_matrix(list(read_records(labels_path)), experts)
    router = fit_router(matrix.prompts, matrix.labels, matrix.mask, matrix.experts, encoder, config)
    router.save(out_dir)
    metrics = routing_metrics(router, matrix)
    (Path(out_dir) / "train.json").write_text(
        json.dumps({"config": asdict(config), "train_metrics": metrics}, indent=2) + "\n"
    )
    return router, metrics
