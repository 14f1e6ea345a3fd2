"""Two tiny experts saved as local Hugging Face folders, the models read back directly with transformers (the
independent reference), and local lm-eval tasks over JSON files: nothing here touches a network."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from dllg.tiny import tiny_expert, tiny_tokenizer


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """lm-eval loads datasets and tokenizers through the hub libraries: forbid them any download."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> list[str]:
    """No padded head rows: the experts' own log_softmax runs over exactly the shared vocabulary."""
    root = tmp_path_factory.mktemp("harness-experts")
    tokenizer = tiny_tokenizer()
    paths = []
    for seed in (1, 2):
        expert = tiny_expert(seed, tokenizer=tokenizer, hidden=32 * seed)
        path = root / f"tiny-{seed}"
        expert.model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="session")
def hf_models(folders) -> list[torch.nn.Module]:
    return [AutoModelForCausalLM.from_pretrained(f, dtype=torch.float32).eval() for f in folders]
