"""Generation settings, checked once up front."""

from dataclasses import dataclass, field

from dllg.errors import DllgError


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    min_new_tokens: int = 0  # end-of-sequence tokens are masked out until this many were generated
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    speculate: str = "none"  # speculative decoding's drafter (see dllg.decode.drafting): the same output
    draft_tokens: int = 4  # drafted tokens per step, at most

    def __post_init__(self) -> None:
        self.stop = tuple(self.stop)
        if self.max_new_tokens < 1:
            raise DllgError(f"max_new_tokens={self.max_new_tokens}: it must be at least 1")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise DllgError(f"min_new_tokens={self.min_new_tokens}: it must lie in 0..max_new_tokens")
        if not self.temperature >= 0:
            raise DllgError(f"temperature={self.temperature}: it must be >= 0 (0 is greedy)")
        if not 0 < self.top_p <= 1:
            raise DllgError(f"top_p={self.top_p}: it must lie in (0, 1]")
        if any(not s for s in self.stop):
            raise DllgError("an empty stop string would stop at once: remove it")
        if self.draft_tokens < 0:
            raise DllgError(f"draft_tokens={self.draft_tokens}: it must be >= 0")
        from dllg.decode.drafting import DRAFTERS  # the registry the loop draws drafters from

        if self.speculate not in DRAFTERS:
            raise DllgError(
                f"unknown drafter {self.speculate!r} for speculative decoding: "
                f"use one of {', '.join(sorted(DRAFTERS))}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def settings(self) -> dict:
        """What an answer depends on besides the model and the prompt: kept in every record, so that a
        resumed collection or evaluation never mixes answers generated otherwise."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": list(self.stop),
        }

    def drafting(self) -> dict:
        """How it was drafted, recorded beside `settings` when used: not part of them, since drafting
        changes no answer (but near-ties in fp32 and on llama.cpp, as batch shapes do), so a run resumed
        with another drafter goes on."""
        if self.speculate == "none":
            return {}
        return {"speculate": self.speculate, "draft_tokens": self.draft_tokens}
