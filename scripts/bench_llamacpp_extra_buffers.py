"""What leaving llama.cpp's extra weight buffers off costs: the step time of each real expert generating
alone (llama.cpp's own loop) with its weights repacked (extra buffers on, the default where the build has no
AMX) and as stored (off, what the backend falls back to where the build has AMX), in one run.

    .venv/bin/python scripts/bench_llamacpp_extra_buffers.py --batch-sizes 1,8

Needs a llama-cpp-python built without AMX (`make llamacpp`): with AMX, extra buffers on would crash.
"""

import argparse

import dllg.experts.llamacpp as llamacpp_backend
from dllg.bench.decode import encode, own_generate_runner, step_time
from dllg.experts import ExpertPool
from dllg.experts.device import cpu_description
from dllg.experts.llamacpp_context import amx_in_use, import_llama_cpp
from dllg.experts.loading import load_expert

PAIR = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experts", nargs="+", default=list(PAIR))
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    llama = import_llama_cpp()
    if amx_in_use(llama):
        raise SystemExit("this llama-cpp-python was built with AMX: rebuild it with `make llamacpp` first")
    print(f"# llama.cpp system info: {llama.llama_print_system_info().decode().strip()}")
    print(f"# CPU: {cpu_description()}")
    for name in args.experts:
        for extra in (True, False):
            # the backend decides from the build; here both settings are asked for on the same build
            llamacpp_backend.amx_in_use = lambda _llama, on=extra: not on
            pool = ExpertPool([load_expert(name, backend="llamacpp")])
            expert = pool.experts[0]
            assert expert.extra_buffers is extra
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                timing = step_time(
                    own_generate_runner(expert, encode(pool, batch)), args.new_tokens, args.repeats
                )
                print(
                    f"expert={name} extra_buffers={extra} batch={batch} "
                    f"step_ms={1000 * timing.step_seconds:.2f} tok_s={timing.tokens_per_second(batch):.1f}"
                )
            del pool, expert  # frees the llama.cpp model and context before the next load


if __name__ == "__main__":
    main()
