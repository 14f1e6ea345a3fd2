"""Presets: one name for a set of experts and the gate trained for them, the same as naming both, in
`dllg generate`, `dllg serve`, `dllg lm-eval` and `Ensemble.from_preset`."""

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dllg.cli.common import expand_multi_value_options
from dllg.cli.lm_eval import model_args
from dllg.cli.main import app
from dllg.cli.serve import pool_and_rule
from dllg.ensemble import Ensemble
from dllg.errors import DllgError
from dllg.presets import PRESETS, Preset, choose_experts, get_preset, register_preset

runner = CliRunner()
CONFIG = Path(__file__).parents[1] / "configs" / "tiny.yaml"
PROMPT = "What is 12 + 7?"


def invoke(args: list[str]):
    return runner.invoke(app, expand_multi_value_options(args))


def answer_and_weights(output: str) -> str:
    """What generate printed from the weights table on (loading progress differs from run to run)."""
    return output[output.index("expert weights per token") :]


def test_the_world_preset_is_its_experts_and_gate():
    world = get_preset("world")
    assert world.experts == ("world:arith", "world:code") and world.gate == "world:gate"
    assert choose_experts(None, "world", None, None) == choose_experts(
        ["world:arith", "world:code"], None, "dllg", "world:gate"
    )


def test_every_presets_gate_was_trained_for_its_experts_in_order():
    """A shipped gate read by its preset must fit: a gate for other experts (or another order) is a broken
    preset, caught here rather than by a user's first `--preset` run."""
    from dllg.gate.checkpoint import read_gate_config
    from dllg.plugins import load_plugins

    load_plugins()
    assert PRESETS
    for preset in PRESETS.values():
        config, _ = read_gate_config(preset.gate)
        assert tuple(config.expert_names) == preset.experts, preset.name


def test_another_rule_replaces_the_presets_gate():
    choice = choose_experts(None, "world", "uniform", None)
    assert choice.experts == ["world:arith", "world:code"]
    assert choice.fusion == "uniform" and choice.gate is None


@pytest.mark.parametrize(
    ("experts", "preset", "gate", "config", "message"),
    [
        (None, None, None, None, "give --config RUN.yaml or --experts A B or --preset NAME"),
        (["a", "b"], "world", None, None, "name the experts once"),
        (None, "world", None, CONFIG, "name the experts once"),
        (None, "world", "my-gate", None, "--preset world brings its gate: drop --gate"),
        (None, "no-such", None, None, "no preset called 'no-such': the presets are qwen-coder-duo, world"),
    ],
)
def test_naming_the_experts_twice_or_not_at_all_is_refused(experts, preset, gate, config, message):
    with pytest.raises(DllgError, match=message):
        choose_experts(experts, preset, None, gate, config, has_config=True)


def test_a_command_without_config_does_not_offer_one():
    with pytest.raises(DllgError, match=r"give --experts A B or --preset NAME \(one of them\)"):
        choose_experts(None, None, None, None)


def test_registering_a_second_preset_under_a_taken_name_fails():
    taken = Preset("world", "another", ("tiny:0", "tiny:1"), "elsewhere")
    with pytest.raises(DllgError, match="two presets are registered as 'world'"):
        register_preset(taken)
    assert PRESETS["world"].gate == "world:gate"
    with pytest.raises(DllgError, match="a preset fuses 2 or more"):
        register_preset(Preset("lonely", "one expert", ("tiny:0",), "g"))
    assert "lonely" not in PRESETS


def test_generate_with_the_preset_equals_naming_experts_and_gate():
    shown = ["-n", "12", "--show-weights", PROMPT]
    by_preset = invoke(["generate", "--preset", "world", *shown])
    by_names = invoke(["generate", "--experts", "world:arith", "world:code", "--gate", "world:gate", *shown])
    assert by_preset.exit_code == 0, by_preset.output
    assert answer_and_weights(by_preset.output) == answer_and_weights(by_names.output)
    assert "mean weights: world:arith=" in by_preset.output


def test_generate_with_the_preset_and_experts_is_a_one_line_error():
    result = invoke(["generate", "--preset", "world", "--experts", "tiny:0", "tiny:1", "--", PROMPT])
    assert result.exit_code == 1 and "name the experts once" in result.output
    assert "Traceback" not in result.output


def test_ensemble_from_preset_fuses_with_its_gate_unless_told_otherwise():
    ensemble = Ensemble.from_preset("world", device="cpu", dtype="fp32")
    gated = ensemble.generate(PROMPT, max_new_tokens=8)[0]
    explicit = ensemble.generate(PROMPT, "dllg", gate="world:gate", max_new_tokens=8)[0]
    assert gated.token_ids == explicit.token_ids
    assert torch.equal(gated.weights, explicit.weights)
    uniform = ensemble.generate(PROMPT, "uniform", max_new_tokens=8)[0]
    assert torch.allclose(uniform.weights, torch.full_like(uniform.weights, 0.5))
    assert not torch.allclose(gated.weights, torch.full_like(gated.weights, 0.5))


def test_ensemble_compare_gives_each_rule_its_own_answers():
    ensemble = Ensemble.from_preset("world", device="cpu", dtype="fp32")
    prompts = [PROMPT, "What is 3 * 4?"]
    compared = ensemble.compare(prompts, ["dllg", "uniform", "packllm"], max_new_tokens=12)
    assert list(compared) == ["dllg", "uniform", "packllm"]
    for name, answers in compared.items():
        alone = ensemble.generate(prompts, name, max_new_tokens=12, speculate="none")
        assert [a.token_ids for a in answers] == [a.token_ids for a in alone], name
        assert all(
            torch.allclose(a.weights, b.weights, atol=1e-5) for a, b in zip(answers, alone, strict=True)
        )
    with pytest.raises(DllgError, match="name each rule once"):
        ensemble.compare(PROMPT, ["uniform", "uniform"])


