"""Gate checkpoints: `gate.safetensors` (trained parameters) + `gate.json` (config), written atomically."""

import json
import os
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from dllg.errors import DllgError
from dllg.gate.base import GATES, Gate
from dllg.gate.config import GateConfig
from dllg.sources import resolve_path

WEIGHTS = "gate.safetensors"
CONFIG = "gate.json"


def build_gate(config: GateConfig, aux_model: PreTrainedModel | None = None) -> Gate:
    cls = GATES[config.variant]
    return cls(config, aux_model) if config.variant.endswith("aux_lm") else cls(config)


def save_gate(gate: Gate, folder: str | Path, extra: dict | None = None) -> Path:
    """Write weights then config into `folder`, each via a temporary file and a rename."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in gate.trainable_state_dict().items()}
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / WEIGHTS)
    meta = {"gate": gate.config.model_dump(), **(extra or {})}
    tmp = folder / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, folder / CONFIG)
    return folder


def read_gate_config(folder: str | Path) -> tuple[GateConfig, dict]:
    path = resolve_path(folder) / CONFIG
    if not path.is_file():
        raise DllgError(
            f"{folder} is not a gate checkpoint: {CONFIG} is missing (train one with `dllg train`)"
        )
    try:
        meta = json.loads(path.read_text())
        return GateConfig(**meta["gate"]), meta
    except (json.JSONDecodeError, KeyError, ValidationError) as exc:
        raise DllgError(f"{path} is corrupt or from another version: {str(exc).splitlines()[0]}") from exc


def load_gate(folder: str | Path, aux_model: PreTrainedModel | None = None) -> Gate:
    folder = resolve_path(folder)
    config, _ = read_gate_config(folder)
    gate = build_gate(config, aux_model)
    try:
        tensors = load_file(str(Path(folder) / WEIGHTS))
    except (OSError, SafetensorError) as exc:
        raise DllgError(
            f"cannot read {Path(folder) / WEIGHTS} ({exc}): the checkpoint is corrupt; retrain"
        ) from exc
    load_trainable(gate, tensors, folder)
    return gate.eval()


def load_trainable(gate: Gate, tensors: dict[str, torch.Tensor], folder: str | Path) -> None:
    """Load exactly the gate's trainable tensors (a frozen aux-LM backbone is not in a checkpoint): a
    missing, unknown, misshapen or non-finite tensor is an error, never silently skipped."""
    expected = gate.trainable_state_dict()
    if set(tensors) != set(expected):
        missing, unknown = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise DllgError(
            f"gate checkpoint {folder} does not fit its config (missing {missing[:3]}, "
            f"unknown {unknown[:3]}): it is corrupt or was edited"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise DllgError(
                f"gate checkpoint {folder}: {name} has shape {tuple(tensor.shape)}, the config wants "
                f"{tuple(expected[name].shape)}: it is corrupt or was edited"
            )
    if any(not torch.isfinite(t).all() for t in tensors.values()):
        raise DllgError(f"gate checkpoint {folder} holds NaN/inf weights: use an earlier checkpoint")
    # strict=False only because the frozen backbone's tensors are not stored; every stored one was checked.
    gate.load_state_dict(tensors, strict=False)
