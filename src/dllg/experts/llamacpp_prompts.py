"""Prefills kept on disk for a llama.cpp expert: a prompt's KV state (llama.cpp's own bytes for one sequence)
with the logits and hidden state of its last position, so that an evaluation of several methods on the same
prompts prefills each prompt once (on the real pair, 2 cores: about a tenth of a fused method's time).

A file is keyed by the model file (path, size, modification time), the KV memory's types, llama.cpp's
version and the prompt's tokens, and holds the tokens again: another model, KV type or version, or a
colliding key, never restores. A file that does not read back (cut short, corrupt: the zip's checksums
catch it) is a miss: the prompt is prefilled and the file written again. Files are written whole under a
temporary name and renamed, so a kill leaves none half-written.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Prefill:
    state: bytes  # llama_state_seq_get_data of the prompt's sequence
    logits: np.ndarray  # (vocab,) at the last prompt position
    hidden: np.ndarray  # (hidden,)


class PromptCache:
    def __init__(self, folder: str | Path, model_file: str | Path, layout: tuple[str, ...]) -> None:
        """`layout`: what else decides how a saved state reads back (KV types, llama.cpp's version)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stat = os.stat(model_file)
        file = f"{Path(model_file).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        self._salt = "|".join([file, *layout])
        self.hits = self.misses = 0

    def path(self, prompt: list[int]) -> Path:
        digest = hashlib.sha256(f"{self._salt}|{','.join(map(str, prompt))}".encode()).hexdigest()
        return self.folder / f"{digest[:40]}.npz"

    def load(self, prompt: list[int]) -> Prefill | None:
        path = self.path(prompt)
        try:
            with np.load(path) as data:
                if data["tokens"].tolist() != prompt:
                    return None
                found = Prefill(data["state"].tobytes(), data["logits"], data["hidden"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return None  # absent, or not readable: prefill it again
        return found

    def save(self, prompt: list[int], prefill: Prefill) -> None:
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(
                    out,
                    tokens=np.asarray(prompt, dtype=np.int64),
                    state=np.frombuffer(prefill.state, dtype=np.uint8),
                    logits=prefill.logits.astype(np.float32),
                    hidden=prefill.hidden.astype(np.float32),
                )
            os.replace(temporary, self.path(prompt))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
