"""Load an expert from a catalog name, a `SCHEME:NAME`, a local folder, a GGUF file or a hub id."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from dllg.errors import DllgError
from dllg.experts.device import resolve_device, resolve_dtype
from dllg.experts.expert import Expert
from dllg.experts.hf import HFExpert
from dllg.sources import ModelSource, find_entry, resolve_source
from dllg.sources.pypi_parts import gguf_path

BACKENDS = ("hf", "llamacpp")
PLACEMENTS = ("local", "ray")


def load_expert(
    name_or_path: str,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    backend: str = "hf",
    placement: str = "local",
    resources: dict[str, float] | None = None,
    ray_address: str | None = None,
    llamacpp: dict[str, Any] | None = None,
) -> Expert:
    """The expert a name means, run by `backend`: "hf" (transformers) or "llamacpp" (a GGUF file, with
    `llamacpp` context options: context_tokens, batch_tokens, cache_type_k, cache_type_v, kv_split,
    prompt_cache), in
    this process or (`placement="ray"`) in a Ray actor given `resources`, on the cluster at
    `ray_address`."""
    if backend not in BACKENDS:
        raise DllgError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if placement not in PLACEMENTS:
        raise DllgError(f"unknown placement {placement!r}: use one of {', '.join(PLACEMENTS)}")
    if placement == "ray":
        from dllg.experts.ray_placement import RayExpert

        return RayExpert(name_or_path, device, dtype, backend, resources, ray_address, llamacpp)
    if resources:
        raise DllgError(f"resources {resources} are for experts placed on Ray: add placement: ray")
    if llamacpp and backend != "llamacpp":
        raise DllgError(f"llama.cpp options {llamacpp} are for backend llamacpp: set it, or drop them")
    source = resolve_source(name_or_path)
    if backend == "llamacpp":
        return load_llamacpp_expert(name_or_path, source, device, **(llamacpp or {}))
    target_device = resolve_device(device)
    target_dtype = resolve_dtype(dtype, target_device)
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


def load_hf_model(name_or_path: str, device: str = "cpu", dtype: str = "float32") -> PreTrainedModel:
    """A model as a trainable torch module, for what builds on one rather than decodes with it (the gate's
    auxiliary LM): always through transformers, whatever backend the experts run on."""
    expert = load_expert(name_or_path, device, dtype, backend="hf")
    assert isinstance(expert, HFExpert)
    return expert.model


def load_llamacpp_expert(
    name_or_path: str, source: ModelSource, device: str | torch.device | None, **options: Any
) -> Expert:
    """A .gguf file, or a catalog model's kept GGUF, in llama.cpp; its tokenizer as transformers reads it
    (the catalog's converted folder has it ready; a bare .gguf file is read once)."""
    from dllg.experts.llamacpp import LlamaCppExpert

    if device not in (None, "auto", "cpu") and str(device) != "cpu":
        raise DllgError(f"the llama.cpp backend runs on the CPU here, not {device}: drop --device")
    if source.kind == "gguf":
        gguf_file = Path(source.path) / str(source.gguf_file)
        # A tokenizer saved beside the file is used as saved; otherwise transformers reads the GGUF's.
        beside = (Path(source.path) / "tokenizer_config.json").is_file()
        tokenizer_kwargs: dict = {} if beside else {"gguf_file": source.gguf_file}
        tokenizer_path = source.path
    elif source.kind == "catalog":
        gguf_file = gguf_path(source.name)
        entry = find_entry(source.name)
        if not gguf_file.is_file() or (entry is not None and gguf_file.stat().st_size != entry.size):
            raise DllgError(
                f"{source.name}'s GGUF is not kept in the cache: run `dllg models fetch {source.name}` again "
                "(it keeps the GGUF for the llama.cpp backend)"
            )
        tokenizer_kwargs, tokenizer_path = {}, source.path
    else:
        raise DllgError(
            f"the llama.cpp backend runs GGUF files: {name_or_path!r} is a {source.kind} model; give a .gguf "
            "file or a catalog name, or use --backend hf"
        )
    try:
        tokenizer = load_tokenizer(tokenizer_path, tokenizer_kwargs)
    except (OSError, ValueError) as exc:
        raise DllgError(f"cannot read the tokenizer of {name_or_path!r}: {exc}") from exc
    return LlamaCppExpert(source.name, gguf_file, tokenizer, source=name_or_path, **options)


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
    names: Sequence[str | Expert],
    device: str | Sequence[str] | None = "auto",
    dtype: str | Sequence[str] | None = "auto",
    backend: str | Sequence[str] = "hf",
    ray_address: str | None = None,
    llamacpp: dict[str, Any] | None = None,
) -> list[Expert]:
    """Each named expert (one device/dtype/backend for all, or one each); an Expert object is taken as it
    is. With `ray_address` ("local" or a cluster's address) each named expert runs in its own Ray actor.
    `llamacpp` options go to every expert on that backend."""
    devices = per_expert(device, len(names), "device")
    dtypes = per_expert(dtype, len(names), "dtype")
    backends = per_expert(backend, len(names), "backend")
    if llamacpp and "llamacpp" not in backends:
        raise DllgError(f"llama.cpp options {llamacpp} are for experts on backend llamacpp: none is")
    placement = "local" if ray_address is None else "ray"
    return [
        load_expert(
            n, d, t, b, placement, ray_address=ray_address, llamacpp=llamacpp if b == "llamacpp" else None
        )
        if isinstance(n, str)
        else n
        for n, d, t, b in zip(names, devices, dtypes, backends, strict=True)
    ]
