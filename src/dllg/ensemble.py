"""The Python API: `Ensemble(experts).generate(prompts, fusion=...)`, and `compare(prompts, fusions)` for
several rules at once."""

from collections.abc import Sequence

from dllg.decode import Generation, GenerationConfig, generate
from dllg.decode.generate import generate_together
from dllg.decode.prompts import Prompt, encode_prompt, encode_user_text
from dllg.errors import DllgError
from dllg.experts import Expert, ExpertPool
from dllg.experts.loading import load_experts
from dllg.fusion import FusionRule, make_rule
from dllg.presets import get_preset


class Ensemble:
    """K experts that share a tokenizer, generating as one.

    >>> ens = Ensemble(["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"])
    >>> ens.generate("Write a Python function that reverses a string.", fusion="uniform")[0].text
    >>> Ensemble.from_preset("world").generate("What is 2 + 3?")[0].text  # fused by the preset's gate
    """

    def __init__(
        self,
        experts: Sequence[str | Expert],
        device: str | Sequence[str] | None = "auto",
        dtype: str | Sequence[str] | None = "auto",
        backend: str | Sequence[str] = "hf",
        ray: str | None = None,
        parallel: bool | None = None,
    ) -> None:
        """`ray`: run each named expert in its own Ray actor, on the cluster at this address ("local":
        start one here); the loop, the rule and the gate stay in this process. `parallel`: step the
        in-process experts in threads at once (default: when they sit on separate accelerators)."""
        loaded = load_experts(experts, device, dtype, backend, ray_address=ray)
        self.pool = ExpertPool(loaded, parallel=parallel)
        self.gate: str | None = None  # the gate `generate` fuses with when no rule is named
        self.gate_options: dict[str, object] = {}  # its preset's options for rule dllg (power), unless given

    @classmethod
    def from_preset(
        cls,
        name: str,
        device: str | Sequence[str] | None = "auto",
        dtype: str | Sequence[str] | None = "auto",
        backend: str | Sequence[str] = "hf",
        ray: str | None = None,
    ) -> "Ensemble":
        """A preset's experts (`dllg models presets`), generating with its gate (and the options chosen for
        it, such as a sharpening power) unless told otherwise."""
        preset = get_preset(name)
        ensemble = cls(list(preset.experts), device, dtype, backend, ray)
        ensemble.gate = preset.gate
        ensemble.gate_options = dict(preset.options)
        return ensemble

    @property
    def names(self) -> list[str]:
        return self.pool.names

    def encode(self, prompt: Prompt, chat: bool = True) -> list[int]:
        """Token ids of a prompt: chat messages (or text as one user turn) through the chat template."""
        return encode_prompt(self.pool.tokenizer, prompt, chat)

    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        fusion: str | FusionRule | None = None,
        *,
        chat: bool = True,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        min_new_tokens: int = 0,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        speculate: str = "auto",
        draft_tokens: int = 4,
        **rule_options: object,
    ) -> list[Generation]:
        """One Generation (text, token ids, per-token expert weights) per prompt, in order. No `fusion`:
        rule dllg with the preset's gate (`from_preset`), else uniform."""
        prompts = _as_list(prompts)
        if batch_size < 1:
            raise DllgError(f"batch_size={batch_size}: it must be at least 1")
        rule = self._rule(fusion, rule_options)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=tuple(stop),
            speculate=speculate,
            draft_tokens=draft_tokens,
        )
        encoded = [self.encode(p, chat=chat) for p in prompts]  # type: ignore[arg-type]
        scored = (
            [encode_user_text(self.pool.tokenizer, p) for p in prompts]  # type: ignore[arg-type]
            if rule.needs_prompt_nll
            else None
        )
        results: list[Generation] = []
        for start in range(0, len(encoded), batch_size):
            window = slice(start, start + batch_size)
            results.extend(
                generate(self.pool, rule, encoded[window], config, scored[window] if scored else None)
            )
        return results

    def compare(
        self,
        prompts: Prompt | Sequence[Prompt],
        fusions: Sequence[str | FusionRule],
        *,
        chat: bool = True,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
    ) -> dict[str, list[Generation]]:
        """Each prompt continued greedily with every rule in `fusions` ({rule: generations, in prompt
        order}), the rules decoding together: one row while they choose the same token, forked where they
        differ, so their common prefixes cost the experts one step each. `dllg` fuses with the preset's gate;
        give a rule object for other options.

        >>> Ensemble.from_preset("world").compare("What is 2 + 3?", ["dllg", "uniform", "entropy"])"""
        prompts = _as_list(prompts)
        rules = [self._rule(fusion, {}) for fusion in fusions]
        names = [f if isinstance(f, str) else f.name for f in fusions]
        if len(set(names)) != len(names) or not names:
            raise DllgError(f"fusions {names}: name each rule once (give rule objects different names)")
        if batch_size < 1:
            raise DllgError(f"batch_size={batch_size}: it must be at least 1")
        config = GenerationConfig(max_new_tokens=max_new_tokens, stop=tuple(stop), speculate="none")
        encoded = [self.encode(p, chat=chat) for p in prompts]
        scored = (
            [encode_user_text(self.pool.tokenizer, p) for p in prompts]
            if any(rule.needs_prompt_nll for rule in rules)
            else None
        )
        finished = dict(generate_together(self.pool, rules, encoded, config, scored, max_rows=batch_size))
        return {name: [finished[i, r] for i in range(len(prompts))] for r, name in enumerate(names)}

    def _rule(self, fusion: str | FusionRule | None, options: dict) -> FusionRule:
        """The rule `fusion` names (none: dllg with the preset's gate, else uniform)."""
        if fusion is None:
            fusion = "dllg" if self.gate is not None else "uniform"
        if fusion == "dllg" and self.gate is not None:
            options = {**self.gate_options, "gate": self.gate, **options}
        if isinstance(fusion, FusionRule):
            if options:
                raise DllgError("rule options go to make_rule when fusion is given as a rule object")
            return fusion
        return make_rule(fusion, **options)

    def __repr__(self) -> str:
        parts = [f"{e.name} ({e.device}, {str(e.dtype).removeprefix('torch.')})" for e in self.pool.experts]
        return f"Ensemble({', '.join(parts)})"


def _as_list(prompts: Prompt | Sequence[Prompt]) -> list[Prompt]:
    """One prompt (text, or chat messages) or several, as a list."""
    if isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict)):
        return [prompts]  # type: ignore[list-item]
    return list(prompts)  # type: ignore[arg-type]
