"""Convert a GGUF file once into a plain bf16 safetensors Hugging Face folder.

Loading a GGUF with transformers dequantises every tensor (30-45 s for a 1.5B model on CPU);
a converted folder loads in about two seconds, so each expert pays that cost once.

The folder is written as `<dir>.partial` and renamed into place; the `dllg-source.json` marker is
written last, so a folder without it (or with another GGUF's sha256 in it) is incomplete and redone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from dllg.errors import DllgError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MARKER = "dllg-source.json"
WEIGHTS = "model.safetensors"
PROBE_TEXT = "def fibonacci(n):\n    return"


def dllg_version() -> str:
    # Read from the installed metadata: importing `dllg` for `__version__` would be circular here.
    try:
        return metadata.version("dllg")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a finished conversion, or None if the folder is absent or incomplete."""
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_converted(folder: Path, gguf_sha256: str | None = None) -> bool:
    """True if `folder` holds a finished conversion (of the GGUF with that sha256, when given)."""
    marker = read_marker(folder)
    if marker is None:
        return False
    return gguf_sha256 is None or marker.get("gguf_sha256") == gguf_sha256


@contextmanager
def _quiet_hf_progress() -> Iterator[None]:
    """Hide transformers' tqdm bars: the CLI shows its own stages, and two bar styles read badly."""
    from functools import partial

    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF dequantiser calls tqdm directly, past the switch above.
    original_tqdm = getattr(gguf_utils, "tqdm", None)
    if original_tqdm is not None:
        gguf_utils.tqdm = partial(original_tqdm, disable=True)
    try:
        yield
    finally:
        if original_tqdm is not None:
            gguf_utils.tqdm = original_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_gguf(
    gguf_file: Path, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (dense, dequantised) and tokenizer straight from a GGUF file."""
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("accelerate") is None:  # transformers refuses GGUF files without it
        raise DllgError("loading a GGUF file needs the `accelerate` package: run `pip install accelerate`")
    kwargs: dict[str, Any] = {"gguf_file": gguf_file.name, "dtype": dtype or torch.bfloat16}
    try:  # transformers >= 5.x can keep GGUF blocks packed; ask for plain dense weights explicitly
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    folder = str(gguf_file.parent)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()
    return model, tokenizer


def _tied_targets(model: PreTrainedModel) -> set[str]:
    """Parameter names the loader re-ties from another (e.g. lm_head.weight from embed_tokens)."""
    if not getattr(model.config, "tie_word_embeddings", False):
        return set()
    targets: set[str] = set()
    for attr in ("all_tied_weights_keys", "_tied_weights_keys"):
        keys = getattr(model, attr, None) or ()
        targets.update(keys)  # a dict (target -> source) in transformers 5, a list before
    return targets


def unique_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The state dict with each storage written once, as safetensors requires.

    A tied copy is dropped (the loader re-ties it from config.tie_word_embeddings); any other
    shared tensor is cloned, so nothing is lost if the config does not say it is tied.
    """
    state = model.state_dict()
    tied = _tied_targets(model)
    # Sources before tied targets, so a target never claims a storage its source then loses.
    order = sorted(state, key=lambda key: key in tied)
    owners: dict[tuple[str, int], str] = {}
    tensors: dict[str, torch.Tensor] = {}
    for key in order:
        tensor = state[key]
        storage = (str(tensor.device), tensor.untyped_storage().data_ptr())
        if storage in owners:
            if key in tied:
                continue
            tensor = tensor.clone()
        else:
            owners[storage] = key
        tensors[key] = tensor.contiguous()
    return {key: tensors[key] for key in state if key in tensors}  # keep the model's order


def write_weights(model: PreTrainedModel, folder: Path) -> Path:
    # save_pretrained refuses GGUF-loaded models, so write the tensors ourselves.
    from safetensors.torch import save_file

    path = folder / WEIGHTS
    save_file(unique_state_dict(model), str(path), metadata={"format": "pt"})
    return path


def write_config(model: PreTrainedModel, folder: Path) -> None:
    import copy

    config = copy.deepcopy(model.config)
    # A GGUF load may leave a GGUF quantization_config behind; this folder holds dense weights.
    if "quantization_config" in vars(config):
        delattr(config, "quantization_config")
    config.architectures = [type(model).__name__]
    config.dtype = next(model.parameters()).dtype
    config.save_pretrained(folder)


def eos_token_ids(tokenizer: PreTrainedTokenizerBase, config: Any, eos_tokens: Sequence[str]) -> list[int]:
    """Ids that end generation: `eos_tokens` if given, else the tokenizer's and config's eos ids."""
    if eos_tokens:
        ids = []
        for token in eos_tokens:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == tokenizer.unk_token_id:
                raise DllgError(
                    f"end-of-turn token {token!r} is not in the GGUF's vocabulary: fix the catalog entry"
                )
            ids.append(int(token_id))
        return ids
    found = [tokenizer.eos_token_id, *_as_list(getattr(config, "eos_token_id", None))]
    return list(dict.fromkeys(int(i) for i in found if i is not None))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def write_generation_config(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path, eos_tokens: Sequence[str]
) -> list[int]:
    """Only token ids: sampling defaults are dllg's decision, not the checkpoint's."""
    from transformers import GenerationConfig

    eos = eos_token_ids(tokenizer, model.config, eos_tokens)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else tokenizer.pad_token_id
    generation = GenerationConfig(
        bos_token_id=model.config.bos_token_id,
        eos_token_id=eos if len(eos) > 1 else eos[0],
        pad_token_id=pad,
    )
    generation.save_pretrained(folder)
    return eos


def verify_folder(folder: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Reload the written folder and check it gives the same tokens, logits and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded_tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(PROBE_TEXT, return_tensors="pt").input_ids
    if not torch.equal(reloaded_tokenizer(PROBE_TEXT, return_tensors="pt").input_ids, ids):
        raise DllgError(f"the tokenizer written to {folder} encodes differently from the GGUF's: a dllg bug")
    if tokenizer.chat_template and reloaded_tokenizer.chat_template != tokenizer.chat_template:
        raise DllgError(f"the chat template was lost writing {folder}: a dllg bug")
    dtype = next(model.parameters()).dtype
    reloaded, info = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, output_loading_info=True)
    problems = {
        k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v
    }
    if problems:
        raise DllgError(f"the weights written to {folder} do not load cleanly ({problems}): a dllg bug")
    with torch.no_grad():
        expected = model(ids).logits.float()
        got = reloaded.eval()(ids).logits.float()
    if not torch.allclose(got, expected, atol=1e-2, rtol=1e-2):
        diff = (got - expected).abs().max().item()
        raise DllgError(
            f"the model written to {folder} computes other logits (max diff {diff:.3g}): a dllg bug"
        )


def write_marker(folder: Path, source: str, gguf_file: Path, gguf_sha256: str, eos: list[int]) -> None:
    marker = {
        "source": source,
        "gguf_file": gguf_file.name,
        "gguf_sha256": gguf_sha256,
        "eos_token_id": eos,
        "dllg_version": dllg_version(),
        "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _replace_dir(partial: Path, target: Path) -> None:
    """Put `partial` at `target`, moving an old incomplete/forced folder aside first."""
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(partial, target)
    if old.exists():
        shutil.rmtree(old)


def convert_gguf(
    gguf_file: Path,
    out_dir: Path,
    source: str,
    gguf_sha256: str,
    eos_tokens: Sequence[str] = (),
    verify: bool = True,
    console: Console | None = None,
) -> Path:
    """Write `out_dir` (bf16 safetensors, config, tokenizer, generation config, marker) from `gguf_file`.

    `gguf_sha256` goes into the marker so a later catalog change is noticed; `verify` reloads the
    folder and compares logits with the GGUF-loaded model before it is declared finished.
    """
    console = console if console is not None else Console(stderr=True)
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # left by an interrupted run
    partial.mkdir(parents=True)
    with _quiet_hf_progress():
        with _stage(console, f"load {gguf_file.name} (dequantise)"):
            model, tokenizer = load_gguf(gguf_file)
        if not tokenizer.chat_template:
            console.print(f"[yellow]{gguf_file.name} carries no chat template: chat prompts will not work")
        with _stage(console, f"write {partial.name}"):
            weights = write_weights(model, partial)
            write_config(model, partial)
            # safetensors creates its file 0600; give it the mode (umask) the other files got.
            weights.chmod((partial / "config.json").stat().st_mode & 0o777)
            tokenizer.save_pretrained(partial)
            eos = write_generation_config(model, tokenizer, partial, eos_tokens)
        if verify:
            with _stage(console, "verify the converted folder"):
                verify_folder(partial, model, tokenizer)
    write_marker(partial, source, gguf_file, gguf_sha256, eos)
    _replace_dir(partial, out_dir)
    return out_dir


@contextmanager
def _stage(console: Console, what: str) -> Iterator[None]:
    start = time.perf_counter()
    with console.status(what + " ..."):
        yield
    console.print(f"{what}: {time.perf_counter() - start:.1f} s")
