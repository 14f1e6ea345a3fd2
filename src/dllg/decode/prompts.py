"""Prompts to token ids: chat messages through the experts' chat template, or raw text."""

from transformers import PreTrainedTokenizerBase

from dllg.errors import DllgError

Prompt = str | list[dict[str, str]]  # plain text, or chat messages [{"role": ..., "content": ...}]


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, chat: bool = True) -> list[int]:
    """Chat messages (or text as one user turn) through the chat template; raw text with `chat=False`."""
    if isinstance(prompt, str) and not chat:
        return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if not tokenizer.chat_template:
        raise DllgError("the experts' tokenizer has no chat template: pass raw text (--raw / chat=False)")
    return list(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    )
