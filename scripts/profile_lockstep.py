"""Where the fused loop's time goes at batch 1: each expert's cached step alone, both in lock-step, and the
fusion itself. Prints key=value lines. Usage: python scripts/profile_lockstep.py [EXPERT ...]"""

import sys
import time

import torch

from dllg import Ensemble
from dllg.decode.lockstep import LockstepExperts
from dllg.decode.step_inputs import fusion_input
from dllg.fusion import make_rule

STEPS = 12


def step_ms(experts, prompt: list[int]) -> tuple[float, list]:
    batch = LockstepExperts(experts)
    states, outputs = batch.prefill([prompt])
    batch.join(states)
    token = torch.tensor([[100]])  # (rows, positions)
    start = time.perf_counter()
    for _ in range(STEPS):
        outputs = batch.step(token)
    elapsed = time.perf_counter() - start
    batch.close()
    return elapsed / STEPS * 1000, outputs


def main() -> None:
    names = sys.argv[1:] or ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
    ensemble = Ensemble(names)
    prompt = ensemble.encode("Write a Python function that reverses a string.")
    alone = []
    for expert in ensemble.pool.experts:
        ms, _ = step_ms([expert], prompt)
        alone.append(ms)
        print(f"expert={expert.name} dtype={str(expert.dtype).removeprefix('torch.')} step_ms={ms:.1f}")
    together, outputs = step_ms(ensemble.pool.experts, prompt)
    rule = make_rule("uniform")
    rule.bind(ensemble.names)
    start = time.perf_counter()
    for _ in range(50):
        rule.fuse(fusion_input(outputs, outputs[0].logits.device))
    fuse_ms = (time.perf_counter() - start) / 50 * 1000
    print(
        f"lockstep_step_ms={together:.1f} sum_alone_ms={sum(alone):.1f} "
        f"alternation_ms={together - sum(alone):.1f} fuse_ms={fuse_ms:.2f}"
    )


if __name__ == "__main__":
    main()
