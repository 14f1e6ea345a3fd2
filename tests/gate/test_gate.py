"""Gate variants: cached weights equal whole-sequence weights; checkpoints; the gate inside the loop."""

import pytest
import torch
from safetensors.torch import save_file

from dllg.decode import GenerationConfig, generate
from dllg.errors import DllgError
from dllg.fusion import make_rule
from dllg.gate import GATES, Gate, GateConfig, build_gate, load_gate, save_gate
from dllg.pipeline.teacher_forcing import teacher_forced_states
from dllg.tiny import random_gate, tiny_model, tiny_pool

VARIANTS = ["mlp", "cross_attn", "aux_lm", "lowrank_aux_lm"]
SIZES = [32, 48]


@pytest.fixture(scope="module")
def aux_folder(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("aux")
    tiny_model(7, vocab_rows=16, hidden=32, layers=3).save_pretrained(folder)
    return str(folder)


def small_gate(variant: str, names: list[str], sizes: list[int], aux_folder: str, **overrides) -> Gate:
    """A small gate whose trained parameters are moved off their zero init, so outputs vary by position."""
    return random_gate(names, sizes, variant, aux_model=aux_folder, scale=0.3, **overrides)


def make_gate(variant: str, aux_folder: str, **overrides) -> Gate:
    return small_gate(variant, ["a", "b"], SIZES, aux_folder, **overrides)


def random_states(batch: int, length: int) -> list[torch.Tensor]:
    torch.manual_seed(1)
    return [torch.randn(batch, length, d) * 5 for d in SIZES]


def test_registry_has_the_four_variants():
    assert set(VARIANTS) <= set(GATES)


@pytest.mark.parametrize("variant", VARIANTS)
def test_incremental_weights_equal_whole_sequence_weights(variant, aux_folder):
    gate = make_gate(variant, aux_folder)
    states = random_states(3, 7)
    with torch.no_grad():
        whole = gate(states)
        state = gate.new_state(3)
        pieces = [gate.step([h[:, :1] for h in states], state), gate.step([h[:, 1:4] for h in states], state)]
        pieces += [gate.step([h[:, t : t + 1] for h in states], state) for t in range(4, 7)]
    assert whole.shape == (3, 7, 2)
    # Weights must move along each sequence: a gate that ignored its input would pass the equality below.
    assert (whole.std(dim=1) > 1e-3).all()
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=1e-4, atol=1e-5)
    if variant.endswith("aux_lm"):  # the trajectory matters: a different first state changes later weights
        changed = [h.clone() for h in states]
        changed[0][:, 0] = (
            torch.randn_like(changed[0][:, 0]) * 5
        )  # (a constant shift would be normalised away)
        assert not torch.allclose(gate(changed)[:, 3:], whole[:, 3:])


# Only the stateful variants: a per-token gate has no cache whose rows could be dropped wrongly.
@pytest.mark.parametrize("variant", ["aux_lm", "lowrank_aux_lm"])
def test_dropping_rows_keeps_the_others_cache(variant, aux_folder):
    gate = make_gate(variant, aux_folder)
    states = random_states(3, 5)
    with torch.no_grad():
        whole = gate(states)
        state = gate.new_state(3)
        first = gate.step([h[:, :2] for h in states], state)
        state = gate.select_rows(state, torch.tensor([0, 2]))
        rest = gate.step([h[[0, 2], 2:] for h in states], state)
    torch.testing.assert_close(first, whole[:, :2], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rest, whole[[0, 2], 2:], rtol=1e-4, atol=1e-5)


def test_padding_after_a_sequence_does_not_change_its_weights(aux_folder):
    gate = make_gate("lowrank_aux_lm", aux_folder)
    states = random_states(2, 6)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    with torch.no_grad():
        padded = gate(states, mask)
        alone = gate([h[1:, :4] for h in states])
    torch.testing.assert_close(padded[1:, :4], alone, rtol=1e-4, atol=1e-5)


def test_aux_lm_is_frozen_but_lora_trains(aux_folder):
    gate = make_gate("lowrank_aux_lm", aux_folder, aux_layers=2)
    trainable = {n for n, p in gate.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any(n.startswith("project") for n in trainable)
    assert not any("lora_" not in n and n.startswith("aux.") for n in trainable)
    assert len(gate.aux.layers) == 2


def test_checkpoint_round_trip_and_corruption(aux_folder, tmp_path):
    gate = make_gate("lowrank_aux_lm", aux_folder)
    save_gate(gate, tmp_path / "ckpt")
    states = random_states(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(load_gate(tmp_path / "ckpt")(states), gate(states))
    (tmp_path / "ckpt" / "gate.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DllgError, match="corrupt"):
        load_gate(tmp_path / "ckpt")
    tensors = {k: torch.full_like(v, float("nan")) for k, v in gate.trainable_state_dict().items()}
    save_file(tensors, str(tmp_path / "ckpt" / "gate.safetensors"))
    with pytest.raises(DllgError, match="NaN"):
        load_gate(tmp_path / "ckpt")
    with pytest.raises(DllgError, match=r"gate\.json is missing"):
        load_gate(tmp_path)


def test_bad_gate_config_values():
    with pytest.raises(ValueError, match="lora_rank"):
        GateConfig(lora_rank=0)
    with pytest.raises(ValueError, match="variant"):
        GateConfig(variant="transformer")
    with pytest.raises(ValueError, match="one entry per expert"):
        GateConfig(expert_names=["a"], hidden_sizes=[8, 8])
    with pytest.raises(DllgError, match="aux_layers=9"):
        build_gate(
            GateConfig(expert_names=["a"], hidden_sizes=[8], aux_layers=9, aux_model=None), tiny_model(1, 16)
        )


@pytest.mark.parametrize("variant", ["mlp", "lowrank_aux_lm"])
def test_gate_rule_weights_equal_teacher_forced_weights(variant, aux_folder):
    """The weights the loop used at each step are what the gate gives on the finished sequence read at once:
    what training sees (teacher forcing) is what decoding does."""
    pool = tiny_pool(dtype="fp32", device="cpu")
    gate = small_gate(variant, pool.names, [e.hidden_size for e in pool.experts], aux_folder)
    prompts = [pool.tokenizer(t)["input_ids"] for t in ["def add(a, b):", "Hello there, how"]]
    out = generate(
        pool, make_rule("dllg", gate=gate), prompts, GenerationConfig(max_new_tokens=6, min_new_tokens=6)
    )
    states = teacher_forced_states(pool, prompts, [g.token_ids for g in out])
    for example, generation in zip(states, out, strict=True):
        with torch.no_grad():
            expected = gate([h.unsqueeze(0) for h in example])[0]
        torch.testing.assert_close(generation.weights, expected, rtol=1e-3, atol=1e-4)


def test_gate_rule_refuses_other_experts(aux_folder):
    pool = tiny_pool(dtype="fp32", device="cpu")
    gate = build_gate(GateConfig(variant="mlp", expert_names=["x", "y"], hidden_sizes=[32, 64]))
    with pytest.raises(DllgError, match="trained for experts"):
        generate(pool, make_rule("dllg", gate=gate), [[5, 6]], GenerationConfig(max_new_tokens=2))
