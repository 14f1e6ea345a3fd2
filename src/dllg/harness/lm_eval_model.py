"""The lm-eval model `dllg`: a fused ensemble behind lm-evaluation-harness's LM interface.

Generation goes through the one decode loop; log-likelihoods are teacher-forced fused log-probabilities
(`dllg.harness.scoring`). Build it from a run config (`config=RUN.yaml`: its experts; `fusion=dllg` without a
gate takes the config's trained gate) or from `experts=A+B` plus `fusion=RULE` or `gate=FOLDER`. In an
lm-eval model_args string commas separate the arguments, so lists inside one value use `+`:
`experts=tiny:0+tiny:1,fusion=static,weights=0.3+0.7`.
"""

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from dllg.config import RunConfig, load_config, rule_and_gate
from dllg.decode import GenerationConfig, generate
from dllg.ensemble import Ensemble
from dllg.errors import DllgError
from dllg.experts import Expert, ExpertPool
from dllg.fusion import FusionRule, make_rule
from dllg.fusion.base import parse_weights
from dllg.harness.scoring import ContinuationScore, score_continuations
from dllg.pipeline.run import load_pool

T = TypeVar("T")
LIST_SEPARATOR = "+"  # lists inside one model_args value: commas already separate the arguments
DEFAULT_MAX_LENGTH = 2048  # tokens an expert reads at once; the Expert interface states no context size
DEFAULT_SEED = 1234  # lm-eval's own default seed, so that sampled generations repeat
GENERATION_KEYS = {"until", "max_gen_toks", "max_new_tokens", "do_sample", "temperature", "top_p", "seed"}


def split_list(value: object) -> list:
    """A model_args list: given as a list, or as one string whose items are joined by `+`."""
    if isinstance(value, str):
        return [item for item in value.split(LIST_SEPARATOR) if item]
    if isinstance(value, Sequence):
        return list(value)
    return [value]


def one_or_per_expert(value: object) -> object:
    """A device/dtype/backend for every expert ("cpu"), or one per expert ("cpu+cuda:0")."""
    items = split_list(value) if isinstance(value, str) else value
    return items[0] if isinstance(items, list) and len(items) == 1 else items


MODEL_ARGS_SPELLING = {
    "gate": "gate=",
    "fusion": "fusion=",
    "fusion_dllg": "fusion=dllg",
    "add_gate": "gate=FOLDER",
    "config": "config=RUN.yaml",
}


def gate_folder(fusion: str | None, gate: str | None, run: RunConfig | None) -> str | None:
    """The gate rule dllg reads: `gate`, else with a run config the gate `dllg train` writes for it."""
    return rule_and_gate(fusion, gate, run, MODEL_ARGS_SPELLING)[1]


def build_rule(fusion: str | None, gate: str | None, options: dict[str, object]) -> FusionRule:
    """The fusion rule the arguments name (`gate`: rule dllg with that gate); default uniform."""
    options = {k: v for k, v in options.items() if v is not None}
    if gate is not None:
        fusion, options["gate"] = "dllg", gate
    if "weights" in options:
        options["weights"] = parse_weights(" ".join(map(str, split_list(options["weights"]))), "0.3+0.7")
    return make_rule(fusion or "uniform", **options)


def load_experts_pool(
    run: RunConfig | None, experts: object, device: object, dtype: object, backend: object
) -> ExpertPool:
    """The experts of a run config, or the experts named one by one."""
    if run is not None:
        return load_pool(run)
    ensemble = Ensemble(
        split_list(experts),
        device=one_or_per_expert(device),  # type: ignore[arg-type]
        dtype=one_or_per_expert(dtype),  # type: ignore[arg-type]
        backend=one_or_per_expert(backend),  # type: ignore[arg-type]
    )
    return ensemble.pool


def batches(items: list[T], size: int, length: Callable[[T], int]) -> Iterator[list[int]]:
    """Indices of `items`, longest first, in batches of `size`: similar lengths pad little."""
    order = sorted(range(len(items)), key=lambda i: -length(items[i]))
    for start in range(0, len(order), size):
        yield order[start : start + size]


