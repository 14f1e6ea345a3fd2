"""A NaN or +inf in the fused scores is an error naming the expert (or rule) and the step, never a choice."""

import pytest
import torch

from dllg.decode import GenerationConfig, generate
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.fusion import FusionInput, FusionOutput, FusionRule, make_rule
from dllg.tiny import tiny_expert, tiny_tokenizer

PROMPTS = [[5, 6, 7], [8, 9]]


@pytest.fixture
def pool() -> ExpertPool:
    tok = tiny_tokenizer()
    return ExpertPool([tiny_expert(0, name="good", tokenizer=tok), tiny_expert(1, name="bad", tokenizer=tok)])


def poison_token(pool: ExpertPool, expert: int, token: int, value: float) -> None:
    with torch.no_grad():
        pool[expert].model.get_output_embeddings().weight[token] = value


@pytest.mark.parametrize("rule", ["uniform", "entropy", "static", "majority", "unite", "packllm"])
def test_nan_logits_of_one_expert_are_an_error_naming_it(pool, rule):
    poison_token(pool, 1, 11, float("nan"))
    options = {"weights": [0.5, 0.5]} if rule == "static" else {}
    with pytest.raises(DllgError, match=r"expert 'bad' gave NaN/inf logits at step 0"):
        generate(pool, make_rule(rule, **options), PROMPTS, GenerationConfig(max_new_tokens=4))


def test_positive_infinity_is_refused_too(pool):
    # +inf logits would win every argmax in logit space; a (huge * hidden) row gives +inf or -inf by sign.
    poison_token(pool, 1, 11, float("inf"))
    with pytest.raises(DllgError, match="expert 'bad' gave NaN/inf logits"):
        generate(pool, make_rule("uniform", space="logits"), PROMPTS, GenerationConfig(max_new_tokens=4))


def test_the_same_pool_decodes_when_the_poisoned_expert_is_not_run(pool):
    config = GenerationConfig(max_new_tokens=4)
    before = generate(pool, make_rule("single", expert="good"), PROMPTS, config)
    poison_token(pool, 1, 11, float("nan"))
    out = generate(pool, make_rule("single", expert="good"), PROMPTS, config)
    # The poisoned expert must leave no trace: same tokens as before, and it gets no weight.
    assert [g.token_ids for g in out] == [g.token_ids for g in before]
    assert all((g.weights[:, 1] == 0).all() and (g.weights[:, 0] == 1).all() for g in out)


class _NanAtStep(FusionRule):
    """Finite expert logits in, NaN scores out from the given step on: a broken rule."""

    name = "nan-at-step"

    def __init__(self, step: int) -> None:
        self.step, self.calls = step, 0

    def fuse(self, inputs: FusionInput) -> FusionOutput:
        scores = inputs.logits.mean(-2)
        if self.calls >= self.step:
            scores = scores.clone()
            scores[..., 3] = float("nan")
        self.calls += 1
        return FusionOutput(scores=scores, weights=torch.ones(inputs.logits.shape[:-1]))


def test_nan_scores_from_finite_logits_name_the_rule_and_the_step(pool):
    config = GenerationConfig(max_new_tokens=6, min_new_tokens=6)
    with pytest.raises(DllgError, match=r"fusion rule 'nan-at-step' produced non-finite scores .* at step 2"):
        generate(pool, _NanAtStep(2), PROMPTS, config)
