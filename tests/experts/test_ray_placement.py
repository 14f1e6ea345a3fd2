"""Experts placed on Ray actors decode exactly as in process: every rule, batch 1 and 4, with and without
speculative drafts (rows rolled back in the actors), and rows leaving and joining; hidden states cross only
for a rule that reads them; failures in an actor are one-line errors on the driver."""

import time

import pytest
import torch

from dllg.decode import GenerationConfig, generate
from dllg.decode.loop import Decoder
from dllg.errors import DllgError
from dllg.experts import ExpertPool
from dllg.experts.loading import load_expert
from dllg.fusion import RULES, make_rule
from dllg.tiny import random_gate

ray = pytest.importorskip("ray")

from dllg.experts.ray_placement import RayExpert, actor_options, ensure_ray  # noqa: E402

NAMES = ["tiny:11", "tiny:12"]
TEXTS = ["def add(a, b):", "Hello", "The answer is 42. Let us", "Write a Python function"]


@pytest.fixture(scope="module")
def cluster():
    # more logical CPUs than cores: the tests hold several one-CPU actors at once on a 2-core machine
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    assert ensure_ray("local") is ray  # an existing connection is kept
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pools(cluster) -> dict[str, ExpertPool]:
    # float64: the same arithmetic in the actor and here, so tokens and weights must agree exactly
    local = ExpertPool([load_expert(n, "cpu", "float64") for n in NAMES])
    remote = ExpertPool(
        [RayExpert(n, "cpu", "float64", resources={"num_cpus": 1}, compiled_steps=True) for n in NAMES]
    )
    return {"local": local, "ray": remote}


@pytest.fixture(scope="module")
def gate(pools):
    pool = pools["local"]
    return random_gate(pool.names, [e.hidden_size for e in pool.experts]).double()


def rule_for(name: str, gate):
    options = {"single": {"expert": 1}, "static": {"weights": [0.3, 0.7]}, "dllg": {"gate": gate}}
    return make_rule(name, **options.get(name, {}))


def prompts_of(pool: ExpertPool, count: int) -> list[list[int]]:
    return [pool.tokenizer(t)["input_ids"] for t in TEXTS[:count]]


