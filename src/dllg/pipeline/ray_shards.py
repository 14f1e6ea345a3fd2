"""Shards as Ray tasks: `dllg run-shards N --out OUT -- collect|eval ...` runs the command once per shard
(`--shard i/N` added) on the Ray cluster's workers, then merges the shard files into OUT.

Each task runs the command in a subprocess, so a shard is the very same run as by hand (its own experts, its
own resumable file). A shard whose process fails or whose worker dies is run again (Ray retries the task),
and the rerun redoes only what its file does not hold yet.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dllg.errors import DllgError
from dllg.experts.ray_placement import actor_options, ensure_ray
from dllg.pipeline.sharding import MergeReport, Shard, merge_shards


def dllg_argv(command: Sequence[str], shard: Shard) -> list[str]:
    """The command line of one shard: this Python's dllg with `--shard i/n` added."""
    return [sys.executable, "-m", "dllg", *command, "--shard", f"{shard.index}/{shard.count}"]


def _run(argv: list[str]) -> int:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:]
        raise RuntimeError(f"exit {done.returncode}: {' '.join(last)}")
    return done.returncode


def run_shards(
    command: Sequence[str],
    count: int,
    out: str | Path,
    address: str | None = None,
    resources: dict[str, float] | None = None,
    retries: int = 2,
    argv_for: Callable[[Sequence[str], Shard], list[str]] = dllg_argv,
) -> MergeReport:
    """Run `command` once per shard of `count` as Ray tasks (each given `resources`, retried up to
    `retries` times), then merge the shard files into `out`."""
    if count < 1:
        raise DllgError(f"{count} shards: give at least 1")
    ray = ensure_ray(address)
    options = actor_options(resources)
    task = ray.remote(_run).options(max_retries=retries, retry_exceptions=True, **options)
    shards = [Shard(i, count) for i in range(count)]
    refs = [task.remote(argv_for(command, shard)) for shard in shards]
    failed = []
    for shard, ref in zip(shards, refs, strict=True):
        try:
            ray.get(ref)
        except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError) as exc:
            lines = [line for line in str(exc).splitlines() if line.strip()]
            failed.append(f"shard {shard.index}/{count}: {lines[-1] if lines else type(exc).__name__}")
    if failed:
        raise DllgError(
            f"{len(failed)} shard(s) failed after {retries} retries ({'; '.join(failed)}): fix the cause and "
            "run the same command again (finished shards are not redone)"
        )
    return merge_shards(out)
