"""Teacher forcing on each backend: how fast each expert reads (prompt, reference answer) sequences, and how
far apart the two backends' hidden states are on the same tokens (the gate's inputs).

Real training prompts with their reference answers, one sequence at a time (the fastest on HF here: a
batch pads), only the answer's states read (`sequence_states(..., starts)`), as `dllg train` does it.

    python scripts/teacher_forcing_backends.py --experts qwen2.5-coder-0.5b-instruct \
        qwen2.5-coder-1.5b-instruct --task dataframebench --limit 4
"""

import argparse
import time

import torch

from dllg.bench.decode import format_line, machine_line
from dllg.decode.prompts import encode_prompt
from dllg.experts.loading import load_expert
from dllg.tasks import get_task

BACKENDS = ("hf", "llamacpp")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", nargs="+", required=True)
    parser.add_argument("--task", default="dataframebench")
    parser.add_argument("--limit", type=int, default=4, help="training examples read")
    parser.add_argument("--max-response-tokens", type=int, default=768, help="features.max_response_tokens")
    args = parser.parse_args()
    print(format_line(machine_line()), flush=True)
    examples = get_task(args.task).load("train", limit=args.limit)
    for name in args.experts:
        states = {}
        for backend in BACKENDS:
            expert = load_expert(name, backend=backend)
            tokenizer = expert.tokenizer
            prompts = [encode_prompt(tokenizer, e.messages) for e in examples]
            answers = [
                tokenizer(e.metadata["solution"], add_special_tokens=False)["input_ids"][
                    : args.max_response_tokens
                ]
                for e in examples
            ]
            sequences = [p + a[:-1] for p, a in zip(prompts, answers, strict=True)]
            starts = [len(p) - 1 for p in prompts]
            expert.sequence_states(sequences[:1], starts[:1])  # warm-up
            start = time.perf_counter()
            states[backend] = [
                expert.sequence_states([s], [b])[0].float() for s, b in zip(sequences, starts, strict=True)
            ]
            seconds = time.perf_counter() - start
            tokens = sum(len(s) for s in sequences)
            line = {"expert": name, "backend": backend, "dtype": str(expert.dtype).removeprefix("torch.")}
            line |= {"sequences": len(sequences), "tokens": tokens, "answer_tokens": sum(map(len, answers))}
            print(
                format_line(line | {"seconds": round(seconds, 1), "tok_s": round(tokens / seconds, 1)}),
                flush=True,
            )
            del expert
        hf, llama = torch.cat(states["hf"]), torch.cat(states["llamacpp"])
        cosine = torch.nn.functional.cosine_similarity(hf, llama, dim=-1)
        relative = (hf - llama).norm(dim=-1) / hf.norm(dim=-1)
        gap = {"expert": name, "states": len(hf), "cosine_mean": round(cosine.mean().item(), 5)}
        gap |= {
            "cosine_min": round(cosine.min().item(), 5),
            "relative_error_mean": round(relative.mean().item(), 4),
        }
        print(format_line(gap | {"relative_error_max": round(relative.max().item(), 4)}), flush=True)


if __name__ == "__main__":
    main()
