"""The independent reference the harness is checked against: the experts read directly with transformers,
and local lm-eval tasks written into a test's folder."""

import json
from pathlib import Path

import torch


@torch.no_grad()
def hf_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    """(len(ids), V) next-token logits of one sequence, read in one forward pass."""
    return model(torch.tensor([ids])).logits[0].float()


def token_logprobs(logprobs: torch.Tensor, ids: list[int], start: int) -> torch.Tensor:
    """log p(ids[i] | ids[:i]) for i >= start, from (len, V) log-probabilities of next tokens."""
    return torch.stack([logprobs[i - 1, ids[i]] for i in range(start, len(ids))])


def write_task(folder: Path, name: str, rows: list[dict], body: str) -> None:
    """A local lm-eval task: a JSONL data file and a YAML reading it with the `json` dataset builder."""
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    cache = folder / "datasets-cache"  # the builder's Arrow cache stays in the test's folder
    header = (
        f"task: {name}\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n  cache_dir: {cache}\n"
        "test_split: test\n"
    )
    (folder / f"{name}.yaml").write_text(header + body)