def test_serve_and_lm_eval_take_the_preset():
    pool, rule = pool_and_rule(None, None, None, None, {}, "cpu", "fp32", "hf", preset="world")
    assert pool.names == ["world:arith", "world:code"] and rule.name == "dllg"
    args = model_args(None, None, None, None, {}, "cpu", "fp32", "hf", None, preset="world")
    assert args["experts"] == ["world:arith", "world:code"]
    assert args["fusion"] == "dllg" and args["gate"] == "world:gate"


def test_models_presets_lists_them():
    result = invoke(["models", "presets"])
    assert result.exit_code == 0 and "world:gate" in result.output


def test_a_shipped_folder_is_a_preset_of_its_gate_and_a_broken_one_a_clear_error(tmp_path):
    """dllg.shipped registers each folder holding preset.json + a gate checkpoint as a preset by its name."""
    import json

    from dllg.gate.checkpoint import load_gate, save_gate
    from dllg.shipped import read_presets
    from dllg.tiny import random_gate

    assert read_presets(tmp_path) == []  # no folder, no preset
    folder = tmp_path / "tiny-duo"
    save_gate(random_gate(["tiny:0", "tiny:1"], [64, 64]), folder)
    meta = {
        "description": "two tiny experts",
        "experts": ["tiny:0", "tiny:1"],
        "fetch": [],
        "options": {"power": 2},
    }
    (folder / "preset.json").write_text(json.dumps(meta))
    (tmp_path / "not-a-preset").mkdir()  # a folder without preset.json is skipped
    (preset,) = read_presets(tmp_path)
    assert preset == Preset(
        "tiny-duo", "two tiny experts", ("tiny:0", "tiny:1"), str(folder), (), {"power": 2}
    )
    assert load_gate(preset.gate).config.expert_names == ["tiny:0", "tiny:1"]
    (folder / "preset.json").write_text(json.dumps({"experts": ["tiny:0", "tiny:1"]}))
    with pytest.raises(DllgError, match=r"preset\.json is corrupt .*reinstall dllg"):
        read_presets(tmp_path)


@pytest.fixture
def sharp_world():
    """The world's experts and gate, with the gate's weights sharpened to power 4 by the preset."""
    preset = register_preset(
        Preset("world-sharp", "sharpened", get_preset("world").experts, "world:gate", (), {"power": 4})
    )
    yield preset
    PRESETS.pop(preset.name)


def test_a_presets_options_reach_its_gate_and_a_flag_overrides_them(sharp_world):
    assert choose_experts(None, "world-sharp", None, None).options == {"power": 4}
    # another rule replaces the gate, and its options with it
    assert choose_experts(None, "world-sharp", "uniform", None).options == {}
    ensemble = Ensemble.from_preset("world-sharp", device="cpu", dtype="fp32")
    sharp = ensemble.generate(PROMPT, max_new_tokens=8)[0]
    explicit = ensemble.generate(PROMPT, "dllg", gate="world:gate", power=4, max_new_tokens=8)[0]
    assert sharp.token_ids == explicit.token_ids and torch.equal(sharp.weights, explicit.weights)
    plain = ensemble.generate(PROMPT, power=1, max_new_tokens=8)[0]
    world = Ensemble.from_preset("world", device="cpu", dtype="fp32").generate(PROMPT, max_new_tokens=8)[0]
    assert torch.equal(plain.weights, world.weights) and not torch.allclose(plain.weights, sharp.weights)


def test_generate_serve_and_lm_eval_take_the_presets_options(sharp_world):
    shown = ["-n", "12", "--show-weights", PROMPT]
    by_preset = invoke(["generate", "--preset", "world-sharp", *shown])
    gate = ["--experts", "world:arith", "world:code", "--gate", "world:gate"]
    by_names = invoke(["generate", *gate, "--power", "4", *shown])
    assert by_preset.exit_code == 0, by_preset.output
    assert answer_and_weights(by_preset.output) == answer_and_weights(by_names.output)
    overridden = invoke(["generate", "--preset", "world-sharp", "--power", "1", *shown])
    assert answer_and_weights(overridden.output) == answer_and_weights(
        invoke(["generate", *gate, *shown]).output
    )
    compared = invoke(["generate", "--preset", "world-sharp", "--fusion", "dllg,uniform", *shown])
    alone = invoke(["generate", *gate, "--power", "4", "--fusion", "dllg,uniform", *shown])
    assert compared.exit_code == 0, compared.output
    assert compared.output[compared.output.index("dllg") :] == alone.output[alone.output.index("dllg") :]
    _, rule = pool_and_rule(None, None, None, None, {}, "cpu", "fp32", "hf", preset="world-sharp")
    assert rule.power == 4
    _, rule = pool_and_rule(None, None, None, None, {"power": 2.0}, "cpu", "fp32", "hf", preset="world-sharp")
    assert rule.power == 2
    args = model_args(None, None, None, None, {}, "cpu", "fp32", "hf", None, preset="world-sharp")
    assert args["gate"] == "world:gate" and args["power"] == 4
    listed = invoke(["models", "presets"])
    assert "(power 4)" in listed.output


def test_a_preset_option_rule_dllg_does_not_take_is_refused():
    with pytest.raises(DllgError, match=r"preset .odd. gives rule dllg option\(s\) tau: it takes"):
        register_preset(Preset("odd", "", ("world:arith", "world:code"), "world:gate", (), {"tau": 1.0}))
    assert "odd" not in PRESETS