def generation_config(gen_kwargs: dict, max_gen_toks: int, seed: int, speculate: str) -> GenerationConfig:
    """lm-eval's generation kwargs as our settings: do_sample=False is greedy whatever the temperature;
    a temperature above 0 samples unless do_sample says otherwise; do_sample alone samples at 1."""
    unknown = sorted(set(gen_kwargs) - GENERATION_KEYS)
    if unknown:
        raise DllgError(
            f"generation kwargs {', '.join(unknown)} are not supported by model dllg: it takes "
            f"{', '.join(sorted(GENERATION_KEYS))}"
        )
    until = gen_kwargs.get("until") or []
    stop = (until,) if isinstance(until, str) else tuple(until)
    do_sample = gen_kwargs.get("do_sample")
    temperature = float(gen_kwargs.get("temperature", 1.0 if do_sample else 0.0))
    if do_sample is False:
        temperature = 0.0
    return GenerationConfig(
        max_new_tokens=int(gen_kwargs.get("max_gen_toks", gen_kwargs.get("max_new_tokens", max_gen_toks))),
        temperature=temperature,
        top_p=float(gen_kwargs.get("top_p", 1.0)),
        seed=int(gen_kwargs.get("seed", seed)),
        stop=stop,
        speculate=speculate,
    )


