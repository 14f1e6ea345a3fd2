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


def user_text(prompt: Prompt) -> str:
    """What the user typed: the text, or the user turns of chat messages (no system prompt, no template)."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(m["content"] for m in prompt if m.get("role") == "user")


def encode_user_text(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> list[int]:
    """The user's input as the tokenizer reads plain text: what Pack of LLMs measures perplexity on."""
    ids = list(tokenizer(user_text(prompt), add_special_tokens=True)["input_ids"])
    if not ids:
        raise DllgError("the prompt has no user text to score: give a non-empty user message")
    return ids
