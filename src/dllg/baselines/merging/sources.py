"""Put every source on disk as a safetensors folder (mergekit reads folders) and check that shapes agree."""

import json
from pathlib import Path

from safetensors import safe_open

from dllg.errors import DllgError
from dllg.experts.loading import load_expert
from dllg.sources import resolve_source


def safetensors_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def materialise(source: str, scratch: Path) -> Path:
    """A folder holding `source` as config + safetensors + tokenizer; written to `scratch` when needed."""
    resolved = resolve_source(source)
    folder = Path(resolved.path)
    if resolved.kind in ("local", "catalog", "packaged") and safetensors_files(folder):
        return folder
    # Models built in memory (tiny:SEED), GGUF files, hub ids and .bin folders are loaded once and saved.
    expert = load_expert(source, device="cpu", dtype="float32")
    scratch.mkdir(parents=True, exist_ok=True)
    expert.save(scratch)
    return scratch


def tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for file in safetensors_files(folder):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def check_same_shapes(folders: list[Path], names: list[str]) -> None:
    """DllgError naming the first tensor whose name or shape differs from the first source's."""
    reference = tensor_shapes(folders[0])
    for folder, name in zip(folders[1:], names[1:], strict=True):
        shapes = tensor_shapes(folder)
        for tensor in sorted(reference.keys() | shapes.keys()):
            mine, theirs = reference.get(tensor), shapes.get(tensor)
            if mine == theirs:
                continue
            where = (
                f"{tensor} is {_shape(mine)} in {names[0]} but {_shape(theirs)} in {name}"
                if mine is not None and theirs is not None
                else f"{tensor} is only in {names[0] if theirs is None else name}"
            )
            raise DllgError(
                f"cannot merge: shapes differ: {where}; merge only experts of one architecture and size"
            )


def _shape(shape: tuple[int, ...] | None) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def stored_dtype(folder: Path) -> str:
    """The dtype the first source is stored in: the merge is written in it (bf16 stays bf16)."""
    config = json.loads((folder / "config.json").read_text())
    dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    return dtype if dtype in ("float32", "bfloat16", "float16") else "float32"