@register_model("dllg")
class DllgLM(TemplateLM):
    """K experts fused by a rule, as one lm-eval model."""

    def __init__(
        self,
        config: str | None = None,
        experts: str | Sequence[str | Expert] | None = None,
        fusion: str | None = None,
        gate: str | None = None,
        weights: object = None,
        expert: str | int | None = None,
        tau: float | None = None,
        top_k: int | None = None,
        space: str | None = None,
        batch_size: int | str = 8,
        max_batch_size: int | None = None,
        device: str | Sequence[str] = "auto",
        dtype: str | Sequence[str] = "auto",
        backend: str | Sequence[str] = "hf",
        max_length: int = DEFAULT_MAX_LENGTH,
        max_gen_toks: int = 256,
        seed: int = DEFAULT_SEED,
        speculate: str = "none",
    ) -> None:
        super().__init__()
        del max_batch_size  # lm-eval passes it along with batch_size; there is no automatic batch size
        if not str(batch_size).isdigit() or int(batch_size) < 1:
            raise DllgError(f"batch_size={batch_size}: give a whole number of at least 1 (no 'auto')")
        if int(max_length) < 2:
            raise DllgError(f"max_length={max_length}: an expert must read at least 2 tokens at once")
        if (config is None) == (experts is None):
            raise DllgError("give the model either config=RUN.yaml or experts=A+B, not both nor neither")
        run = load_config(config) if config is not None else None
        options = {"weights": weights, "expert": expert, "tau": tau, "top_k": top_k, "space": space}
        gate = gate_folder(fusion, gate, run)
        self.rule = build_rule(fusion, gate, options)  # a bad rule or gate fails before experts load
        self.pool = load_experts_pool(run, experts, device, dtype, backend)
        self.rule.bind(self.pool.names)  # a bad expert name, weight count or gate fails now, not mid-run
        self.tokenizer = self.pool.tokenizer
        self.batch_size = int(batch_size)
        self._max_length = int(max_length)
        self.max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)
        self.speculate = speculate
        self.model_info = {
            "experts": self.pool.names,
            "fusion": self.rule.name,
            "gate": gate,
            "fusion_options": {k: v for k, v in options.items() if v is not None},
        }

    # --- what lm-eval asks of a model besides the three request types ---

    @property
    def eot_token_id(self) -> int:
        return (
            self.pool.pad_token_id() if self.tokenizer.eos_token_id is None else self.tokenizer.eos_token_id
        )

    @property
    def prefix_token_id(self) -> int:
        """What an empty context becomes: BOS where the tokenizer has one, else EOS (as in lm-eval HFLM)."""
        bos = self.tokenizer.bos_token_id
        return self.eot_token_id if bos is None else bos

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def get_model_info(self) -> dict:
        return dict(self.model_info)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """The tokenizer's own special tokens unless told otherwise, and no second BOS for a string that
        starts with it (a chat-templated prompt)."""
        if add_special_tokens is None:
            bos = self.tokenizer.bos_token
            add_special_tokens = not (bos and string.startswith(bos))
        return list(self.tokenizer(string, add_special_tokens=add_special_tokens)["input_ids"])

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        if not self.tokenizer.chat_template:
            raise DllgError("the experts' tokenizer has no chat template: run without apply_chat_template")
        return self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    # --- log-likelihoods ---

    def _truncate(self, context: list[int], continuation: list[int]) -> list[int]:
        """The context's last tokens, so that context + continuation - 1 tokens fit max_length."""
        room = self.max_length + 1 - len(continuation)
        if room < 1:
            raise DllgError(
                f"a continuation of {len(continuation)} tokens does not fit max_length={self.max_length}: "
                "raise max_length"
            )
        return context[-room:]

    def _score(
        self, pairs: list[tuple[list[int], list[int]]], desc: str, quiet: bool
    ) -> list[ContinuationScore]:
        """Every (context, continuation) pair scored, in batches of similar length; results in order."""
        results: list[ContinuationScore | None] = [None] * len(pairs)
        progress = tqdm(total=len(pairs), desc=desc, disable=quiet)
        for index in batches(pairs, self.batch_size, lambda p: len(p[0]) + len(p[1])):
            contexts = [self._truncate(*pairs[i]) for i in index]
            continuations = [pairs[i][1] for i in index]
            for i, score in zip(
                index, score_continuations(self.pool, self.rule, contexts, continuations), strict=True
            ):
                results[i] = score
            progress.update(len(index))
        progress.close()
        return results  # type: ignore[return-value]

    def _loglikelihood_tokens(
        self,
        requests: list[tuple[tuple[str, str], list[int], list[int]]],
        disable_tqdm: bool = False,
        **kwargs: Any,
    ) -> list[tuple[float, bool]]:
        for (context, continuation), _, continuation_ids in requests:
            if not continuation_ids:
                raise DllgError(
                    f"the continuation {continuation!r} of {context[-40:]!r} encodes to no tokens"
                )
        scores = self._score([(c, t) for _, c, t in requests], "dllg loglikelihood", disable_tqdm)
        out = []
        for (strings, _, _), score in zip(requests, scores, strict=True):
            answer = (score.logprob, score.greedy)
            self.cache_hook.add_partial("loglikelihood", strings, answer)
            out.append(answer)
        return out

    def rolling_windows(self, text: str) -> list[tuple[list[int], list[int]]]:
        """lm-eval's disjoint rolling windows over the text: every token is predicted exactly once."""
        tokens = self.tok_encode(text, add_special_tokens=False)
        windows = get_rolling_token_windows(
            token_list=tokens, prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1
        )
        return [make_disjoint_window(window) for window in windows]

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        owners, pairs = [], []
        for number, request in enumerate(requests):
            for window in self.rolling_windows(request.args[0]):
                owners.append(number)
                pairs.append(window)
        totals = [0.0] * len(requests)
        for owner, score in zip(
            owners, self._score(pairs, "dllg rolling loglikelihood", disable_tqdm), strict=True
        ):
            totals[owner] += score.logprob
        for request, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", (request.args[0],), total)
        return totals

    # --- generation ---

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        """Through the one decode loop, batched among requests with the same generation settings."""
        groups: dict[str, list[int]] = {}
        for number, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(number)
        texts: list[str] = [""] * len(requests)
        progress = tqdm(total=len(requests), desc="dllg generate_until", disable=disable_tqdm)
        for members in groups.values():
            gen_kwargs = dict(requests[members[0]].args[1])
            config = generation_config(gen_kwargs, self.max_gen_toks, self.seed, self.speculate)
            room = self.max_length - config.max_new_tokens
            if room < 1:
                raise DllgError(
                    f"max_gen_toks={config.max_new_tokens} leaves no room for a prompt in "
                    f"max_length={self.max_length}: raise max_length"
                )
            # an empty context starts from the prefix token, as an empty log-likelihood context does
            prompts = [
                (self.tok_encode(requests[i].args[0]) or [self.prefix_token_id])[-room:] for i in members
            ]
            for index in batches(prompts, self.batch_size, len):
                generations = generate(self.pool, self.rule, [prompts[i] for i in index], config)
                for i, generation in zip(index, generations, strict=True):
                    request = requests[members[i]]
                    texts[members[i]] = generation.text
                    self.cache_hook.add_partial("generate_until", request.args[:2], generation.text)
                progress.update(len(index))
        progress.close()
        return texts
