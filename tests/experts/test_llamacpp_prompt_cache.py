"""The llama.cpp expert's prompt cache: a prompt's prefill kept on disk is restored into the shared KV memory
when the prompt comes again (in this expert or a new one), and decoding goes on from it as from a prefill;
other models never read it, and a file that does not read back is prefilled again."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from gguf_export import export_gguf  # tests/experts/gguf_export.py

from dllg.errors import DllgError
from dllg.tiny import tiny_expert, tiny_tokenizer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)

PROMPTS = [[5, 6, 7] * 20, [8, 9, 10, 11] * 9, [12, 13] * 30]


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggufs")
    tokenizer = tiny_tokenizer()
    experts = [tiny_expert(seed, tokenizer=tokenizer, hidden=32 * (seed + 1)) for seed in (3, 4)]
    return [export_gguf(e, folder / f"expert{i}.gguf") for i, e in enumerate(experts)], tokenizer


def make(path, tokenizer, cache=None, **options):
    from dllg.experts.llamacpp import LlamaCppExpert

    return LlamaCppExpert("e", path, tokenizer, max_sequences=8, prompt_cache=cache, **options)


def decode(expert, prompts, steps=(20, 21, 22)):
    """Prefill `prompts` together, then a few steps: the logits at every step."""
    state, out = expert.prefill(prompts)
    logits = [out.logits]
    for token in steps:
        logits.append(expert.step(state, torch.tensor([[token]] * len(prompts))).logits)
    expert.release(state)
    return logits


def test_a_kept_prefill_decodes_on_as_a_computed_one(ggufs, tmp_path):
    (path, _), tokenizer = ggufs
    plain = decode(make(path, tokenizer), PROMPTS)
    cache = tmp_path / "prompts"
    first = make(path, tokenizer, cache)
    assert all(torch.equal(a, b) for a, b in zip(decode(first, PROMPTS), plain, strict=True))
    assert (first._prompts.hits, first._prompts.misses) == (0, 3) and len(list(cache.glob("*.npz"))) == 3
    # the same expert and a new one restore them, in another order, beside a prompt not seen before
    for expert, kept in ((first, 3), (make(path, tokenizer, cache), 4)):  # the new prompt is kept too
        before = expert._prompts.hits
        prompts = [PROMPTS[2], [14, 15] * 7, PROMPTS[0], PROMPTS[1]]
        reference = decode(make(path, tokenizer), prompts)
        restored = decode(expert, prompts)
        assert expert._prompts.hits - before == kept
        # a restored row's KV is the prefill's own; the rows prefilled here differ by batch shape (~1e-3 on
        # logits ~4 in size, f16 KV), and a lost or misplaced row would differ by whole units
        for ours, theirs in zip(restored, reference, strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-2, rtol=1e-2)
    assert len(list(cache.glob("*.npz"))) == 4 and not list(cache.glob("*.tmp"))


def test_another_model_never_reads_them_and_a_broken_file_is_prefilled_again(ggufs, tmp_path):
    (path, other), tokenizer = ggufs
    cache = tmp_path / "prompts"
    decode(make(path, tokenizer, cache), PROMPTS[:2])
    stranger = make(other, tokenizer, cache)
    decode(stranger, PROMPTS[:2])
    assert (stranger._prompts.hits, stranger._prompts.misses) == (0, 2)
    expert = make(path, tokenizer, cache)
    broken = expert._prompts.path(PROMPTS[0])
    broken.write_bytes(broken.read_bytes()[:100])  # cut short, as by a kill mid-write of another writer
    reference = decode(make(path, tokenizer), PROMPTS[:2])
    for ours, theirs in zip(decode(expert, PROMPTS[:2]), reference, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-2, rtol=1e-2)
    assert (expert._prompts.hits, expert._prompts.misses) == (1, 1)
    assert expert._prompts.load(PROMPTS[0]) is not None  # written whole again


def test_a_state_llama_cpp_refuses_is_prefilled_again_without_growing_the_memory(
    ggufs, tmp_path, monkeypatch
):
    """A file that reads back but holds a state llama.cpp cannot take (here cut short; another llama.cpp's
    layout would do the same) is prefilled again and rewritten; the memory, which had room, stays (growing
    it for every such file would take memory up to the cap)."""
    from dllg.experts import llamacpp_context
    from dllg.experts.llamacpp_prompts import Prefill

    monkeypatch.setattr(llamacpp_context, "INITIAL_CONTEXT", 64)  # 256 cells: room to grow, and to spare
    (path, _), tokenizer = ggufs
    cache = tmp_path / "prompts"
    decode(make(path, tokenizer, cache, batch_tokens=64), PROMPTS[:1])
    expert = make(path, tokenizer, cache, batch_tokens=64)
    kept = expert._prompts.load(PROMPTS[0])
    expert._prompts.save(PROMPTS[0], Prefill(kept.state[: len(kept.state) // 2], kept.logits, kept.hidden))
    before = expert._kv.cells
    reference = decode(make(path, tokenizer, batch_tokens=64), PROMPTS[:1])
    for ours, theirs in zip(decode(expert, PROMPTS[:1]), reference, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-2, rtol=1e-2)
    assert (expert._prompts.hits, expert._prompts.misses) == (0, 1) and expert._kv.cells == before == 256
    assert len(expert._prompts.load(PROMPTS[0]).state) == len(kept.state)


def test_a_full_memory_grows_to_restore_a_kept_prompt(ggufs, tmp_path, monkeypatch):
    from dllg.experts import llamacpp_context

    monkeypatch.setattr(llamacpp_context, "INITIAL_CONTEXT", 64)
    (path, _), tokenizer = ggufs
    cache = tmp_path / "prompts"
    long = [[3, 4, 5, 6] * 50, [7, 8] * 90]  # 380 tokens: past the first 256 cells
    small = {"batch_tokens": 64}  # llama.cpp decodes at most a context's worth at once
    decode(make(path, tokenizer, cache, **small), long)
    expert = make(path, tokenizer, cache, **small)
    before = expert._kv.cells
    reference = decode(make(path, tokenizer, **small), long)
    for ours, theirs in zip(decode(expert, long), reference, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-2, rtol=1e-2)
    assert expert._prompts.hits == 2 and expert._kv.cells > before


def test_the_options_that_cannot_go_with_it_are_clear_errors(ggufs, tmp_path):
    from dllg.experts.loading import load_experts

    (path, _), tokenizer = ggufs
    with pytest.raises(DllgError, match="kv_split replaces: drop one"):
        make(path, tokenizer, tmp_path / "prompts", kv_split=True)
    with pytest.raises(DllgError, match="are for experts on backend llamacpp: none is"):
        load_experts(["tiny:0"], backend="hf", llamacpp={"prompt_cache": str(tmp_path)})


def test_the_eval_option_reaches_llamacpp_experts_only(tmp_path):
    from typer.testing import CliRunner

    from dllg.cli.common import expand_multi_value_options
    from dllg.cli.main import app

    args = ["eval", "--experts", "tiny:0", "tiny:1", "--methods", "uniform", "--tasks", "gsm8k"]
    result = CliRunner().invoke(
        app,
        expand_multi_value_options([*args, "--prompt-cache", str(tmp_path), "--out", str(tmp_path / "r")]),
    )
    assert result.exit_code == 1 and "are for experts on backend llamacpp: none is" in result.output
