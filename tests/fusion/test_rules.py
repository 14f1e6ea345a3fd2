"""Each heuristic rule against a hand computation on fixed logits, and the rules' option errors."""

import math

import pytest
import torch

from dllg.errors import DllgError
from dllg.fusion import RULES, FusionInput, PromptContext, make_rule

# Two experts, four tokens, one sequence.
LOGITS = torch.tensor([[[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 0.0, 0.0]]])
NAMES = ["a", "b"]


def fuse(rule, logits=LOGITS):
    rule.bind(NAMES)
    return rule.fuse(FusionInput(logits=logits, hidden=[torch.zeros(logits.shape[0], 3)] * logits.shape[1]))


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def entropy(values: list[float]) -> float:
    return -sum(p * math.log(p) for p in softmax(values))


def test_registry_has_every_rule():
    assert {"single", "static", "uniform", "entropy", "packllm", "majority", "unite"} <= set(RULES)


def test_static_sums_weighted_logits():
    out = fuse(make_rule("static", weights=[0.25, 0.75]))
    expected = [
        0.25 * a + 0.75 * b for a, b in zip(LOGITS[0, 0].tolist(), LOGITS[0, 1].tolist(), strict=True)
    ]
    torch.testing.assert_close(out.scores[0], torch.tensor(expected))
    torch.testing.assert_close(out.weights[0], torch.tensor([0.25, 0.75]))


def test_static_zero_weight_expert_is_not_run():
    rule = make_rule("static", weights=[0.0, 2.0])
    assert rule.bind(NAMES) == [1]


def test_uniform_averages_probabilities_by_default_and_logits_on_request():
    out = fuse(make_rule("uniform"))
    pa, pb = softmax(LOGITS[0, 0].tolist()), softmax(LOGITS[0, 1].tolist())
    torch.testing.assert_close(
        out.scores[0].exp(), torch.tensor([(x + y) / 2 for x, y in zip(pa, pb, strict=True)])
    )
    out = fuse(make_rule("uniform", space="logits"))
    torch.testing.assert_close(out.scores[0], LOGITS[0].mean(0))


def test_entropy_gives_the_more_certain_expert_more_weight():
    out = fuse(make_rule("entropy", tau=0.5))
    ha, hb = entropy(LOGITS[0, 0].tolist()), entropy(LOGITS[0, 1].tolist())
    expected = softmax([-ha / 0.5, -hb / 0.5])
    torch.testing.assert_close(out.weights[0], torch.tensor(expected))
    # Independent of the entropy helper above (a sign slip there would hide one in the rule): b puts 87% on
    # one token, a spreads out, so b is the more certain, and as tau shrinks it takes all the weight.
    assert out.weights[0, 1] > out.weights[0, 0]
    torch.testing.assert_close(fuse(make_rule("entropy", tau=0.01)).weights[0], torch.tensor([0.0, 1.0]))


def test_packllm_weights_from_prompt_loss():
    rule = make_rule("packllm", tau=2.0)
    rule.bind(NAMES)
    nll = torch.tensor([[1.0, 3.0], [2.0, 0.5]])
    rule.start(PromptContext(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), nll))
    logits = LOGITS.expand(2, -1, -1)
    out = rule.fuse(FusionInput(logits=logits, hidden=[torch.zeros(2, 3)] * 2))
    torch.testing.assert_close(out.weights[0], torch.tensor(softmax([-0.5, -1.5])))
    torch.testing.assert_close(out.weights[1], torch.tensor(softmax([-1.0, -0.25])))
    rule.keep_rows(torch.tensor([1]))  # the first sequence finished
    out = rule.fuse(FusionInput(logits=LOGITS, hidden=[torch.zeros(1, 3)] * 2))
    torch.testing.assert_close(out.weights[0], torch.tensor(softmax([-1.0, -0.25])))


def test_majority_counts_votes_and_breaks_ties_by_mean_probability():
    three = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 4.0, 0.0]]])
    rule = make_rule("majority")
    rule.bind(["a", "b", "c"])
    out = rule.fuse(FusionInput(logits=three, hidden=[torch.zeros(1, 2)] * 3))
    assert out.scores[0].argmax() == 1  # two votes beat one, though expert a is the most confident
    torch.testing.assert_close(out.weights[0], torch.tensor([0.0, 1.0, 1.0]))
    tie = fuse(make_rule("majority"))  # a votes 0, b votes 1: b's token has the larger mean probability
    pa, pb = softmax(LOGITS[0, 0].tolist()), softmax(LOGITS[0, 1].tolist())
    assert tie.scores[0].argmax() == (1 if pa[1] + pb[1] > pa[0] + pb[0] else 0)


def test_unite_renormalises_over_the_union_of_top_k():
    out = fuse(make_rule("unite", top_k=1))  # a's top-1 is token 0, b's is token 1: the union is {0, 1}
    pa = softmax(LOGITS[0, 0, :2].tolist())
    pb = softmax(LOGITS[0, 1, :2].tolist())
    expected = [(pa[0] + pb[0]) / 2, (pa[1] + pb[1]) / 2, 0.0, 0.0]
    torch.testing.assert_close(out.scores[0].exp(), torch.tensor(expected))


def test_rules_handle_several_positions_per_sequence():
    stacked = torch.stack([LOGITS, LOGITS.flip(-1)], dim=1)  # (B=1, T=2, K=2, V=4)
    for name in ["uniform", "entropy", "majority", "unite"]:
        rule = make_rule(name)
        rule.bind(NAMES)
        out = rule.fuse(FusionInput(logits=stacked, hidden=[torch.zeros(1, 2, 3)] * 2))
        assert out.scores.shape == (1, 2, 4) and out.weights.shape == (1, 2, 2)
        # Each position must be fused on its own logits, the second (flipped) one included.
        for position, logits in enumerate([LOGITS, LOGITS.flip(-1)]):
            alone = fuse(make_rule(name), logits)
            torch.testing.assert_close(out.scores[:, position], alone.scores)
            torch.testing.assert_close(out.weights[:, position], alone.weights)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("nope", {}, "unknown fusion rule 'nope'"),
        ("uniform", {"tau": 1.0}, "does not take tau"),
        ("static", {"weights": [1.0]}, "got 1 weights for 2 experts"),
        ("static", {"weights": [1.0, -0.5]}, "negative weight"),
        ("static", {"weights": [1.0, float("nan")]}, "non-finite weight"),
        ("static", {"weights": [0.0, 0.0]}, "all-zero weights"),
        ("entropy", {"tau": 0.0}, "tau must be a positive number"),
        ("unite", {"top_k": 0}, "top_k must be a positive integer"),
        ("uniform", {"space": "bits"}, "unknown space 'bits'"),
        ("single", {"expert": "c"}, "no expert named 'c'"),
        ("single", {"expert": 5}, "out of range"),
    ],
)
def test_bad_rule_options_give_clear_errors(name, options, message):
    with pytest.raises(DllgError, match=message):
        make_rule(name, **options).bind(NAMES)
