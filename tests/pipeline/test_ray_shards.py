"""`dllg run-shards`: a collect run split into shards that run as Ray tasks; a shard whose process is killed
is run again (and resumes), and the merged file holds every answer once, as the unsharded run does."""

import json
import sys

import pytest

from dllg.errors import DllgError
from dllg.jsonl import read_records
from dllg.pipeline.sharding import Shard

ray = pytest.importorskip("ray")

from dllg.pipeline.ray_shards import dllg_argv, run_shards  # noqa: E402

# Kills itself the first time it runs for a shard (as a worker's process dies), then runs the command.
KILLED_ONCE = """
import os, signal, sys
marker = sys.argv[1]
if not os.path.exists(marker):
    open(marker, "w").close()
    os.kill(os.getpid(), signal.SIGKILL)
os.execv(sys.argv[2], sys.argv[2:])
"""


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def tiny_config(tmp_path, out) -> str:
    config = tmp_path / "run.yaml"
    config.write_text(
        "experts:\n  - name: tiny:0\n  - name: tiny:1\ntasks:\n  - name: gsm_symbolic\n    limit: 4\n"
        f"collect:\n  out: {out}\n  max_new_tokens: 4\n  batch_size: 2\n  workers: 1\n"
    )
    return str(config)


def test_shards_killed_once_are_rerun_and_merge_into_every_answer_once(cluster, tmp_path):
    out = tmp_path / "labels.jsonl"
    wrapper = tmp_path / "killed_once.py"
    wrapper.write_text(KILLED_ONCE)

    def killed_once(command, shard: Shard) -> list[str]:
        return [
            sys.executable,
            str(wrapper),
            str(tmp_path / f"killed-{shard.index}"),
            *dllg_argv(command, shard),
        ]

    command = ["collect", "--config", tiny_config(tmp_path, out)]
    report = run_shards(command, 2, out, resources={"num_cpus": 1}, retries=2, argv_for=killed_once)
    assert (tmp_path / "killed-0").exists() and (tmp_path / "killed-1").exists()  # each died once
    records = list(read_records(out))
    keys = [(r["example_id"], r["expert"]) for r in records]
    assert len(keys) == len(set(keys)) == 8 == report.total  # 4 prompts x 2 experts, each once
    assert {json.dumps(r["generation"], sort_keys=True) for r in records} == {
        json.dumps(records[0]["generation"], sort_keys=True)
    }


def test_a_shard_that_keeps_failing_is_a_one_line_error(cluster, tmp_path):
    def failing(command, shard: Shard) -> list[str]:
        return [sys.executable, "-c", "import sys; sys.exit('no such data')"]

    with pytest.raises(DllgError, match=r"2 shard\(s\) failed after 0 retries .*no such data"):
        run_shards(["collect"], 2, tmp_path / "labels.jsonl", retries=0, argv_for=failing)
