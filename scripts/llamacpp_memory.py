"""Resident memory of the real pair on the llama.cpp backend, by context settings: each setting in a fresh
process (python scripts/llamacpp_memory.py runs them all), before loading, after loading both experts and
after a batch of 8 sequences was prefilled.

  python scripts/llamacpp_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys

PAIR = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
SETTINGS = [{}, {"batch_tokens": 128}, {"context_tokens": 8192}, {"context_tokens": 4096}]


def measure(settings: dict[str, int]) -> dict[str, object]:
    from dllg.bench.decode import resident_gb
    from dllg.experts.llamacpp import LlamaCppExpert
    from dllg.experts.loading import load_expert

    default_init = LlamaCppExpert.__init__

    def with_settings(self, *args, **kwargs) -> None:  # the catalog loader with these context settings
        default_init(self, *args, **{**kwargs, **settings})

    LlamaCppExpert.__init__ = with_settings  # type: ignore[method-assign]
    before = resident_gb()
    experts = [load_expert(name, backend="llamacpp") for name in PAIR]
    loaded = resident_gb()
    states = [e.prefill([[1, 2, 3]] * 8)[0] for e in experts]
    line = {"settings": settings or "defaults", "before_gb": before, "loaded_gb": loaded}
    line["after_prefill_gb"] = resident_gb()
    for expert, state in zip(experts, states, strict=True):
        expert.release(state)
    return line


def main() -> None:
    if len(sys.argv) > 1:  # one setting, in this fresh process
        print(json.dumps(measure(json.loads(sys.argv[1]))), flush=True)
        return
    for settings in SETTINGS:
        out = subprocess.run([sys.executable, __file__, json.dumps(settings)], capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        failed = f"{settings}: failed: {out.stderr.strip().splitlines()[-1:]}"
        print(lines[-1] if lines else failed, flush=True)


if __name__ == "__main__":
    main()
