"""Whole lm-eval runs on local tasks (a JSONL file and a YAML in the test's folder, no network): through
`lm_eval.simple_evaluate` with the model `dllg`, and once through `dllg lm-eval`."""

import json

import pytest
import torch
from harness_reference import hf_logits, token_logprobs, write_task  # tests/harness/harness_reference.py
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager
from typer.testing import CliRunner

import dllg.harness  # noqa: F401  (registers the model dllg)
from dllg.cli.common import expand_multi_value_options
from dllg.cli.main import app
from dllg.decode import GenerationConfig, generate

QUESTIONS = [
    {"question": "What is 3 + 4?", "answer": "7", "choices": ["7", "8", "12"], "label": 0},
    {"question": "def add(a, b):", "answer": "return a + b", "choices": ["return a + b", "pass"], "label": 1},
    {"question": "Hello world!", "answer": "Hi", "choices": [" How are you", " Bye", "42"], "label": 2},
]
MC_BODY = (
    "output_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
    "doc_to_target: '{{label}}'\nmetric_list:\n  - metric: acc\n"
)
ROLLING_BODY = (
    "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{question}}'\n"
    "metric_list:\n  - metric: word_perplexity\n"
)


def gen_body(stop: str) -> str:
    return (
        "output_type: generate_until\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
        f"generation_kwargs:\n  until: [{json.dumps(stop)}]\n  max_gen_toks: 10\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n"
    )


@pytest.fixture(scope="module")
def lm(folders):
    from lm_eval.api.registry import get_model

    experts = "+".join(folders)
    return get_model("dllg").create_from_arg_string(
        f"experts={experts},fusion=single,expert=0,dtype=fp32,device=cpu", {"batch_size": 2}
    )


def stop_string(lm) -> str:
    """Two characters from the middle of the first question's free generation: the stop is reached."""
    ids = lm.tok_encode(QUESTIONS[0]["question"])
    free = generate(lm.pool, lm.rule, [ids], GenerationConfig(max_new_tokens=10))[0].text
    return free[len(free) // 2 :][:2]


def test_simple_evaluate_runs_generation_choice_and_rolling_tasks(lm, hf_models, tmp_path):
    stop = stop_string(lm)
    write_task(tmp_path, "tiny_gen", QUESTIONS, gen_body(stop))
    write_task(tmp_path, "tiny_mc", QUESTIONS, MC_BODY)
    write_task(tmp_path, "tiny_rolling", QUESTIONS, ROLLING_BODY)
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    results = simple_evaluate(
        model=lm, tasks=["tiny_gen", "tiny_mc", "tiny_rolling"], task_manager=manager, log_samples=True
    )
    assert results["config"]["fusion"] == "single" and results["config"]["experts"] == lm.pool.names

    for sample in results["samples"]["tiny_gen"]:  # the decode loop's text, cut before the stop string
        prompt = lm.tok_encode(sample["arguments"][0][0])
        config = GenerationConfig(max_new_tokens=10, stop=(stop,))
        assert sample["resps"][0][0] == generate(lm.pool, lm.rule, [prompt], config)[0].text
    first = results["samples"]["tiny_gen"][0]["resps"][0][0]
    assert stop not in first and len(lm.tok_encode(first)) < 10  # the stop string ended it
    assert results["samples"]["tiny_gen"][0]["arguments"][0][0] == QUESTIONS[0]["question"]  # no template

    correct = 0
    for sample in results["samples"]["tiny_mc"]:  # each choice's score is expert 0's own log-likelihood
        scores = []
        for (context, continuation), resp in zip(sample["arguments"], sample["resps"], strict=True):
            start = len(lm.tokenizer(context)["input_ids"])
            ids = lm.tokenizer(context + continuation)["input_ids"]
            logprobs = torch.log_softmax(hf_logits(hf_models[0], ids), -1)
            scores.append(float(token_logprobs(logprobs, ids, start).sum()))
            assert resp[0][0] == pytest.approx(scores[-1], abs=1e-4)
        correct += scores.index(max(scores)) == sample["target"]
    assert results["results"]["tiny_mc"]["acc,none"] == pytest.approx(correct / len(QUESTIONS))
    assert results["results"]["tiny_rolling"]["word_perplexity,none"] > 1


def invoke(args: list[str]):
    return CliRunner().invoke(app, expand_multi_value_options(args))


@pytest.mark.slow  # lm-eval indexes its thousands of built-in tasks first (~6 s)
def test_the_cli_prints_the_table_and_writes_the_json(folders, tmp_path):
    write_task(tmp_path, "tiny_mc", QUESTIONS, MC_BODY)
    write_task(tmp_path, "tiny_gen", QUESTIONS, gen_body("\n"))
    output = tmp_path / "out" / "results.json"
    common = ["--include-path", str(tmp_path), "--dtype", "fp32", "--device", "cpu", "--output", str(output)]
    result = invoke(
        ["lm-eval", "--experts", *folders, "--fusion", "static", "--weights", "0.3,0.7", "--tasks",
         "tiny_mc,tiny_gen", "--limit", "2", "--batch-size", "2", *common]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tiny_mc" in result.output and "acc" in result.output and str(output) in result.output
    saved = json.loads(output.read_text())
    assert saved["config"]["model"] == "dllg" and saved["config"]["fusion"] == "static"
    assert saved["config"]["model_args"]["weights"] == [0.3, 0.7]
    assert (
        set(saved["results"]) == {"tiny_mc", "tiny_gen"} and saved["n-samples"]["tiny_mc"]["effective"] == 2
    )

    unknown = invoke(["lm-eval", "--experts", *folders, "--tasks", "no_such_task", *common])
    assert unknown.exit_code == 1 and "unknown lm-eval task(s) no_such_task" in unknown.output


def test_the_chat_template_is_applied_when_asked(lm, tmp_path):
    write_task(tmp_path, "tiny_gen", QUESTIONS, gen_body("\x00"))
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    results = simple_evaluate(
        model=lm, tasks=["tiny_gen"], task_manager=manager, limit=1, apply_chat_template=True
    )
    [sample] = results["samples"]["tiny_gen"]
    context = sample["arguments"][0][0]
    assert context == f"<|im_start|>user\n{QUESTIONS[0]['question']}<|im_end|>\n<|im_start|>assistant\n"
    prompt = lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTIONS[0]["question"]}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    expected = generate(lm.pool, lm.rule, [list(prompt)], GenerationConfig(max_new_tokens=10))[0].text
    assert sample["resps"][0][0] == expected
