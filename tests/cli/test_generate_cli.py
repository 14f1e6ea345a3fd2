"""`dllg generate` end to end on tiny experts saved as local Hugging Face folders."""

import re

import pytest
import torch
from typer.testing import CliRunner

from dllg.cli.common import expand_multi_value_options
from dllg.cli.main import app
from dllg.ensemble import Ensemble
from dllg.tiny import tiny_expert, tiny_tokenizer

runner = CliRunner()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> list[str]:
    """Two tiny experts written with save_pretrained: the real local-folder loading path reads them."""
    root = tmp_path_factory.mktemp("experts")
    tok = tiny_tokenizer()
    paths = []
    for seed in (1, 2):
        expert = tiny_expert(seed, tokenizer=tok, padded_rows=16, hidden=32 * seed)
        path = root / f"tiny-{seed}"
        expert.model.save_pretrained(path)
        tok.save_pretrained(path)
        paths.append(str(path))
    return paths


def invoke(args: list[str]):
    return runner.invoke(app, expand_multi_value_options(args))


def test_expand_multi_value_options():
    argv = ["generate", "--experts", "a", "b", "--fusion", "uniform", "hi"]
    assert expand_multi_value_options(argv) == [
        "generate",
        "--experts",
        "a",
        "--experts",
        "b",
        "--fusion",
        "uniform",
        "hi",
    ]
    assert expand_multi_value_options(["--experts", "a", "b", "--", "p"])[-2:] == ["--", "p"]


def test_generate_loads_folders_and_matches_the_api(folders):
    result = invoke(
        [
            "generate",
            "--experts",
            *folders,
            "--fusion",
            "static",
            "--weights",
            "0.3,0.7",
            "-n",
            "6",
            "--dtype",
            "fp32",
            "def add(a, b):",
        ]
    )
    assert result.exit_code == 0, result.output
    ens = Ensemble(folders, dtype="fp32")
    assert ens.pool.vocab_size == len(tiny_tokenizer())  # padded rows trimmed
    expected = ens.generate("def add(a, b):", "static", weights=[0.3, 0.7], max_new_tokens=6)[0]
    assert expected.text.strip() and expected.text.strip() in result.output


def test_show_weights_prints_one_row_per_token(folders):
    result = invoke(
        [
            "generate",
            "--experts",
            *folders,
            "--fusion",
            "entropy",
            "-n",
            "5",
            "--show-weights",
            "--raw",
            "Hello",
        ]
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if re.match(r"^\s*│?\s*\d+\s", line)]
    assert len(rows) == 5
    weights = [float(x) for x in re.findall(r"\d\.\d{3}", rows[0])]
    assert len(weights) == 2 and abs(sum(weights) - 1) < 2e-3


def test_power_inf_hands_each_token_to_the_expert_the_gate_leads_with():
    args = ["generate", "--experts", "world:arith", "world:code", "--gate", "world:gate", "--power", "inf"]
    result = invoke([*args, "-n", "8", "--show-weights", "Let k be 4 + 9 - 1. Write f(x) = x * k."])
    assert result.exit_code == 0, result.output
    rows = [
        re.findall(r"\d\.\d{3}", line)
        for line in result.output.splitlines()
        if re.match(r"^\s*│\s*\d+\s", line)
    ]
    assert len(rows) == 8
    assert all(len(r) == 2 and r.count("0.000") == 1 for r in rows)  # the other expert's weight is 0
    assert len({r.index("0.000") for r in rows}) == 2  # and both experts lead somewhere


def test_chat_template_is_applied_unless_raw(folders):
    ens = Ensemble(folders[:1], dtype="fp32")
    chat = ens.encode("Hello")
    raw = ens.encode("Hello", chat=False)
    assert len(chat) > len(raw) and ens.pool.tokenizer.decode(chat).startswith("<|im_start|>user")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fusion", "nope"], "unknown fusion rule 'nope'"),
        (["--fusion", "static", "--weights", "1"], "got 1 weights for 2 experts"),
        (["--fusion", "static", "--weights", "1,x"], "is not a list of numbers"),
        (["--fusion", "uniform", "--tau", "2"], "does not take tau"),
        (["--fusion", "uniform", "--power", "2"], "does not take power"),
    ],
)
def test_bad_options_are_one_line_errors(folders, args, message):
    result = invoke(["generate", "--experts", *folders, *args, "-n", "2", "hi"])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_missing_folder_and_mismatched_tokenizers(folders, tmp_path):
    result = invoke(["generate", "--experts", folders[0], str(tmp_path / "nope"), "--raw", "hi"])
    assert result.exit_code == 1 and "no such file or folder" in result.output.lower()
    other = tmp_path / "other"
    tok = tiny_tokenizer(extra_special="<|x|>")
    tiny_expert(3, tokenizer=tok).model.save_pretrained(other)
    tok.save_pretrained(other)
    result = invoke(["generate", "--experts", folders[0], str(other), "--raw", "hi"])
    assert result.exit_code == 1 and "do not share a tokenizer" in result.output


def test_prompt_right_after_the_experts(folders):
    result = invoke(["generate", "--experts", *folders, "say hello", "-n", "3"])
    assert result.exit_code == 0, result.output


