"""Resident memory of the real pair on the llama.cpp backend, by expert settings: each setting in a fresh
process (python scripts/llamacpp_memory.py runs them all), before loading, after loading both experts,
after a batch of 8 sequences was prefilled (the resident figure: the mapped weights that decoding reads are
back in memory then; mapped_gb is that file-backed part) and after one 512-token sequence was read with
outputs on every token (teacher forcing: the compute and output buffers of a full batch are in use).

  python scripts/llamacpp_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys

PAIR = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
Q8_KV = {"cache_type_k": "q8_0", "cache_type_v": "q8_0"}
SETTINGS: list[dict[str, object]] = [
    {},  # the KV memory starts at 4096 cells and grows when a batch needs more
    {"context_tokens": 16384},  # fixed: the default before it grew
    {"batch_tokens": 128},
    {"context_tokens": 8192},
    {"context_tokens": 8192, "batch_tokens": 128},
    {"cache_type_v": "q8_0"},
    Q8_KV,
    {"context_tokens": 8192, **Q8_KV},
]
READ_TOKENS = 512


def mapped_gb() -> float:
    """This process's resident file-backed memory now (GB): mapped files, the GGUFs among them."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssFile:"):
                return round(int(line.split()[1]) / 1e6, 2)
    return 0.0


def measure(settings: dict[str, object]) -> dict[str, object]:
    from dllg.bench.decode import resident_gb
    from dllg.experts.llamacpp import LlamaCppExpert
    from dllg.experts.loading import load_expert

    default_init = LlamaCppExpert.__init__

    def with_settings(self, *args, **kwargs) -> None:  # the catalog loader with these expert settings
        default_init(self, *args, **{**kwargs, **settings})

    LlamaCppExpert.__init__ = with_settings  # type: ignore[method-assign]
    before = resident_gb()
    experts = [load_expert(name, backend="llamacpp") for name in PAIR]
    line: dict[str, object] = {"settings": settings or "defaults", "before_gb": before}
    line["loaded_gb"] = resident_gb()
    states = [e.prefill([[1, 2, 3]] * 8)[0] for e in experts]
    line["after_prefill_gb"] = resident_gb()
    line["mapped_gb"] = mapped_gb()
    for expert, state in zip(experts, states, strict=True):
        expert.release(state)
    for expert in experts:
        expert.sequence_states([[100 + i % 500 for i in range(READ_TOKENS)]])
    line["after_read_gb"] = resident_gb()
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
