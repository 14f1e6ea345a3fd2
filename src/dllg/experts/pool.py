"""The pool of experts that decode together: they must share one tokenizer, and logits are trimmed to it."""

import re
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from dllg.errors import DllgError
from dllg.experts.expert import Expert

# GGUF conversions fill the embedding's padding rows with placeholder tokens ("[PAD151665]" ...); they are
# not text anyone trained on, so they are trimmed like padding rows.
PLACEHOLDER_TOKEN = re.compile(r"^\[PAD\d+\]$")


def usable_vocab_size(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's size without a trailing run of placeholder tokens."""
    size = len(tokenizer)
    while size > 0 and PLACEHOLDER_TOKEN.match(tokenizer.convert_ids_to_tokens(size - 1) or ""):
        size -= 1
    return size


def vocabulary_difference(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> str | None:
    """None when both tokenizers map the same tokens to the same ids; otherwise what differs, in words."""
    vocab_a, vocab_b = a.get_vocab(), b.get_vocab()
    if vocab_a == vocab_b:
        return None
    only_a = vocab_a.keys() - vocab_b.keys()
    only_b = vocab_b.keys() - vocab_a.keys()
    moved = [t for t in vocab_a.keys() & vocab_b.keys() if vocab_a[t] != vocab_b[t]]
    parts = [f"{len(vocab_a)} vs {len(vocab_b)} tokens"]
    if only_a:
        parts.append(f"{len(only_a)} only in the first (e.g. {min(only_a)!r})")
    if only_b:
        parts.append(f"{len(only_b)} only in the second (e.g. {min(only_b)!r})")
    if moved:
        token = min(moved)
        parts.append(f"{len(moved)} with other ids (e.g. {token!r}: {vocab_a[token]} vs {vocab_b[token]})")
    return ", ".join(parts)


def on_separate_accelerators(experts: Sequence[Expert]) -> bool:
    """Whether the in-process experts sit on two or more distinct accelerators (cuda:0 and cuda:1)."""
    devices = {e.device for e in experts if not e.runs_elsewhere and e.device.type != "cpu"}
    return len(devices) >= 2


class ExpertPool:
    """K experts with one shared vocabulary; every expert's logits are trimmed to its size."""

    def __init__(self, experts: Sequence[Expert], parallel: bool | None = None) -> None:
        """`parallel`: the loop steps the in-process experts in threads at once (default: when they sit on
        two or more accelerators, which then compute at the same time; on one CPU they would only compete
        for its cores)."""
        if not experts:
            raise DllgError("no experts given: name at least one model (hub id, local folder or GGUF file)")
        self.experts = list(experts)
        self._make_names_unique()
        first = self.experts[0]
        for other in self.experts[1:]:
            diff = vocabulary_difference(first.tokenizer, other.tokenizer)
            if diff is not None:
                raise DllgError(
                    f"experts {first.name!r} and {other.name!r} do not share a tokenizer ({diff}); "
                    "combine only models of one tokenizer family"
                )
        self.vocab_size = usable_vocab_size(first.tokenizer)
        for expert in self.experts:
            if expert.output_rows < self.vocab_size:
                raise DllgError(
                    f"expert {expert.name!r} has {expert.output_rows} output rows for a "
                    f"{self.vocab_size}-token vocabulary; its output head does not cover the tokenizer"
                )
            expert.vocab_size = self.vocab_size
        self.parallel = on_separate_accelerators(self.experts) if parallel is None else parallel

    def _make_names_unique(self) -> None:
        seen: dict[str, int] = {}
        for expert in self.experts:
            count = seen.get(expert.name, 0)
            seen[expert.name] = count + 1
            if count:
                expert.name = f"{expert.name}#{count + 1}"

    def __len__(self) -> int:
        return len(self.experts)

    def __getitem__(self, index: int) -> Expert:
        return self.experts[index]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.experts]

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.experts[0].tokenizer

    def eos_token_ids(self) -> set[int]:
        """End-of-sequence ids: the tokenizer's EOS and every expert's generation-config EOS."""
        ids: set[int] = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        for expert in self.experts:
            ids.update(expert.eos_token_ids())
        return {i for i in ids if i < self.vocab_size}

    def pad_token_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id):
            if candidate is not None:
                return candidate
        return 0

    def max_sequence_tokens(self) -> int:
        """The longest sequence (prompt and answer together) every expert can read."""
        return min(e.max_sequence_tokens for e in self.experts)
