"""`--shard i/n` on collect and eval (tiny experts): shards merge into the unsharded run's records, a killed
shard or merge resumes without duplicates, a second merge adds nothing, bad shards are one-line errors."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dllg.pipeline.collect as collect_module
import dllg.pipeline.sharding as sharding_module
from dllg.cli.common import expand_multi_value_options
from dllg.cli.main import app
from dllg.config import load_config
from dllg.errors import DllgError
from dllg.jsonl import read_records
from dllg.pipeline.run import load_training_examples, run_collect
from dllg.pipeline.sharding import EVAL_RECORDS, LABELS, Shard, merge_shards, shard_of
from dllg.tiny import tiny_pool

runner = CliRunner()
TINY = Path(__file__).parents[2] / "configs" / "tiny.yaml"
HALVES = (Shard(0, 2), Shard(1, 2))


@pytest.fixture(scope="module")
def pool():
    return tiny_pool(dtype="fp32", device="cpu")


def run_config(out: Path, max_new_tokens: int = 5):
    # batches of one: the same answer whatever else the batch holds, and a second batch in every shard
    overrides = [
        f"collect.out={out}",
        f"collect.max_new_tokens={max_new_tokens}",
        "collect.batch_size=1",
        "tasks=[{name: gsm_symbolic, split: train, limit: 6}]",
    ]
    return load_config(TINY, overrides)


def by_key(path: Path, kind=LABELS) -> dict[tuple, dict]:
    records = list(read_records(path))
    keyed = {kind.key(r): r for r in records}
    assert len(keyed) == len(records), f"duplicate keys in {path}"
    return keyed


@pytest.fixture(scope="module")
def unsharded(pool, tmp_path_factory) -> dict[tuple, dict]:
    out = tmp_path_factory.mktemp("whole") / "labels.jsonl"
    run_collect(run_config(out), pool)
    return by_key(out)


@pytest.fixture(scope="module")
def shards_dir(pool, tmp_path_factory) -> Path:
    """Both halves of the collection, each run alone, as two machines would."""
    folder = tmp_path_factory.mktemp("shards")
    for shard in HALVES:
        run_collect(run_config(folder / "labels.jsonl"), pool, shard=shard)
    return folder


def copy_shards(shards_dir: Path, to: Path) -> Path:
    for shard in HALVES:
        shutil.copy(shard.path(shards_dir / "labels.jsonl"), shard.path(to / "labels.jsonl"))
    return to / "labels.jsonl"


def invoke(args: list[str], code: int = 0):
    result = runner.invoke(app, expand_multi_value_options(args))
    assert result.exit_code == code, result.output
    return result


def test_every_example_goes_to_exactly_one_shard_the_same_on_every_run():
    ids = [f"task/{i:05d}" for i in range(4000)]
    for count in (1, 2, 3, 7):
        owners = [[s for s in range(count) if Shard(s, count).holds("t", "train", i)] for i in ids]
        assert all(len(o) == 1 for o in owners)
        sizes = Counter(o[0] for o in owners)
        assert len(sizes) == count and max(sizes.values()) < 1.15 * len(ids) / count
        # the same assignment in any order: nothing but the example decides its shard
        assert [shard_of("t", "train", i, count) for i in reversed(ids)] == [o[0] for o in reversed(owners)]
    assert Shard(1, 4).path("runs/labels.jsonl") == Path("runs/labels.shard-1-of-4.jsonl")
    assert Shard.parse(" 2/3 ") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/2", r"--shard 3/2: the index counts from 0, so it must be below 2"),
        ("2/2", r"--shard 2/2: the index counts from 0"),
        ("0/0", r"--shard 0/0: the count must be at least 1"),
        ("-1/2", r"--shard -1/2: write INDEX/COUNT"),
        ("1", r"--shard 1: write INDEX/COUNT"),
        ("a/b", r"--shard a/b: write INDEX/COUNT"),
    ],
)
def test_bad_shards_are_refused(text, message):
    with pytest.raises(DllgError, match=message):
        Shard.parse(text)


def test_collect_shards_merge_into_the_unsharded_table(pool, unsharded, shards_dir, tmp_path):
    out = copy_shards(shards_dir, tmp_path)
    halves = [by_key(shard.path(out)) for shard in HALVES]
    assert halves[0] and halves[1], "both shards should hold examples"
    assert not set(halves[0]) & set(halves[1])
    # every expert's label of an example sits in the example's shard
    for example_id in {k[0] for k in unsharded}:
        holding = [h for h in halves if any(k[0] == example_id for k in h)]
        assert len(holding) == 1 and all((example_id, n) in holding[0] for n in pool.names)
    assert not (shards_dir / "labels.jsonl").exists()  # shards write only their own files

    examples = load_training_examples(run_config(out))
    expected = [(i.example.id, name) for i in examples for name in pool.names]
    report = merge_shards(out, expected)
    assert (report.merged, report.already_present, report.missing) == (len(unsharded), 0, [])
    assert report.absent == [] and report.kind == LABELS.name
    assert by_key(out) == unsharded

    before = out.read_bytes()
    again = merge_shards(out, [*expected, ("gsm-symbolic/never", "tiny:0")])
    assert (again.merged, again.already_present) == (0, len(unsharded))
    assert again.missing == [("gsm-symbolic/never", "tiny:0")]
    assert out.read_bytes() == before


def test_a_killed_shard_reruns_only_what_it_had_not_written(
    pool, unsharded, tmp_path, monkeypatch, kill_at_verification
):
    out = tmp_path / "labels.jsonl"
    shard = HALVES[1]
    kill_at_verification(collect_module, batch=2)
    with pytest.raises(KeyboardInterrupt):
        run_collect(run_config(out), pool, shard=shard)
    monkeypatch.undo()
    assert len(by_key(shard.path(out))) == 1

    counts = run_collect(run_config(out), pool, shard=shard)
    mine = {k: r for k, r in unsharded.items() if shard.holds("gsm_symbolic", "train", k[0])}
    assert counts["skipped"] == 1 and counts["generated"] == len(mine) - 1
    assert by_key(shard.path(out)) == mine


def test_a_killed_merge_is_completed_by_a_rerun(unsharded, shards_dir, tmp_path, monkeypatch):
    out = copy_shards(shards_dir, tmp_path)
    appends = []

    def dies_on_third_append(path, records):
        appends.append(len(records))
        if len(appends) == 3:
            raise KeyboardInterrupt
        return append_records(path, records)

    append_records = sharding_module.append_records
    monkeypatch.setattr(sharding_module, "MERGE_CHUNK", 1)
    monkeypatch.setattr(sharding_module, "append_records", dies_on_third_append)
    with pytest.raises(KeyboardInterrupt):
        merge_shards(out)
    monkeypatch.undo()
    assert len(by_key(out)) == 2
    report = merge_shards(out)
    assert (report.merged, report.already_present) == (len(unsharded) - 2, 2)
    assert by_key(out) == unsharded


def test_shards_made_otherwise_are_refused_before_anything_is_merged(pool, shards_dir, tmp_path):
    out = copy_shards(shards_dir, tmp_path)
    HALVES[1].path(out).unlink()
    run_collect(run_config(out, max_new_tokens=4), pool, shard=HALVES[1])
    with pytest.raises(DllgError, match=r"shard-1-of-2.jsonl holds records made with max_new_tokens=4"):
        merge_shards(out)
    assert not out.exists()

    shutil.move(HALVES[1].path(out), tmp_path / "aside.jsonl")
    extra = Shard(2, 3).path(out)
    extra.write_text(HALVES[0].path(out).read_text())
    with pytest.raises(DllgError, match=r"shard files of 2 and 3 shards beside .*merge one set"):
        merge_shards(out)
    extra.unlink()

    report = merge_shards(out)  # shard 1/2 is missing: merged what is there, and said so
    assert report.absent == [HALVES[1]] and report.merged == len(by_key(out)) > 0


def test_eval_records_of_other_experts_and_other_kinds_are_refused(tmp_path):
    out = tmp_path / "records.jsonl"
    record = {"method": "uniform", "task": "t", "split": "s", "example_id": "1", "experts": ["a", "b"]}
    HALVES[0].path(out).write_text(json.dumps(record) + "\n")
    HALVES[1].path(out).write_text(json.dumps(record | {"example_id": "2", "experts": ["a", "c"]}) + "\n")
    with pytest.raises(DllgError, match=r"shard-1-of-2.jsonl holds records made with experts \['a', 'c'\]"):
        merge_shards(out)
    label = {"example_id": "2", "expert": "a", "label": 0}
    HALVES[1].path(out).write_text(json.dumps(label) + "\n")
    with pytest.raises(DllgError, match=r"holds collect labels, not eval records like the files before it"):
        merge_shards(out)
    with pytest.raises(DllgError, match=r"no shard files beside .*other.jsonl"):
        merge_shards(tmp_path / "other.jsonl")


def flat(output: str) -> str:
    """The CLI's text without the console's line wrapping."""
    return " ".join(output.split())


def eval_args(out: Path, *extra: str) -> list[str]:
    args = ["eval", "--experts", "tiny:0", "tiny:1", "--methods", "expert:tiny:0", "uniform"]
    args += ["--tasks", "gsm8k", "--limit", "4", "--out", str(out), "--max-new-tokens", "3"]
    return [*args, "--batch-size", "1", "--dtype", "fp32", "--device", "cpu", *extra]


def test_eval_shards_merge_into_the_unsharded_records_and_table(tmp_path):
    whole = tmp_path / "whole" / "records.jsonl"
    invoke(eval_args(whole))

    out = tmp_path / "sharded" / "records.jsonl"
    for shard in HALVES:
        result = invoke(eval_args(out, "--shard", str(shard)))
        assert str(shard.path(out)) in result.output.replace("\n", "")
    assert not (out.parent / "results.md").exists()  # no partial tables from a shard
    assert sum(len(by_key(s.path(out), EVAL_RECORDS)) for s in HALVES) == len(by_key(whole, EVAL_RECORDS))

    merged = invoke(["merge-shards", str(out)])
    assert "merged shards 0/2, 1/2: 8 new records, 0 already there; 8 in all" in flat(merged.output)
    assert by_key(out, EVAL_RECORDS) == by_key(whole, EVAL_RECORDS)

    table = invoke(eval_args(out))  # the unsharded command on the merged file: nothing new, the same table
    assert "0 new" in flat(table.output)
    assert (out.parent / "results.md").read_text() == (whole.parent / "results.md").read_text()
    assert (out.parent / "results.csv").read_text() == (whole.parent / "results.csv").read_text()


def test_collect_shard_through_the_cli(tmp_path):
    out = tmp_path / "labels.jsonl"
    sets = ["--set", "collect.max_new_tokens=3", "--set", "tasks=[{name: gsm_symbolic, limit: 2}]"]
    result = invoke(["collect", "--config", str(TINY), *sets, "--out", str(out), "--shard", "1/2"])
    assert f"labels: {HALVES[1].path(out)}:" in result.output.replace("\n", "")
    merged = invoke(["merge-shards", str(out)])
    assert "no file yet for shard 0/2" in flat(merged.output)
    assert by_key(out) == by_key(HALVES[1].path(out))


@pytest.mark.parametrize(
    "args",
    [
        ["collect", "--config", str(TINY), "--shard", "3/2"],
        ["eval", "-e", "tiny:0", "-m", "uniform", "-t", "gsm8k", "--shard", "3/2"],
    ],
)
def test_bad_shard_is_one_error_line_in_the_cli(args):
    result = invoke(args, code=1)
    assert result.output.strip().splitlines() == [
        "error: --shard 3/2: the index counts from 0, so it must be below 2; write INDEX/COUNT with "
        "0 <= INDEX < COUNT (four shards: 0/4, 1/4, 2/4, 3/4)"
    ]


def test_merge_without_shard_files_is_one_error_line(tmp_path):
    result = invoke(["merge-shards", str(tmp_path / "labels.jsonl")], code=1)
    assert len(result.output.strip().splitlines()) == 1 and "no shard files beside" in result.output
