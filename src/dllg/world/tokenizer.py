"""The world's one shared tokenizer: byte-level BPE trained on the families' training text, Qwen-style chat.

Deterministic (a fixed corpus in a fixed order) and built in about a second. Whole numbers up to the
families' range become single tokens, which keeps sequences short and lets tiny models treat each
arithmetic step as one choice.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from dllg.tiny import CHAT_TEMPLATE, SPECIALS
from dllg.world.families import FAMILIES, split_problems

VOCAB_SIZE = 1024
CORPUS_SIZE = 2000  # training problems per family the merges are learned from
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"


def world_corpus(size: int = CORPUS_SIZE) -> list[str]:
    """Prompts and reference solutions of the training splits only, family by family."""
    texts: list[str] = []
    for family in FAMILIES:
        for item in split_problems(family, "train", size, 100):
            texts.extend((item.prompt, item.solution))
    return texts


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_world_tokenizer(vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train the BPE on the world corpus; the special tokens take ids 0, 1, 2 as in `dllg.tiny`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(world_corpus(), trainer)
    return _wrap(tokenizer)


def save_world_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: Path) -> None:
    tokenizer.save_pretrained(str(folder))


def load_world_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """Load a saved world tokenizer; the chat template is set again in case the folder lacks it."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    tokenizer.chat_template = tokenizer.chat_template or CHAT_TEMPLATE
    return tokenizer
