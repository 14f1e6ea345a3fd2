"""Regenerate the synthetic world's shipped models: experts, gate and routers (`world:NAME` assets).

    nice -n 10 .venv/bin/python scripts/build_world.py            # everything, ~10 min on 2 cores
    nice -n 10 .venv/bin/python scripts/build_world.py --from gate

Stages, each through the same commands a user runs, each resumable where the command is:
  experts  scripts/train_world_experts.py -> runs/world/models, copied to the package's assets
  collect  dllg collect --config configs/world.yaml   (each expert answers arithmetic, code, mixed prompts)
  gate     dllg train --config configs/world.yaml     (features + the gate), copied to the assets
  routers  dllg route train --config configs/world.yaml --kind embedllm|routerdc, into the assets
New experts invalidate everything after them: the experts stage removes the label table, the feature
cache and the gate's run, so the shipped files always come from one build. The later stages resume: a
killed collection or feature extraction goes on where it stopped (the gate itself retrains: seconds).
What each stage measured is kept in results/world/training/: the experts' accuracy table, the label table
(every expert answer, verdict and label) and the gate's training log.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dllg.world.assets import ASSETS_DIR

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "world.yaml"
RUNS = ROOT / "runs" / "world"
KEPT = ROOT / "results" / "world" / "training"
STAGES = ("experts", "collect", "gate", "routers")
MODELS = ("base", "arith", "code")
ROUTERS = ("embedllm", "routerdc")


def run(*args: str) -> None:
    print("$ " + " ".join(args), flush=True)
    subprocess.run(args, check=True, cwd=ROOT)


def dllg(*args: str) -> None:
    run(sys.executable, "-c", "from dllg.cli.main import main; main()", *args)


def ship(source: Path, name: str) -> None:
    """Replace the asset `name` by a copy of `source` (a temporary copy first, then a rename)."""
    target, scratch = ASSETS_DIR / name, ASSETS_DIR / f".{name}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(source, scratch)
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    print(f"shipped {target.relative_to(ROOT)}", flush=True)


def keep(source: Path, name: str) -> None:
    KEPT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, KEPT / name)


def build_experts(args: argparse.Namespace) -> None:
    models = RUNS / "models"
    run(sys.executable, "scripts/train_world_experts.py", "--out", str(models), "--seed", str(args.seed))
    for name in MODELS:
        ship(models / name, name)
    keep(models / "accuracy.json", "experts-accuracy.json")
    (RUNS / "labels.jsonl").unlink(missing_ok=True)  # answers and states of the old experts
    shutil.rmtree(RUNS / "features", ignore_errors=True)
    shutil.rmtree(RUNS / "gate", ignore_errors=True)


def collect() -> None:
    dllg("collect", "--config", str(CONFIG))  # resumes: answers already labelled are skipped
    keep(RUNS / "labels.jsonl", "labels.jsonl")


def gate() -> None:
    shutil.rmtree(RUNS / "gate", ignore_errors=True)  # the labels may have grown since: train afresh
    dllg("train", "--config", str(CONFIG))
    ship(RUNS / "gate" / "gate", "gate")
    keep(RUNS / "gate" / "log.jsonl", "gate-log.jsonl")


def routers() -> None:
    for kind in ROUTERS:
        dllg("route", "train", "--config", str(CONFIG), "--kind", kind, "--out", str(RUNS / f"router-{kind}"))
        ship(RUNS / f"router-{kind}", f"router-{kind}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from", dest="start", choices=STAGES, default="experts", help="first stage to run")
    parser.add_argument("--seed", type=int, default=0, help="the experts' training seed")
    args = parser.parse_args()
    started = time.perf_counter()
    RUNS.mkdir(parents=True, exist_ok=True)
    ASSETS_DIR.mkdir(parents=True, exist_ok=True)
    steps = {"experts": lambda: build_experts(args), "collect": collect, "gate": gate, "routers": routers}
    for stage in STAGES[STAGES.index(args.start) :]:
        print(f"== {stage}", flush=True)
        steps[stage]()
    print(f"done in {time.perf_counter() - started:.0f}s; assets in {ASSETS_DIR}")


if __name__ == "__main__":
    main()
