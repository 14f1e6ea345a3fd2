"""Train the synthetic world's two tiny Qwen2 experts from scratch: one on arithmetic, one on code.

Neither expert sees a mixed problem. At the end each expert answers every family's test split greedily
through the project's decode loop (rule `single`) and is scored by the real verifiers.

    nice -n 10 .venv/bin/python scripts/train_world_experts.py --out runs/world

Writes OUT/tokenizer, OUT/arith and OUT/code (HF folders: weights, config, tokenizer) and
OUT/accuracy.json. Seeded: the same arguments on the same machine give the same experts.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from dllg.decode import GenerationConfig, generate
from dllg.decode.prompts import encode_prompt
from dllg.experts import Expert, ExpertPool
from dllg.fusion import make_rule
from dllg.tasks.base import Example
from dllg.tasks.scoring import verify_responses
from dllg.world.families import FAMILIES
from dllg.world.tasks import WORLD_TASKS
from dllg.world.tokenizer import build_world_tokenizer, save_world_tokenizer

IGNORE = -100


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/world"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1200, help="optimizer steps per expert")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--eval-limit", type=int, default=100, help="test problems per family to score")
    parser.add_argument(
        "--threads", type=int, default=1, help="more threads spin against each other on a shared CPU"
    )
    parser.add_argument("--log-every", type=int, default=50)
    return parser.parse_args()


def encode_example(tokenizer: PreTrainedTokenizerFast, example: Example) -> tuple[list[int], list[int]]:
    """Prompt through the chat template, then the reference solution and <|im_end|>; loss on the latter."""
    prompt = encode_prompt(tokenizer, example.messages)
    answer = tokenizer(example.metadata["solution"], add_special_tokens=False)["input_ids"]
    answer = [*answer, tokenizer.eos_token_id]
    return prompt + answer, [IGNORE] * len(prompt) + answer


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right padding: padded positions are masked out of attention and of the loss."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
        mask[i, : len(row_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def new_model(tokenizer: PreTrainedTokenizerFast, hidden: int, layers: int, seed: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def lr_at(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over the first 5% of steps, then cosine decay to 5% of the peak."""
    warmup = max(1, steps // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_expert(family: str, tokenizer: PreTrainedTokenizerFast, args: argparse.Namespace, seed: int):
    """Train one expert on one family's training split only."""
    examples = WORLD_TASKS[family].load("train", training=True)
    encoded = [encode_example(tokenizer, e) for e in examples]
    model = new_model(tokenizer, args.hidden, args.layers, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    order = torch.Generator().manual_seed(seed)
    model.train()
    start, batches = time.perf_counter(), []
    for step in range(args.steps):
        if not batches:  # a fresh seeded shuffle each epoch
            batches = torch.randperm(len(encoded), generator=order).split(args.batch_size)
            batches = [b for b in batches if len(b) == args.batch_size][::-1]
        batch = collate([encoded[i] for i in batches.pop().tolist()], tokenizer.pad_token_id)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            print(f"[{family}] step {step + 1}/{args.steps} loss {loss.item():.4f} "
                  f"{time.perf_counter() - start:.0f}s", flush=True)  # fmt: skip
    return model.eval()


def accuracy(expert: Expert, examples: list[Example], max_new_tokens: int = 96) -> float:
    """Greedy answers through the project's decode loop, judged by the real verifiers."""
    pool = ExpertPool([expert])
    prompts = [encode_prompt(expert.tokenizer, e.messages) for e in examples]
    config = GenerationConfig(max_new_tokens=max_new_tokens)
    with torch.no_grad():
        generations = generate(pool, make_rule("single", expert=0), prompts, config)
    verdicts = verify_responses(examples, [g.text for g in generations], max_workers=2)
    return sum(v.passed for v in verdicts) / len(verdicts)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_world_tokenizer()
    save_world_tokenizer(tokenizer, args.out / "tokenizer")
    print(f"tokenizer: {len(tokenizer)} tokens", flush=True)

    test_sets = {f: WORLD_TASKS[f].load("test", limit=args.eval_limit) for f in FAMILIES}
    table: dict[str, dict[str, float]] = {}
    for index, skill in enumerate(("arith", "code")):
        model = train_expert(skill, tokenizer, args, seed=args.seed * 100 + index)
        folder = args.out / skill
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
        expert = Expert(f"world-{skill}", model, tokenizer, source=str(folder))
        table[skill] = {f: accuracy(expert, test_sets[f]) for f in FAMILIES}
        print(f"[{skill}] test accuracy: {json.dumps(table[skill])}", flush=True)

    elapsed = time.perf_counter() - started
    settings = {k: str(v) for k, v in vars(args).items()}
    summary = {"accuracy": table, "seconds": round(elapsed), "args": settings}
    (args.out / "accuracy.json").write_text(json.dumps(summary, indent=2))
    print("\nexpert  " + "  ".join(f"{f:>6}" for f in FAMILIES))
    for skill, row in table.items():
        print(f"{skill:<7} " + "  ".join(f"{row[f]:6.1%}" for f in FAMILIES))
    print(f"total {elapsed:.0f}s; experts in {args.out}")


if __name__ == "__main__":
    main()
