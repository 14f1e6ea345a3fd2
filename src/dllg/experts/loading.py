"""Load an expert from a catalog name, a `SCHEME:NAME`, a local folder, a GGUF file or a hub id."""

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from dllg.errors import DllgError
from dllg.experts.device import resolve_device, resolve_dtype
from dllg.experts.expert import Expert
from dllg.experts.hf import HFExpert
from dllg.sources import resolve_source


def load_expert(
    name_or_path: str,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
) -> Expert:
    target_device = resolve_device(device)
    target_dtype = resolve_dtype(dtype, target_device)
    source = resolve_source(name_or_path)
    if source.build is not None:  # a model its name scheme builds in memory (tiny:SEED)
        return source.build(target_device, target_dtype)
    kwargs = source.load_kwargs()
    try:
        tokenizer = load_tokenizer(source.path, kwargs)
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=target_dtype, **kwargs)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            "check the hub id and your network, or give a local folder or GGUF file"
            if source.kind == "hub"
            else "check that the folder holds a complete Hugging Face model (config, weights, tokenizer)"
        )
        raise DllgError(f"cannot load expert {name_or_path!r} ({source.kind}): {reason}; {hint}") from exc
    model.to(target_device)
    return HFExpert(source.name, model, tokenizer, source=name_or_path)


# Tokenizer classes that mean "exactly what tokenizer.json says", whatever the model type.
GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(path: str, kwargs: dict) -> PreTrainedTokenizerBase:
    """The folder's tokenizer as saved. AutoTokenizer picks the model type's class (a qwen2 config gives
    Qwen2Tokenizer, with Qwen's own pre-tokenizer) even when tokenizer_config.json names a generic
    tokenizer, which would silently tokenize differently from training; a generic one is honoured here."""
    config_file = Path(path) / "tokenizer_config.json"
    if config_file.is_file():
        try:
            declared = json.loads(config_file.read_text()).get("tokenizer_class")
        except json.JSONDecodeError as exc:
            raise DllgError(f"{config_file} is not valid JSON ({exc}): restore or re-save it") from exc
        if declared in GENERIC_TOKENIZER_CLASSES:
            return PreTrainedTokenizerFast.from_pretrained(path, **kwargs)
    return AutoTokenizer.from_pretrained(path, **kwargs)


def per_expert(value: object, count: int, what: str) -> list:
    """Broadcast one device/dtype to all experts, or check that a list has one value per expert."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != count:
            raise DllgError(
                f"got {len(value)} {what} values for {count} experts: give one, or one per expert"
            )
        return list(value)
    return [value] * count


def load_experts(
    names: Sequence[str],
    device: str | Sequence[str] | None = "auto",
    dtype: str | Sequence[str] | None = "auto",
) -> list[Expert]:
    devices = per_expert(device, len(names), "device")
    dtypes = per_expert(dtype, len(names), "dtype")
    return [load_expert(n, d, t) for n, d, t in zip(names, devices, dtypes, strict=True)]
