"""Tiny random Qwen2 experts and a tiny shared tokenizer, built in memory: for tests and offline benches.

A plug-in (entry point `dllg.plugins`): importing it registers the name scheme `tiny:SEED`, so that any
command that takes an expert name runs anywhere without a download. Nothing in dllg's core imports it.
"""

from functools import cache

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedModel, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from dllg.errors import DllgError
from dllg.experts import ExpertPool, HFExpert
from dllg.experts.device import resolve_device, resolve_dtype
from dllg.gate import Gate, GateConfig, build_gate
from dllg.sources import ModelSource, NameScheme, register_scheme

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "The answer is 42. Let us compute 3 + 4 = 7 step by step.",
    "Write a Python function that reverses a string: return s[::-1]",
    "Hello world! How are you today? I am fine, thank you.",
] * 20


@cache
def _tokenizer_json(vocab_size: int, extra_special: str | None) -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = SPECIALS + ([extra_special] if extra_special else [])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok.to_str()


def tiny_tokenizer(vocab_size: int = 320, extra_special: str | None = None) -> PreTrainedTokenizerFast:
    """Byte-level BPE with Qwen-style chat tokens; `extra_special` gives another vocabulary, same size."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(vocab_size, extra_special)),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model(
    seed: int,
    vocab_rows: int,
    hidden: int = 32,
    layers: int = 2,
    dtype: torch.dtype = torch.float32,
) -> Qwen2ForCausalLM:
    """A random Qwen2; a larger init spread keeps logits apart so greedy choices are not near-ties."""
    config = Qwen2Config(
        vocab_size=vocab_rows,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,
        tie_word_embeddings=False,
        eos_token_id=2,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):  # the caller's random stream goes on as if nothing happened
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).to(dtype).eval()
    return model


def tiny_expert(
    seed: int,
    name: str | None = None,
    padded_rows: int = 0,
    hidden: int = 32,
    dtype: torch.dtype = torch.float32,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> HFExpert:
    tokenizer = tokenizer or tiny_tokenizer()
    model = tiny_model(seed, len(tokenizer) + padded_rows, hidden=hidden, dtype=dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return HFExpert(name or f"tiny-{seed}", model, tokenizer)


TINY_PREFIX = "tiny:"


def named_tiny_expert(seed: int, device: torch.device, dtype: torch.dtype) -> HFExpert:
    """The expert `tiny:SEED` names: width 32, 64, 96 or 128 by seed, so that pools differ in shape."""
    expert = tiny_expert(seed, name=f"{TINY_PREFIX}{seed}", hidden=32 * (seed % 4 + 1), dtype=dtype)
    expert.model.to(device)
    expert.source = expert.name
    return expert


def _resolve_tiny(name: str) -> ModelSource:
    seed = name.removeprefix(TINY_PREFIX)
    if not seed.isdigit():
        raise DllgError(f"{name!r}: a tiny expert is named tiny:SEED with an integer seed, e.g. tiny:0")
    return ModelSource(
        "memory", name, None, name, build=lambda device, dtype: named_tiny_expert(int(seed), device, dtype)
    )


register_scheme(
    NameScheme(TINY_PREFIX, "tiny:SEED, a random Qwen2 built in memory (tests, offline runs)", _resolve_tiny)
)


def tiny_pool(dtype: str = "auto", device: str = "auto", count: int = 2) -> ExpertPool:
    """The experts tiny:0 .. tiny:{count-1}, built in memory."""
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    return ExpertPool([named_tiny_expert(seed, target, torch_dtype) for seed in range(count)])


SMALL_GATE = {"proj_rank": 8, "lora_rank": 4, "head_hidden": 16, "attn_dim": 16}


def random_gate(
    expert_names: list[str],
    hidden_sizes: list[int],
    variant: str = "mlp",
    *,
    aux_model: PreTrainedModel | str | None = None,
    seed: int = 0,
    scale: float = 0.5,
    **overrides,
) -> Gate:
    """A small gate of `variant` whose trainable weights are moved off their init by N(0, scale) noise, so
    its weights differ from token to token (an untrained gate's barely do). The same gate for the same
    arguments whatever ran before: built and perturbed under its own seed, the global RNG left as it was.
    An aux-LM variant reads `aux_model`: a model, or a folder the gate's config names."""
    named = {"aux_model": aux_model} if isinstance(aux_model, str) else {}
    config = GateConfig(
        variant=variant,
        expert_names=expert_names,
        hidden_sizes=hidden_sizes,
        **{**SMALL_GATE, **named, **overrides},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gate = build_gate(config, None if isinstance(aux_model, str) else aux_model)
        with torch.no_grad():
            for param in gate.parameters():
                if param.requires_grad:
                    param.add_(torch.randn_like(param) * scale)
    return gate.eval()
