"""When a sequence is done: an end-of-sequence token, a stop string, or the token budget."""

from transformers import PreTrainedTokenizerBase

from dllg.decode.config import GenerationConfig

# A token decodes to at least one character once complete; a few extra tokens cover partial UTF-8 bytes.
STOP_WINDOW_SLACK = 4


class StopChecker:
    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, eos_ids: set[int], config: GenerationConfig
    ) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.config = config
        self.window = max((len(s) for s in config.stop), default=0) + STOP_WINDOW_SLACK

    def reason(self, tokens: list[int]) -> str | None:
        """Why this sequence is finished ("eos", "stop", "length"), or None while it goes on."""
        if len(tokens) >= self.config.min_new_tokens:
            if tokens[-1] in self.eos_ids:
                return "eos"
            if self.config.stop:
                tail = self.tokenizer.decode(tokens[-self.window :], skip_special_tokens=True)
                if any(s in tail for s in self.config.stop):
                    return "stop"
        if len(tokens) >= self.config.max_new_tokens:
            return "length"
        return None

    def text(self, tokens: list[int], reason: str) -> str:
        """The response text: without the EOS token, cut before the first stop string."""
        if reason == "eos":
            tokens = tokens[:-1]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cuts = [text.find(s) for s in self.config.stop if s in text]
        return text[: min(cuts)] if cuts else text
