"""How much the shipped gate's weights move when it reads llama.cpp's Q4_K_M states instead of the
transformers states it was trained on (issue 15's reading of why DLLG falls short names this mismatch).

DLLG's own test answers (from the committed records) are read again with teacher forcing through both
experts on each backend, and the gate weighs every answer token from each backend's states. Printed per task
and pooled: the states' relative gap per expert, the gap in the gate's raw outputs and in the 0.5B's share
of the weight (what fusion reads), their correlation, the tokens whose leading expert differs, and (a check
of the reading) how far llama.cpp's teacher-forced weights are from the weights recorded while decoding.
Transformers runs in fp32 (the gate was trained on bf16 states: fp32 is within bf16's rounding of them and
much faster on CPUs without native bf16). Alone, minutes:

  python scripts/gate_backend_gap.py --per-task 3 | tee results/qwen-coder-pair/gate-backend-gap.txt
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import torch

from dllg.decode.prompts import encode_prompt
from dllg.experts.device import cpu_description
from dllg.experts.loading import load_expert
from dllg.gate.checkpoint import load_gate
from dllg.tasks import get_task

EXPERTS = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
GATE = "src/dllg/shipped/qwen-coder-duo"
RECORDS = "results/qwen-coder-pair/eval/records.jsonl"
TASKS = {"humaneval": "test", "gsm8k": "eval", "dataframebench": "test"}


def chosen_records(path: str, method: str, per_task: int) -> list[dict]:
    """The first `per_task` records of `method` per task, in file order."""
    taken: dict[str, list[dict]] = defaultdict(list)
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["method"] == method and len(taken[record["task"]]) < per_task:
            taken[record["task"]].append(record)
    return [r for task in TASKS for r in taken[task]]


@torch.inference_mode()
def raw_weights(gate, states: list[torch.Tensor]) -> torch.Tensor:
    """(T, K) the gate's sigmoid outputs over one answer, from each expert's (T, d) states."""
    hidden = [s.float().unsqueeze(0) for s in states]
    return torch.sigmoid(gate.scores(hidden, None, None))[0]


def share(weights: torch.Tensor) -> torch.Tensor:
    """The 0.5B's share of the weight at each token: what weighted fusion reads."""
    return weights[:, 0] / weights.sum(-1).clamp_min(1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-task", type=int, default=3, help="DLLG answers per task.")
    parser.add_argument("--records", default=RECORDS)
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} UTC, {cpu_description()}, {os.cpu_count()} cores")
    records = chosen_records(args.records, f"dllg:{GATE}", args.per_task)
    gate = load_gate(GATE).eval()
    examples = {
        (task, e.id): e
        for task, split in TASKS.items()
        for e in get_task(task).load(split)
        if any(r["task"] == task and r["example_id"] == e.id for r in records)
    }
    tokenizer = None
    sequences, starts = [], []
    states: dict[str, list[list[torch.Tensor]]] = {}
    for backend in ("hf", "llamacpp"):
        per_expert = []
        for name in EXPERTS:
            started = time.perf_counter()
            expert = load_expert(name, backend=backend, dtype="fp32" if backend == "hf" else "auto")
            if tokenizer is None:
                tokenizer = expert.tokenizer
                for r in records:
                    prompt = encode_prompt(tokenizer, examples[r["task"], r["example_id"]].messages)
                    answer = tokenizer(r["response"], add_special_tokens=False)["input_ids"]
                    # the weight of answer token t is read from the state before it: from the prompt's last
                    # position on, the answer's last token read by nothing
                    sequences.append(prompt + answer[:-1])
                    starts.append(len(prompt) - 1)
            # one answer at a time: no padding, and the llama.cpp memory holds any one of them
            per_expert.append(
                [expert.sequence_states([s], [b])[0] for s, b in zip(sequences, starts, strict=True)]
            )
            print(f"# {backend} {name}: {time.perf_counter() - started:.0f} s", flush=True)
            del expert
        states[backend] = per_expert
    rows: dict[str, list[dict]] = defaultdict(list)
    for i, record in enumerate(records):
        hf = [states["hf"][k][i] for k in range(len(EXPERTS))]
        cpp = [states["llamacpp"][k][i] for k in range(len(EXPERTS))]
        w_hf, w_cpp = raw_weights(gate, hf), raw_weights(gate, cpp)
        recorded = torch.tensor(record["weights"], dtype=torch.float32)
        n = min(len(recorded), len(w_cpp))  # re-tokenising the answer may differ from its generated ids
        rows[record["task"]].append(
            {
                "state_gap": [
                    float((c - h).norm(dim=-1).mean() / h.norm(dim=-1).mean())
                    for h, c in zip(hf, cpp, strict=True)
                ],
                "raw_gap": float((w_cpp - w_hf).abs().mean()),
                "share_gap": float((share(w_cpp) - share(w_hf)).abs().mean()),
                "share_gap_max": float((share(w_cpp) - share(w_hf)).abs().max()),
                "share": (float(share(w_hf).mean()), float(share(w_cpp).mean())),
                "corr": float(torch.corrcoef(torch.stack([share(w_hf), share(w_cpp)]))[0, 1]),
                "lead_flips": float(((share(w_hf) > 0.5) != (share(w_cpp) > 0.5)).float().mean()),
                "recorded_gap": float((w_cpp[:n] - recorded[:n]).abs().mean()),
                "tokens": len(w_hf),
            }
        )
    rows["pooled"] = [row for task in TASKS for row in rows[task]]
    for task, found in rows.items():
        tokens = sum(r["tokens"] for r in found)

        def mean(key: str, found=found, tokens=tokens) -> float:  # token-weighted over the answers
            return sum(r[key] * r["tokens"] for r in found) / tokens

        gaps = [sum(r["state_gap"][k] * r["tokens"] for r in found) / tokens for k in range(len(EXPERTS))]
        share_hf = sum(r["share"][0] * r["tokens"] for r in found) / tokens
        share_cpp = sum(r["share"][1] * r["tokens"] for r in found) / tokens
        print(
            f"task={task} answers={len(found)} tokens={tokens} "
            f"state_gap_0.5b={gaps[0]:.3f} state_gap_1.5b={gaps[1]:.3f} raw_weight_gap={mean('raw_gap'):.4f} "
            f"share_0.5b_hf={share_hf:.3f} share_0.5b_llamacpp={share_cpp:.3f} "
            f"share_gap_mean={mean('share_gap'):.4f} "
            f"share_gap_max={max(r['share_gap_max'] for r in found):.3f} "
            f"share_corr={mean('corr'):.3f} lead_flips={mean('lead_flips'):.4f} "
            f"llamacpp_vs_recorded={mean('recorded_gap'):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
