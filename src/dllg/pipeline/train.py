"""Train the gate by teacher forcing: MSE between every token's weights and the response-level labels.

The paper's eq. 5 (`loss: per_response`, the default): for each response, the mean over its T tokens and
the K experts of (w_t,k - c_k)^2, c_k in {0, 1}; then the mean over the responses of the batch, so a long
answer counts as much as a short one. `loss: pooled` averages over every token of the batch instead (long
answers weigh more), as dllg did before.
Batches are drawn from a generator seeded by (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would. Checkpoints hold the gate's trained weights, the optimizer and the step.
`run.json` records what a run trains on (gate, settings, a digest of the labels and features): a run
folder is resumed only by the same run, never silently reused for other data.
"""

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_file

from dllg.config import LossForm, Precision, TrainConfig
from dllg.errors import DllgError
from dllg.gate import Gate, save_gate
from dllg.gate.checkpoint import WEIGHTS, load_trainable

TRAINER_STATE = "trainer.pt"  # written last: a checkpoint folder without it is incomplete
LOG = "log.jsonl"
RUN = "run.json"
# Settings that may change between a run and its resumption without changing what was trained so far
# (micro_batch changes only a step's padding, not what it computes).
RESUMABLE_SETTINGS = ("steps", "checkpoint_every", "eval_every", "log_every", "micro_batch")


@dataclass
class GateExample:
    example_id: str
    states: list[torch.Tensor]  # per expert (T, d_k)
    labels: torch.Tensor  # (K,) 0/1: was expert k's own answer to this prompt correct


def collate(examples: list[GateExample]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Right-pad to (B, T, d_k) per expert; mask (B, T); labels (B, K)."""
    length = max(e.states[0].shape[0] for e in examples)
    num_experts = len(examples[0].states)
    states = []
    for k in range(num_experts):
        padded = torch.zeros(len(examples), length, examples[0].states[k].shape[-1])
        for row, example in enumerate(examples):
            padded[row, : example.states[k].shape[0]] = example.states[k]
        states.append(padded)
    mask = torch.zeros(len(examples), length)
    for row, example in enumerate(examples):
        mask[row, : example.states[0].shape[0]] = 1
    labels = torch.stack([e.labels.float() for e in examples])
    return states, mask, labels


def squared_errors(weights: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T, K) (w_t,k - c_k)^2 at real tokens, 0 at padding."""
    return (weights - labels.unsqueeze(1)) ** 2 * mask.unsqueeze(-1)


def per_response_mse(weights: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,): each response's mean over its own tokens and the experts (eq. 5's inner average)."""
    return squared_errors(weights, mask, labels).sum((1, 2)) / (mask.sum(1) * weights.shape[-1])


def loss_sum(weights: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, form: LossForm) -> torch.Tensor:
    """The loss's numerator: the per-response means summed (eq. 5), or every token's squared errors summed
    (pooled); divided by `loss_count` it is the loss."""
    if form == "pooled":
        return squared_errors(weights, mask, labels).sum()
    return per_response_mse(weights, mask, labels).sum()


def loss_count(mask: torch.Tensor, labels: torch.Tensor, form: LossForm) -> float:
    """What `loss_sum` averages over: the responses (eq. 5), or the real tokens times the experts (pooled)."""
    return float(mask.sum()) * labels.shape[-1] if form == "pooled" else float(labels.shape[0])


def masked_mse(
    weights: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, form: LossForm = "per_response"
) -> torch.Tensor:
    """The training loss: eq. 5 (mean of per-response means), or pooled over every token of the batch."""
    return loss_sum(weights, mask, labels, form) / loss_count(mask, labels, form)


def length_groups(batch: list[GateExample], size: int | None) -> list[list[GateExample]]:
    """The batch sorted by answer length and cut into groups of `size` (None: one group, as drawn), so
    that each group pads to a length close to its own answers'."""
    if size is None or size >= len(batch):
        return [batch]
    ordered = sorted(batch, key=lambda e: e.states[0].shape[0])
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def accumulate_step(gate: Gate, batch: list[GateExample], config: TrainConfig) -> float:
    """The batch's loss, its gradient accumulated over `length_groups`: each group's `loss_sum` over the
    whole batch's `loss_count` is backpropagated on its own."""
    groups = [collate(group) for group in length_groups(batch, config.micro_batch)]
    count = sum(loss_count(mask, labels, config.loss) for _, mask, labels in groups)
    total = 0.0
    for states, mask, labels in groups:
        with forward_precision(gate, config.precision):
            weights = gate(states, mask.long()).float()
        part = loss_sum(weights, mask, labels, config.loss) / count
        part.backward()
        total += part.item()
    return total


