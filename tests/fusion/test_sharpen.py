"""The gate's weights sharpened by a power (`dllg --power`, method `dllg-sharp:POWER:PATH`): hand-computed
values, the decode loop fusing with them, and the errors."""

import math
import re

import pytest
import torch

from dllg.decode import GenerationConfig, generate
from dllg.errors import DllgError
from dllg.fusion import make_rule
from dllg.fusion.learned_gate import sharpen
from dllg.pipeline.methods import make_method
from dllg.tiny import random_gate, tiny_pool


def test_sharpening_raises_the_ratio_of_the_weights_to_the_power_and_keeps_their_sum():
    weights = torch.tensor([[0.2, 0.6], [0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    torch.testing.assert_close(sharpen(weights, 1.0), weights)
    # 0.2^2 : 0.6^2 = 1 : 9 of the sum 0.8; 0.9^2 : 0.1^2 = 81 : 1 of the sum 1.0
    expected = torch.tensor([[0.08, 0.72], [0.5, 0.5], [0.81 / 0.82, 0.01 / 0.82]], dtype=torch.float64)
    torch.testing.assert_close(sharpen(weights, 2.0), expected)
    hard = torch.tensor([[0, 0.8], [0.5, 0.5], [1.0, 0]], dtype=torch.float64)  # tied leaders share
    torch.testing.assert_close(sharpen(weights, math.inf), hard)
    torch.testing.assert_close(sharpen(weights, 1000.0), sharpen(weights, math.inf))  # no underflow to NaN
    flat = sharpen(weights, 0.5)  # below 1: towards equal weights
    assert (flat[:, 0] / flat[:, 1] - (weights[:, 0] / weights[:, 1]).sqrt()).abs().max() < 1e-12
    torch.testing.assert_close(flat.sum(-1), weights.sum(-1))


def constant_gate(pool, scores: list[float]):
    """An MLP gate whose weights are sigmoid(scores) at every token, whatever the hidden states."""
    gate = random_gate(pool.names, [e.hidden_size for e in pool.experts], "mlp")
    with torch.no_grad():
        gate.head[-1].weight.zero_()
        gate.head[-1].bias.copy_(torch.tensor(scores))
    return gate


@pytest.mark.parametrize("power", [1.0, 3.0, math.inf])
def test_the_loop_fuses_with_the_sharpened_weights(power):
    """A gate with constant weights w, sharpened, decodes as rule static with sharpen(w, power): the tokens
    and the recorded weights (float64, so exactly)."""
    pool = tiny_pool(dtype="float64", device="cpu")
    gate = constant_gate(pool, [-0.4, 0.3])
    prompts = [pool.tokenizer(t)["input_ids"] for t in ("Hello world", "def add(a, b):", "x = 42")]
    config = GenerationConfig(max_new_tokens=12)
    weights = sharpen(torch.sigmoid(torch.tensor([[-0.4, 0.3]], dtype=torch.float64)), power)[0]
    sharp = generate(pool, make_rule("dllg", gate=gate, power=power), prompts, config)
    static = generate(pool, make_rule("static", weights=weights.tolist()), prompts, config)
    for a, b in zip(sharp, static, strict=True):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(a.weights.double(), weights.expand(len(a.token_ids), 2).float().double())
    if power == 3.0:  # the power changed the answers: a sharpened gate is not the plain one
        plain = generate(pool, make_rule("dllg", gate=gate), prompts, config)
        assert [g.token_ids for g in plain] != [g.token_ids for g in sharp]


def test_the_method_and_its_errors(tmp_path):
    method = make_method("dllg-sharp:4:runs/gate")
    assert method.options == {"gate": "runs/gate", "power": 4.0}
    assert make_method("dllg-sharp:inf:runs/gate").options["power"] == math.inf
    for name in ("dllg-sharp:four:runs/gate", "dllg-sharp:4", "dllg-sharp:4:"):
        with pytest.raises(DllgError, match=r"write dllg-sharp:POWER:PATH, e\.g\. dllg-sharp:4:runs/gate"):
            make_method(name)
    for power in ("0", "-2", "nan"):
        with pytest.raises(DllgError, match=re.escape(f"power={float(power)}: it must be > 0")):
            make_method(f"dllg-sharp:{power}:runs/gate")
    with pytest.raises(DllgError, match=r"power=0\.0: it must be > 0"):
        make_rule("dllg", gate=tmp_path / "no-gate", power=0)  # checked before the gate is loaded
    with pytest.raises(DllgError, match="fusion rule 'uniform' does not take power"):
        make_rule("uniform", power=2.0)
