"""The teacher-forced feature cache: per example, each expert's hidden states at the response positions.

Layout of a cache folder:
  meta.json                 the experts (names, sources, hidden sizes, backends), a fingerprint of their
                            vocabulary and of each expert's weights
  shard-NNNNN.safetensors   tensors "<example id>/<k>" of shape (T, d_k), stored bf16
  index.jsonl               a line per example {"id", "shard", "length", "tokens"}, appended after its shard
                            is written; "tokens" is a digest of the prompt and response token ids it read

The index is the truth: a kill between a shard and its index lines loses only those examples, which the next
run recomputes. A cache made from other experts, another tokenizer, or an expert whose files changed since
(retrained under the same name) is refused, and so is an example whose tokens changed since (another
reference text, `max_response_tokens`, prompt or instruction): its cached states would be stale.
"""

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import Progress
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.jsonl import append_records, read_records
from dllg.pipeline.batching import batches
from dllg.pipeline.teacher_forcing import teacher_forced_states
from dllg.sources.fingerprint import weights_fingerprint

META = "meta.json"
INDEX = "index.jsonl"


def vocab_fingerprint(tokenizer) -> str:
    items = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def pool_meta(pool: ExpertPool) -> dict:
    return {
        "experts": pool.names,
        "sources": [e.source for e in pool.experts],
        "hidden_sizes": [e.hidden_size for e in pool.experts],
        "vocab": vocab_fingerprint(pool.tokenizer),
        "weights": [weights_fingerprint(e.source) for e in pool.experts],
        "backends": [e.backend for e in pool.experts],  # HF and llama.cpp states differ by ~1e-3
    }


@dataclass
class FeatureExample:
    example_id: str
    prompt_ids: list[int]
    response_ids: list[int]

    @property
    def tokens_digest(self) -> str:
        """16 hex digits over the prompt and the response: what the cached states were computed from."""
        text = json.dumps([self.prompt_ids, self.response_ids], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class FeatureCache:
    def __init__(self, folder: str | Path, meta: dict) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / META
        if path.is_file():
            stored = json.loads(path.read_text())
            for key in ("experts", "hidden_sizes", "vocab", "weights", "backends"):
                if key in ("weights", "backends") and key not in stored:
                    continue  # a cache from before these were recorded
                if stored.get(key) != meta.get(key):
                    raise DllgError(
                        f"feature cache {self.folder} was made with other {key} ({stored.get(key)} vs "
                        f"{meta.get(key)}"
                        + (": an expert's files changed since" if key == "weights" else "")
                        + "): use another features folder, or delete this one"
                    )
        else:
            path.write_text(json.dumps(meta, indent=2))
        self.meta = json.loads(path.read_text())
        self._index = self._read_index()

    @classmethod
    def open(cls, folder: str | Path) -> "FeatureCache":
        path = Path(folder) / META
        if not path.is_file():
            raise DllgError(f"{folder} is not a feature cache ({META} missing): run `dllg features` first")
        return cls(folder, json.loads(path.read_text()))

    def _read_index(self) -> dict[str, dict]:
        # A line torn by a kill is skipped: that example is recomputed.
        records = read_records(self.folder / INDEX)
        return {r["id"]: r for r in records if "id" in r and (self.folder / str(r.get("shard"))).is_file()}

    def __contains__(self, example_id: str) -> bool:
        return example_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def ids(self) -> list[str]:
        return list(self._index)

    def _next_shard(self) -> str:
        existing = sorted(self.folder.glob("shard-*.safetensors"))
        number = int(existing[-1].name[6:11]) + 1 if existing else 0
        return f"shard-{number:05d}.safetensors"

    def check_tokens(self, examples: list[FeatureExample]) -> None:
        """Refuse cached examples whose prompt or response tokens differ from the ones asked for now."""
        stale = [
            e.example_id for e in examples if e.example_id in self and self.tokens_of(e) != e.tokens_digest
        ]
        if stale:
            raise DllgError(
                f"feature cache {self.folder} holds {len(stale)} example(s) computed from other tokens (e.g. "
                f"{stale[0]!r}: the reference text, features.max_response_tokens or the prompt changed): "
                "train with --fresh-features (the old cache is set aside) or use another features.dir"
            )

    def tokens_of(self, example: FeatureExample) -> str | None:
        return self._index[example.example_id].get("tokens")

    def append(self, items: list[tuple[FeatureExample, list[torch.Tensor]]]) -> None:
        """Write one shard holding these examples, then their index lines."""
        if not items:
            return
        shard = self._next_shard()
        tensors = {
            f"{example.example_id}/{k}": t.to(torch.bfloat16).contiguous()
            for example, states in items
            for k, t in enumerate(states)
        }
        tmp = self.folder / (shard + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, self.folder / shard)
        records = [
            {
                "id": example.example_id,
                "shard": shard,
                "length": int(states[0].shape[0]),
                "tokens": example.tokens_digest,
            }
            for example, states in items
        ]
        append_records(self.folder / INDEX, records)
        self._index.update((r["id"], r) for r in records)

    def load_all(self, ids: Iterable[str] | None = None) -> dict[str, list[torch.Tensor]]:
        """Example id -> per-expert (T, d_k) float32 tensors, reading each shard once."""
        wanted = set(self._index) if ids is None else set(ids)
        by_shard: dict[str, list[str]] = {}
        for eid in wanted:
            if eid not in self._index:
                raise DllgError(
                    f"example {eid!r} is not in the feature cache {self.folder}: run `dllg features`"
                )
            by_shard.setdefault(self._index[eid]["shard"], []).append(eid)
        num_experts = len(self.meta["experts"])
        out: dict[str, list[torch.Tensor]] = {}
        for shard, eids in by_shard.items():
            try:
                tensors = load_file(str(self.folder / shard))
            except (OSError, SafetensorError) as exc:
                raise DllgError(
                    f"feature shard {self.folder / shard} is corrupt ({exc}): delete it and rerun"
                ) from exc
            for eid in eids:
                out[eid] = [tensors[f"{eid}/{k}"].float() for k in range(num_experts)]
        return out


def extract_features(
    pool: ExpertPool, examples: list[FeatureExample], folder: str | Path, batch_size: int = 4
) -> FeatureCache:
    """Teacher-force every example not yet cached; one shard per batch, so a kill loses one batch at most."""
    cache = FeatureCache(folder, pool_meta(pool))
    cache.check_tokens(examples)
    todo = [e for e in examples if e.example_id not in cache]
    with Progress(transient=True) as progress:
        task = progress.add_task(f"features ({len(cache)} cached)", total=len(todo))
        for batch in batches(todo, batch_size):
            states = teacher_forced_states(
                pool, [e.prompt_ids for e in batch], [e.response_ids for e in batch]
            )
            cache.append(list(zip(batch, states, strict=True)))
            progress.advance(task, len(batch))
    return cache
