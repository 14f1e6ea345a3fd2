"""Train the synthetic world's tiny Qwen2 models: a shared base, then an arithmetic and a code expert.

1. The base learns the world's language from the prompts of every family (no answers), so that both
   experts start from one model, as fine-tunes of one base do, and merging them is meaningful.
2. The arithmetic expert learns arithmetic answers, and the derivations of mixed answers (the step lines
   and `k = N`; nothing after).
3. The code expert learns code answers, and the code of mixed answers, with the derivation in its context
   but never in its loss: it reads a derivation, it never learns to make one.
Each also learns the other's easiest case (the code expert one-operation arithmetic, the arithmetic expert
f(x) = x + k), whole answers included. So a mixed problem with two operations and other code needs the
arithmetic expert for the steps and the code expert from the hand-over on; easier ones one expert solves.
At the end each expert answers every family's test split greedily through the project's decode loop
(rule `single`), scored by the real verifiers; `mixed-hard` is the mixed problems tagged needs-both.

    nice -n 10 .venv/bin/python scripts/train_world_experts.py --out runs/world/models

Writes OUT/tokenizer, OUT/base, OUT/arith and OUT/code (HF folders: weights, config, tokenizer) and
OUT/accuracy.json. Seeded (initial weights and batch order); bit-for-bit equality across runs is not checked.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from dllg.decode import GenerationConfig, generate
from dllg.decode.prompts import encode_prompt
from dllg.experts import ExpertPool, HFExpert
from dllg.fusion import make_rule
from dllg.tasks.base import Example
from dllg.tasks.scoring import verify_responses
from dllg.world.families import FAMILIES, mixed_parts
from dllg.world.tasks import WORLD_TASKS
from dllg.world.tokenizer import build_world_tokenizer, save_world_tokenizer

IGNORE = -100


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/world/models"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base-steps", type=int, default=300, help="optimizer steps of the base")
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps per expert")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--eval-limit", type=int, default=100, help="test problems per family to score")
    parser.add_argument("--threads", type=int, default=2, help="1 when the CPU is shared with other work")
    parser.add_argument("--log-every", type=int, default=50)
    return parser.parse_args()


Row = tuple[list[int], list[int]]  # token ids, and the labels (IGNORE where there is no loss)


def encode_answer(
    tokenizer: PreTrainedTokenizerFast, example: Example, context: str, target: str, eos: bool
) -> Row:
    """Prompt through the chat template, `context` (read, no loss), then `target` (and <|im_end|>): loss.

    The cut falls after a newline, where the world's byte-level pre-tokenizer always splits, so the two
    parts tokenize exactly like the whole answer.
    """
    prompt = encode_prompt(tokenizer, example.messages)
    seen = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
    learned = tokenizer(target, add_special_tokens=False)["input_ids"] + (
        [tokenizer.eos_token_id] if eos else []
    )
    assert (
        seen + learned[: len(learned) - eos]
        == tokenizer(context + target, add_special_tokens=False)["input_ids"]
    ), "the answer's cut changed its tokens"
    return prompt + seen + learned, [IGNORE] * (len(prompt) + len(seen)) + learned


def prompt_row(tokenizer: PreTrainedTokenizerFast, example: Example) -> Row:
    """A prompt as plain text for the base: it learns the language, not any answer."""
    ids = tokenizer(example.prompt, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return ids, ids


# Each specialist also knows the other's easiest case: that is what makes some mixed problems solvable
# by one expert alone, and so what gives the gate's response-level labels something to tell apart.
OWN_FAMILY = {"arith": "arith", "code": "code"}
OTHER_EASY = {"arith": ("code", "simple-code"), "code": ("arith", "one-step")}


def training_rows(skill: str, tokenizer: PreTrainedTokenizerFast) -> list[Row]:
    """The expert's own family, the other family's easy problems, and its part of each mixed answer
    (the whole answer when the mixed problem's other half is easy)."""
    other, easy = OTHER_EASY[skill]
    examples = WORLD_TASKS[OWN_FAMILY[skill]].load("train", training=True)
    examples += [e for e in WORLD_TASKS[other].load("train", training=True) if easy in e.metadata["tags"]]
    rows = [encode_answer(tokenizer, e, "", e.metadata["solution"], eos=True) for e in examples]
    for example in WORLD_TASKS["mixed"].load("train", training=True):
        solution = example.metadata["solution"]
        derivation, code = mixed_parts(solution)
        if easy in example.metadata["tags"]:
            rows.append(encode_answer(tokenizer, example, "", solution, eos=True))
        elif skill == "arith":
            rows.append(encode_answer(tokenizer, example, "", derivation, eos=False))
        else:
            rows.append(encode_answer(tokenizer, example, derivation, code, eos=True))
    return rows


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


def train(
    name: str,
    model: Qwen2ForCausalLM,
    rows: list[Row],
    steps: int,
    pad_id: int,
    args: argparse.Namespace,
    seed: int,
) -> Qwen2ForCausalLM:
    """AdamW with warm-up and cosine decay over seeded shuffles of `rows`."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    order = torch.Generator().manual_seed(seed)
    model.train()
    start, batches = time.perf_counter(), []
    for step in range(steps):
        if not batches:  # a fresh seeded shuffle each epoch
            batches = torch.randperm(len(rows), generator=order).split(args.batch_size)
            batches = [b for b in batches if len(b) == args.batch_size][::-1]
        batch = collate([rows[i] for i in batches.pop().tolist()], pad_id)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, args.lr)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.log_every == 0 or step == steps - 1:
            print(f"[{name}] step {step + 1}/{steps} loss {loss.item():.4f} "
                  f"{time.perf_counter() - start:.0f}s", flush=True)  # fmt: skip
    return model.eval()


def accuracy(
    expert: HFExpert, examples: list[Example], given_steps: bool = False, max_new_tokens: int = 96
) -> float:
    """Greedy answers through the project's decode loop, judged by the real verifiers.

    With `given_steps` (mixed problems) the expert continues after the reference's step lines: the
    hand-over a fused decode needs from the code expert.
    """
    pool = ExpertPool([expert])
    heads = [mixed_parts(e.metadata["solution"])[0] if given_steps else "" for e in examples]
    tokenizer = expert.tokenizer
    prompts = [
        encode_prompt(tokenizer, e.messages)
        + (tokenizer(h, add_special_tokens=False)["input_ids"] if h else [])
        for e, h in zip(examples, heads, strict=True)
    ]
    config = GenerationConfig(max_new_tokens=max_new_tokens)
    with torch.no_grad():
        generations = generate(pool, make_rule("single", expert=0), prompts, config)
    responses = [h + g.text for h, g in zip(heads, generations, strict=True)]
    verdicts = verify_responses(examples, responses, max_workers=2)
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
    pad = tokenizer.pad_token_id
    prompts = [
        prompt_row(tokenizer, e) for f in FAMILIES for e in WORLD_TASKS[f].load("train", training=True)
    ]
    base = train("base", new_model(tokenizer, args.hidden, args.layers, args.seed * 100), prompts,
                 args.base_steps, pad, args, seed=args.seed * 100)  # fmt: skip
    base.save_pretrained(str(args.out / "base"))
    tokenizer.save_pretrained(str(args.out / "base"))

    table: dict[str, dict[str, float]] = {}
    for index, skill in enumerate(("arith", "code"), start=1):
        model = copy.deepcopy(base).train()
        model = train(
            skill, model, training_rows(skill, tokenizer), args.steps, pad, args, args.seed * 100 + index
        )
        folder = args.out / skill
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
        expert = HFExpert(f"world-{skill}", model, tokenizer, source=str(folder))
        table[skill] = {f: accuracy(expert, test_sets[f]) for f in FAMILIES}
        hard = [e for e in test_sets["mixed"] if "needs-both" in e.metadata["tags"]]
        table[skill]["mixed-hard"] = accuracy(expert, hard)
        table[skill]["mixed|steps"] = accuracy(expert, test_sets["mixed"], given_steps=True)
        print(f"[{skill}] test accuracy: {json.dumps(table[skill])}", flush=True)

    elapsed = time.perf_counter() - started
    settings = {k: str(v) for k, v in vars(args).items()}
    summary = {"accuracy": table, "seconds": round(elapsed), "args": settings}
    (args.out / "accuracy.json").write_text(json.dumps(summary, indent=2))
    columns = [*FAMILIES, "mixed-hard", "mixed|steps"]
    print("\nexpert  " + "  ".join(f"{c:>11}" for c in columns))
    for skill, row in table.items():
        print(f"{skill:<7} " + "  ".join(f"{row[c]:11.1%}" for c in columns))
    print(f"total {elapsed:.0f}s; experts in {args.out}")


if __name__ == "__main__":
    main()