def forward_precision(gate: Gate, precision: Precision) -> contextlib.AbstractContextManager:
    """The context the gate's forward runs in: bf16 autocast on the gate's device, or nothing (fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    device = next(gate.parameters()).device.type
    return torch.autocast(device, dtype=torch.bfloat16)


@torch.no_grad()
def evaluate(
    gate: Gate,
    examples: list[GateExample],
    batch_size: int,
    form: LossForm = "per_response",
    precision: Precision = "fp32",
) -> dict[str, float]:
    """Validation MSE in the training loss's form, and how often the expert with the highest mean weight
    was a correct one (over examples where at least one expert was correct)."""
    was_training = gate.training
    gate.eval()
    total, count, hits, answerable = 0.0, 0.0, 0, 0
    for start in range(0, len(examples), batch_size):
        states, mask, labels = collate(examples[start : start + batch_size])
        with forward_precision(gate, precision):
            weights = gate(states, mask.long()).float()
        total += float(loss_sum(weights, mask, labels, form))
        count += loss_count(mask, labels, form)
        mean = (weights * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        best = mean.argmax(-1)
        has_correct = labels.sum(-1) > 0
        answerable += int(has_correct.sum())
        hits += int((labels.gather(1, best.unsqueeze(1)).squeeze(1) > 0)[has_correct].sum())
    gate.train(was_training)
    return {"val_mse": total / max(count, 1), "val_top_correct": hits / max(answerable, 1)}


def last_checkpoint(folder: Path) -> Path | None:
    complete = sorted(p.parent for p in folder.glob(f"checkpoints/step-*/{TRAINER_STATE}"))
    return complete[-1] if complete else None


def _trim_log(path: Path, up_to_step: int) -> None:
    """On resume, forget log lines past the checkpoint so that no step is logged twice."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= up_to_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):
            continue
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def data_digest(examples: list[GateExample]) -> str:
    """16 hex digits over every example's id, labels and states, in order."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(example.example_id.encode() + b"\0")
        digest.update(example.labels.float().numpy().tobytes())
        for states in example.states:
            digest.update(states.float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def run_identity(gate: Gate, train: list[GateExample], val: list[GateExample], config: TrainConfig) -> dict:
    """What a run folder's checkpoints were trained on; a resumption must match it."""
    return {
        "gate": gate.config.model_dump(mode="json"),
        # runs from before `precision` existed were fp32: an fp32 run's identity leaves it out, as theirs did
        "train": config.model_dump(
            mode="json",
            exclude=set(RESUMABLE_SETTINGS) | ({"precision"} if config.precision == "fp32" else set()),
        ),
        "train_data": data_digest(train),
        "val_data": data_digest(val),
    }