def test_no_prompt_is_an_error(folders):
    result = invoke(["generate", "--experts", *folders])
    assert result.exit_code == 1 and "no prompt given" in result.output


def test_per_expert_dtype(folders):
    ens = Ensemble(folders, dtype=["fp32", "bf16"])
    assert [e.dtype for e in ens.pool.experts] == [torch.float32, torch.bfloat16]


def test_generate_writes_the_answer_page(folders, tmp_path):
    import json

    page = tmp_path / "answer.html"
    args = ["generate", "--experts", *folders, "--fusion", "entropy", "-n", "8", "--html", str(page)]
    result = invoke([*args, "def add(a, b):"])
    assert result.exit_code == 0, result.output
    data = json.loads(re.search(r'id="answer-data">(.*?)</script>', page.read_text(), re.S).group(1))
    ensemble = Ensemble(folders)
    answer = ensemble.generate("def add(a, b):", "entropy", max_new_tokens=8)[0]
    texts = [text for text, _ in data["tokens"]]
    assert len(texts) == len(answer.token_ids)  # one piece per generated token, joined: the decoded answer
    assert "".join(texts) == ensemble.pool.tokenizer.decode(answer.token_ids)
    torch.testing.assert_close(
        torch.tensor([w for _, w in data["tokens"]]), answer.weights, atol=1e-4, rtol=0
    )
    assert data["prompt"] == "def add(a, b):" and [e["name"] for e in data["experts"]] == answer.expert_names
    two = invoke([*args, "Hello", "world answer"])
    assert (
        two.exit_code == 0
        and (tmp_path / "answer-1.html").is_file()
        and (tmp_path / "answer-2.html").is_file()
    )


def answers_by_rule(output: str, rules: list[str]) -> dict[str, str]:
    """The text printed under each rule's heading (`── uniform ──`)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        heading = re.search(r"─+ (\S+) ─+$", line.strip())  # progress bars may share its line
        if heading and heading.group(1) in rules:
            current = heading.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {rule: "\n".join(lines).strip() for rule, lines in sections.items()}


def page_data(path) -> dict:
    import json

    return json.loads(re.search(r'id="answer-data">(.*?)</script>', path.read_text(), re.S).group(1))


def test_several_fusions_give_each_rule_its_own_answer(folders, tmp_path):
    prompt = "def add(a, b):"
    args = ["generate", "--experts", *folders, "--fusion", "uniform,entropy", "-f", "static"]
    page = tmp_path / "answer.html"
    result = invoke([*args, "--weights", "0.3,0.7", "--tau", "2", "-n", "6", "--html", str(page), prompt])
    assert result.exit_code == 0, result.output
    printed = answers_by_rule(result.output, ["uniform", "entropy", "static"])
    assert list(printed) == ["uniform", "entropy", "static"]
    ensemble = Ensemble(folders)
    # each flag went to the rules that take it: --weights to static, --tau to entropy
    expected = {
        "uniform": ensemble.generate(prompt, "uniform", max_new_tokens=6)[0],
        "entropy": ensemble.generate(prompt, "entropy", tau=2.0, max_new_tokens=6)[0],
        "static": ensemble.generate(prompt, "static", weights=[0.3, 0.7], max_new_tokens=6)[0],
    }
    for rule, answer in expected.items():  # each page holds its rule's tokens and weights exactly
        data = page_data(tmp_path / f"answer-{rule}.html")
        texts = [text for text, _ in data["tokens"]]
        assert len(texts) == len(answer.token_ids), rule
        assert "".join(texts) == ensemble.pool.tokenizer.decode(answer.token_ids), rule
        assert ["method", rule] in data["meta"]
        weights = torch.tensor([w for _, w in data["tokens"]])
        torch.testing.assert_close(weights, answer.weights, atol=1e-4, rtol=0)
    assert not page.exists()
    assert len({printed[rule] for rule in printed}) > 1  # the rules do differ here: the test tells them apart


def test_several_fusions_with_a_preset_use_its_gate():
    prompt = "Let k be 4 + 9 - 1. Write f(x) = x * k."
    result = invoke(["generate", "--preset", "world", "--fusion", "dllg,uniform", "-n", "8", prompt])
    assert result.exit_code == 0, result.output
    printed = answers_by_rule(result.output, ["dllg", "uniform"])
    ensemble = Ensemble.from_preset("world")
    for rule in ("dllg", "uniform"):
        assert printed[rule] == ensemble.generate(prompt, rule, max_new_tokens=8)[0].text.strip()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fusion", "uniform,nope"], "unknown fusion rule 'nope'"),
        (["--fusion", "uniform", "-f", "uniform,entropy"], "name each rule once"),
        (["--fusion", "uniform,entropy", "--top-k", "3"], "none of the rules uniform, entropy takes top_k"),
        (["--fusion", "uniform,entropy", "--temperature", "0.7"], "decode together greedily"),
        (["--fusion", "uniform,entropy", "--gate", "world:gate"], "add dllg to the --fusion rules"),
        (["--fusion", "uniform,dllg"], "needs a trained gate"),
    ],
)
def test_bad_fusion_lists_are_one_line_errors(folders, args, message):
    result = invoke(["generate", "--experts", *folders, *args, "-n", "2", "hi"])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
