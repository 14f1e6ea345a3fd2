"""`dllg show` on small records files written here, with the packaged world's tokenizer and tasks."""

import json
import re

import pytest
from typer.testing import CliRunner

from dllg.cli.main import app
from dllg.jsonl import append_records
from dllg.tasks.base import get_task
from dllg.view.tokens import load_expert_tokenizer, token_pieces

runner = CliRunner()
EXPERTS = ["world:arith", "world:code"]
EXAMPLE = "world-arith/test-0"
RESPONSE = "8 * 1 = 8\n    8 - 3 = 5\nThe answer is \\boxed{5}"
DATA = re.compile(r'<script type="application/json" id="answer-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def tokenizer():
    return load_expert_tokenizer(EXPERTS[0])


def record(method: str, weights: list | None = None, **fields) -> dict:
    base = {"method": method, "task": "world-arith", "split": "test", "example_id": EXAMPLE}
    base |= {"experts": EXPERTS, "response": RESPONSE, "verdict": "pass", "finish": "eos"}
    return base | ({"weights": weights} if weights is not None else {}) | fields


def weights_for(count: int) -> list[list[float]]:
    return [[round(0.1 + 0.8 * (i % 2), 4), round(0.9 - 0.8 * (i % 2), 4)] for i in range(count)]


def show(records: list[dict], tmp_path, *args: str):
    path = tmp_path / "records.jsonl"
    path.unlink(missing_ok=True)
    append_records(path, records)
    out = tmp_path / "page.html"
    result = runner.invoke(app, ["show", str(path), "--id", EXAMPLE, "--out", str(out), *args])
    data = json.loads(DATA.findall(out.read_text())[0]) if result.exit_code == 0 else None
    return result, data


def test_token_ids_are_decoded_one_per_weight_row(tmp_path, tokenizer):
    ids = [*tokenizer.encode(RESPONSE, add_special_tokens=False), tokenizer.eos_token_id]
    # a response that disagrees with token_ids shows the ids are what is used when recorded
    fused = record("fused", weights_for(len(ids)), token_ids=ids, response="ignored")
    result, data = show([fused, record("expert:world:arith")], tmp_path, "--method", "fused", "--no-prompt")
    assert result.exit_code == 0, result.output
    assert [text for text, _ in data["tokens"]] == token_pieces(tokenizer, ids)
    assert "".join(text for text, _ in data["tokens"]) == RESPONSE + tokenizer.eos_token
    assert [row for _, row in data["tokens"]] == weights_for(len(ids))
    assert [e["name"] for e in data["experts"]] == EXPERTS
    assert dict(data["meta"])["method"] == "fused" and dict(data["meta"])["verdict"] == "pass"
    assert data["prompt"] is None


def test_without_token_ids_the_response_is_re_encoded_with_the_eos_step(tmp_path, tokenizer):
    count = len(tokenizer.encode(RESPONSE, add_special_tokens=False)) + 1  # the step that chose EOS
    result, data = show([record("fused", weights_for(count))], tmp_path)
    assert result.exit_code == 0, result.output
    texts = [text for text, _ in data["tokens"]]
    assert len(texts) == count and texts[-1] == tokenizer.eos_token
    assert "".join(texts[:-1]) == RESPONSE
    prompt = next(e.prompt for e in get_task("world-arith").load("test") if e.id == EXAMPLE)
    assert data["prompt"] == prompt


def test_a_response_that_does_not_match_the_weights_has_no_per_token_text(tmp_path, tokenizer):
    count = len(tokenizer.encode(RESPONSE, add_special_tokens=False)) + 3
    result, _ = show([record("fused", weights_for(count), finish="length")], tmp_path)
    assert result.exit_code == 1
    assert "no per-token text" in result.output and "--tokenizer" in result.output


def test_token_ids_of_another_length_are_refused(tmp_path):
    result, _ = show([record("fused", weights_for(4), token_ids=[5, 6, 7])], tmp_path)
    assert result.exit_code == 1 and "3 token_ids but 4 rows" in result.output


def test_several_methods_need_method_and_are_listed(tmp_path):
    records = [
        record("fused", weights_for(3)),
        record("other-fused", weights_for(3)),
        record("expert:world:code"),
    ]
    result, _ = show(records, tmp_path)
    assert result.exit_code == 1
    line = result.output.strip()
    assert "--method" in line and "\n" not in line
    assert "with per-token weights: fused, other-fused; without: expert:world:code" in line


def test_unknown_method_lists_the_ids_methods(tmp_path):
    result, _ = show([record("fused", weights_for(3))], tmp_path, "--method", "nope")
    assert result.exit_code == 1
    assert "no record of method 'nope'" in result.output and "fused" in result.output


def test_a_method_without_weights_points_to_the_fused_ones(tmp_path):
    records = [record("fused", weights_for(3)), record("expert:world:code")]
    result, _ = show(records, tmp_path, "--method", "expert:world:code")
    assert result.exit_code == 1
    assert "no per-token weights" in result.output and "--method: fused" in result.output


def test_unknown_id_shows_what_ids_look_like(tmp_path):
    other = record("fused", weights_for(3), example_id="world-arith/test-7")
    result, _ = show([other], tmp_path)
    assert result.exit_code == 1
    assert f"no record with example id {EXAMPLE!r}" in result.output and "world-arith/test-7" in result.output


def test_duplicate_records_of_one_method_are_refused(tmp_path):
    result, _ = show([record("fused", weights_for(3))] * 2, tmp_path)
    assert result.exit_code == 1 and "2 records of method 'fused'" in result.output


def test_missing_records_file(tmp_path):
    result = runner.invoke(app, ["show", str(tmp_path / "none.jsonl"), "--id", EXAMPLE])
    assert result.exit_code == 1 and "no such records file" in result.output