def _check_same_run(out_dir: Path, identity: dict) -> None:
    """Refuse a folder holding a run on other data or settings: resuming it would mix two trainings, and
    a finished one would be handed back unchanged as if trained on the new data."""
    path = out_dir / RUN
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DllgError(f"{path} is corrupt ({exc}): train with --fresh or another --out-dir") from exc
        changed = [key for key in identity if stored.get(key) != identity[key]]
        if changed:
            what = {"train_data": "training labels/features", "val_data": "validation labels/features"}
            named = ", ".join(what.get(k, f"{k} settings") for k in changed)
            raise DllgError(
                f"{out_dir} holds a gate run trained with other {named}: train with --fresh (the old run "
                "is set aside) or choose another --out-dir"
            )
    elif (out_dir / LOG).exists() or (out_dir / "checkpoints").exists() or (out_dir / "gate").exists():
        raise DllgError(
            f"{out_dir} holds a gate run with no record of what it was trained on ({RUN} missing): "
            "train with --fresh (the old run is set aside) or choose another --out-dir"
        )


def train_gate(
    gate: Gate,
    train: list[GateExample],
    val: list[GateExample],
    config: TrainConfig,
    out_dir: str | Path,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """Train, checkpointing into out_dir/checkpoints/step-N; the final gate goes to out_dir/gate.

    A folder holding this same run (gate, settings, data) resumes from its last checkpoint; one holding
    any other run is refused (`set_aside` it first to start over)."""
    if not train:
        raise DllgError("no training examples: collect labels and extract features first")
    out_dir = Path(out_dir)
    identity = run_identity(gate, train, val, config)
    _check_same_run(out_dir, identity)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN).write_text(json.dumps(identity, indent=2))
    params = [p for p in gate.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    start_step = 0
    checkpoint = last_checkpoint(out_dir)
    if checkpoint is not None:
        load_trainable(gate, load_file(str(checkpoint / WEIGHTS)), checkpoint)
        trainer = torch.load(checkpoint / TRAINER_STATE, weights_only=True)
        optimizer.load_state_dict(trainer["optimizer"])
        start_step = int(trainer["step"])
        if start_step > config.steps:
            raise DllgError(
                f"{out_dir} was trained to step {start_step}, past train.steps={config.steps}: raise "
                "train.steps, or train with --fresh"
            )
    _trim_log(out_dir / LOG, start_step)
    gate.train()
    metrics: dict[str, float] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with (
        Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as progress,
        open(out_dir / LOG, "a") as log,
    ):
        task = progress.add_task("training the gate", total=config.steps, completed=start_step)
        for step in range(start_step + 1, config.steps + 1):
            rng = random.Random(config.seed * 1_000_003 + step)
            batch = [train[rng.randrange(len(train))] for _ in range(config.batch_size)]
            optimizer.zero_grad()
            loss = accumulate_step(gate, batch, config)
            if not math.isfinite(loss):
                raise DllgError(
                    f"the training loss became {loss} at step {step}: lower train.lr; "
                    f"the last good checkpoint is {last_checkpoint(out_dir)}"
                )
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            record: dict[str, float] = {"step": step, "loss": round(loss, 6)}
            if val and (step % config.eval_every == 0 or step == config.steps):
                metrics = evaluate(gate, val, config.batch_size, config.loss, config.precision)
                record.update({k: round(v, 6) for k, v in metrics.items()})
            if step % config.log_every == 0 or len(record) > 2 or step == config.steps:
                log.write(json.dumps(record) + "\n")
                log.flush()
            progress.update(task, completed=step, description=f"training the gate (loss {loss:.4f})")
            if step % config.checkpoint_every == 0 or step == config.steps:
                _write_checkpoint(gate, optimizer, step, out_dir)
            if on_step is not None:
                on_step(step, loss)
    final, partial = out_dir / "gate", out_dir / "gate.partial"
    shutil.rmtree(partial, ignore_errors=True)
    save_gate(gate, partial)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return metrics


def _write_checkpoint(gate: Gate, optimizer: torch.optim.Optimizer, step: int, out_dir: Path) -> None:
    folder = out_dir / "checkpoints" / f"step-{step:06d}"
    save_gate(gate, folder)
    tmp = folder / (TRAINER_STATE + ".tmp")
    torch.save({"optimizer": optimizer.state_dict(), "step": step}, tmp)
    os.replace(tmp, folder / TRAINER_STATE)