def test_a_ray_expert_is_the_same_expert(pools):
    local, remote = pools["local"].experts[0], pools["ray"].experts[0]
    assert remote.runs_elsewhere and not local.runs_elsewhere
    assert (remote.backend, remote.hidden_size, remote.output_rows, remote.dtype) == (
        local.backend,
        local.hidden_size,
        local.output_rows,
        local.dtype,
    )
    assert remote.parameter_count() == local.parameter_count()
    assert pools["ray"].names == pools["local"].names
    sequences = prompts_of(pools["local"], 2)
    torch.testing.assert_close(remote.mean_nll(sequences), local.mean_nll(sequences), rtol=0, atol=0)
    for a, b in zip(remote.sequence_states(sequences), local.sequence_states(sequences), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_decodes_the_same_tokens_on_ray(pools, gate, name, batch):
    config = GenerationConfig(max_new_tokens=8, speculate="none")
    runs = {}
    for where, pool in pools.items():
        runs[where] = generate(pool, rule_for(name, gate), prompts_of(pool, batch), config)
    for here, there in zip(runs["local"], runs["ray"], strict=True):
        assert here.token_ids == there.token_ids
        torch.testing.assert_close(here.weights, there.weights, rtol=0, atol=1e-12)
    if name == "dllg":  # the gate reacted to the hidden states the actors sent
        weights = torch.cat([g.weights for g in runs["ray"]])
        assert (weights.std(0) > 1e-3).all()


def test_steps_go_through_compiled_graphs_and_plain_calls_decode_the_same(pools, gate):
    """The tests above ran on compiled-graph steps; actor calls without them give the very same answers,
    with rows leaving the batch (their calls not waited for must reach the actor before the next step)."""
    assert all(e.compiled_steps for e in pools["ray"].experts)
    plain = ExpertPool([RayExpert(n, "cpu", "float64") for n in NAMES])
    assert not any(e.compiled_steps for e in plain.experts)  # the default for an actor without a GPU

    def run(pool: ExpertPool) -> list[list[int]]:
        decoder = Decoder(pool, rule_for("dllg", gate))
        prompts = prompts_of(pool, 4)
        ids = decoder.submit(prompts[:2], GenerationConfig(max_new_tokens=3))  # these rows leave first
        ids += decoder.submit(prompts[2:], GenerationConfig(max_new_tokens=8))
        got: dict[int, list[int]] = {}
        while decoder.active:
            got.update((u.request, u.finished.token_ids) for u in decoder.step() if u.finished is not None)
        decoder.close()
        return [got[i] for i in ids]

    compiled = run(pools["ray"])
    assert [len(t) for t in compiled] == [3, 3, 8, 8]
    assert compiled == run(plain)
    for expert in plain.experts:
        expert.close()


@pytest.mark.parametrize("speculate", ["ngram", "expert"])
def test_speculative_steps_roll_back_inside_the_actors(pools, gate, speculate):
    config = GenerationConfig(max_new_tokens=12, speculate=speculate, draft_tokens=3)
    plain = GenerationConfig(max_new_tokens=12, speculate="none")
    local = generate(pools["local"], rule_for("dllg", gate), prompts_of(pools["local"], 4), plain)
    remote = generate(pools["ray"], rule_for("dllg", gate), prompts_of(pools["ray"], 4), config)
    assert [g.token_ids for g in remote] == [g.token_ids for g in local]
    assert sum(g.drafted for g in remote) > 0  # drafts were fed, so rows were rolled back


def test_requests_join_and_leave_a_running_batch_of_actors(pools, gate):
    def run(pool: ExpertPool) -> dict[int, list[int]]:
        decoder = Decoder(pool, rule_for("dllg", gate), max_rows=2)
        config = GenerationConfig(max_new_tokens=5)
        ids = decoder.submit(prompts_of(pool, 2), config)
        got: dict[int, list[int]] = {}
        for step in range(40):
            if step == 2:
                ids += decoder.submit(prompts_of(pool, 4)[2:], GenerationConfig(max_new_tokens=3))
            for update in decoder.step():
                if update.finished is not None:
                    got[update.request] = update.finished.token_ids
            if not decoder.active:
                break
        decoder.close()
        assert sorted(got) == ids
        return got

    assert run(pools["ray"]) == run(pools["local"])


def test_hidden_states_cross_only_for_a_rule_that_reads_them(pools):
    expert = pools["ray"].experts[0]
    prompt = prompts_of(pools["ray"], 1)
    expert.outputs_wanted(hidden=False)
    state, output = expert.prefill(prompt)
    assert output.hidden.shape == (1, 1, 0) and output.logits.shape == (1, 1, pools["ray"].vocab_size)
    expert.release(state)
    expert.outputs_wanted(hidden=True)
    state, output = expert.prefill(prompt)
    assert output.hidden.shape == (1, 1, expert.hidden_size)
    expert.release(state)


def test_actor_options_and_bad_placements_are_one_line_errors(cluster):
    assert actor_options({"num_gpus": 1, "big_node": 1}) == {
        "num_gpus": 1,
        "num_cpus": 1,
        "resources": {"big_node": 1},
    }
    with pytest.raises(DllgError, match=r"resources.num_gpus='two': give a number"):
        actor_options({"num_gpus": "two"})
    with pytest.raises(DllgError, match="unknown placement 'moon'"):
        load_expert("tiny:1", placement="moon")
    with pytest.raises(DllgError, match="are for experts placed on Ray: add placement: ray"):
        load_expert("tiny:1", resources={"num_cpus": 1})


def test_an_expert_that_cannot_load_in_its_actor_says_why(cluster):
    with pytest.raises(DllgError, match="no-such-folder"):
        RayExpert("./no-such-folder", "cpu", "float32")


def test_resources_no_node_offers_are_refused_at_once(cluster):
    with pytest.raises(DllgError, match="asks for 4 GPU but the Ray cluster has 0"):
        RayExpert("tiny:1", resources={"num_gpus": 4})


def test_a_dead_actor_is_a_one_line_error_not_a_hang(cluster):
    expert = RayExpert("tiny:13", "cpu", "float32")
    state, _ = expert.prefill([[1, 2, 3]])
    expert.close()
    for _ in range(100):  # ray.kill returns before the actor is gone: wait until Ray reports it dead
        try:
            ray.get(expert._actor.busy_seconds.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            break
        time.sleep(0.1)
    with pytest.raises(DllgError, match="Ray actor died"):
        expert.step(state, torch.tensor([[4]]))


def test_an_actor_killed_under_its_compiled_graph_is_a_one_line_error(cluster):
    expert = RayExpert("tiny:13", "cpu", "float32", compiled_steps=True)
    assert expert.compiled_steps
    state, output = expert.prefill([[1, 2, 3]])
    expert.step(state, output.logits[:, -1].argmax(-1, keepdim=True))
    ray.kill(expert._actor)  # not close(): the graph is still up, its channel now has no reader
    with pytest.raises(DllgError, match="Ray actor died"):
        for _ in range(100):  # until Ray notices; each try fails at once or returns
            expert.step(state, torch.tensor([[4]]))
            time.sleep(0.1)


def test_generate_with_ray_prints_what_it_prints_in_process(cluster):
    from typer.testing import CliRunner

    from dllg.cli.common import expand_multi_value_options
    from dllg.cli.main import app

    args = ["generate", "--experts", *NAMES, "--fusion", "entropy", "--dtype", "float64", "-n", "8"]
    args += ["--show-weights", "--", "Hello"]
    runs = [
        CliRunner().invoke(app, expand_multi_value_options(a))
        for a in (args, [*args[:1], "--ray", "local", *args[1:]])
    ]
    for result in runs:
        assert result.exit_code == 0, result.output
    tables = [r.output[r.output.index("expert weights per token") :] for r in runs]
    assert tables[0] == tables[1]


def test_a_run_config_places_its_experts_on_ray(cluster, tmp_path):
    from dllg.config import load_config
    from dllg.pipeline.run import load_pool

    config = tmp_path / "run.yaml"
    config.write_text(
        "experts:\n  - name: tiny:11\n    placement: ray\n    resources: {num_cpus: 1}\n  - name: tiny:12\n"
    )
    pool = load_pool(load_config(config))
    assert [e.runs_elsewhere for e in pool.experts] == [True, False]
    assert all(e.runs_elsewhere for e in load_pool(load_config(config).placed_on_ray("local")).experts)


def test_bench_ray_reports_each_actors_compute_and_the_overhead(cluster):
    from dllg.bench.placement import bench_ray

    (row,) = list(bench_ray(NAMES, dtype="float32", batch_sizes=(2,), new_tokens=12, repeats=1))
    assert row["batch"] == 2
    for placement in ("", "plain_"):  # compiled-graph steps, then plain actor calls
        # each actor's compute per step is a difference of two timings (N tokens - 1 token): on tiny models
        # and a busy 2-core machine it can come out below 0, so only its presence is checked
        assert all(isinstance(row[f"{placement}actor{i}_compute_ms"], float) for i in (0, 1))
        slowest = max(row[f"{placement}actor0_compute_ms"], row[f"{placement}actor1_compute_ms"])
        assert abs(row[f"{placement}overhead_ms"] - (row[f"{placement}ray_step_ms"] - slowest)) < 0.02
