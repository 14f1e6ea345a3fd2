"""Load test of `dllg serve`: N concurrent streaming clients for a bounded time, beside the decode loop's own
speed on the same experts measured in the same run.

  python scripts/serve_load.py --experts world:arith world:code --gate world:gate --clients 8 32 --duration 60

It first times the fused loop alone (batch 1 and batch 8, fixed-length answers, prefill excluded: the
figures of `dllg bench decode`), then starts `dllg serve` in a subprocess on a free loopback port (or uses
--url), and for each client count runs that many clients, each sending chat requests one after another
(streamed, fixed-length answers) until the time is up. Per phase it prints requests/s, latency and
time-to-first-token percentiles, errors, lost requests (no complete answer) and the server's generated
tokens/s (from its /health counters, over the phase's steady part). Lines are `key=value`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import torch

from dllg.bench.decode import PROMPTS, encode, format_line, machine_line, step_time
from dllg.cli.serve import pool_and_rule
from dllg.experts import ExpertPool
from dllg.fusion import FusionRule


@dataclass
class Outcome:
    latency: float
    first_token: float | None = None
    tokens: int = 0
    error: str | None = None
    lost: bool = False


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server to load (default: start one)")
    parser.add_argument("--experts", nargs="+", default=["world:arith", "world:code"])
    parser.add_argument(
        "--fusion", default=None, help="fusion rule (default: dllg with --gate, else uniform)"
    )
    parser.add_argument("--gate", default=None, help="a gate folder or world:gate")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="hf", help="hf or llamacpp (the experts' kept GGUFs)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--clients", nargs="+", type=int, default=[32], help="one phase per client count")
    parser.add_argument("--duration", type=float, default=60, help="seconds each phase sends requests")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per answer (min_tokens too)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, here and in the server")
    parser.add_argument("--repeats", type=int, default=3, help="decode-loop timings: best of this many")
    parser.add_argument("--grace", type=float, default=120, help="seconds a request may take before lost")
    return parser.parse_args()


def bench_loop(args: argparse.Namespace, pool: ExpertPool, rule: FusionRule) -> dict[str, float]:
    """The fused loop's tokens/s at batch 1 and 8 per decode step (dllg.bench.decode's timing, prefill
    subtracted: the issue's reference), and at batch 8 end to end (a whole `generate` call over 8 prompts,
    prefill included: what a server must also do for every request), on this process's CPU."""
    from dllg.decode import GenerationConfig, generate

    speeds = {}
    for batch in (1, 8):
        prompts = encode(pool, batch)

        def run(new_tokens: int, prompts: list[list[int]] = prompts) -> None:
            config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
            generate(pool, rule, prompts, config)

        speeds[f"batch{batch}_tok_s"] = step_time(run, args.max_tokens, args.repeats).tokens_per_second(batch)
        if batch == 8:
            start = time.perf_counter()
            run(args.max_tokens)
            speeds["batch8_e2e_tok_s"] = batch * args.max_tokens / (time.perf_counter() - start)
    return speeds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-c", "from dllg.cli.main import main; main()", "serve", "--experts"]
    command += [*args.experts, "--device", args.device, "--dtype", args.dtype, "--port", str(port)]
    command += ["--backend", args.backend]
    command += ["--max-batch", str(args.max_batch), "--max-queue", str(args.max_queue)]
    command += ["--threads", str(args.threads)]
    command += ["--gate", args.gate] if args.gate else []
    command += ["--fusion", args.fusion] if args.fusion else []
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read() if server.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not answer /health within 180 s")


async def one_request(client: httpx.AsyncClient, model: str, prompt: str, max_tokens: int) -> Outcome:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "min_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    outcome = Outcome(0.0, lost=True)
    finished = False
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                outcome.error, outcome.lost = f"{response.status_code}: {text[:200]}", False
            else:
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        outcome.lost = not finished
                        break
                    chunk = json.loads(line[len("data: ") :])
                    if "error" in chunk:
                        outcome.error, outcome.lost = chunk["error"]["message"], False
                        break
                    for choice in chunk["choices"]:
                        if choice["delta"].get("content") and outcome.first_token is None:
                            outcome.first_token = time.perf_counter() - start
                        finished = finished or choice["finish_reason"] is not None
                    if chunk.get("usage"):
                        outcome.tokens = chunk["usage"]["completion_tokens"]
    except httpx.HTTPError as exc:
        outcome.error, outcome.lost = f"{type(exc).__name__}: {exc}", False
    outcome.latency = time.perf_counter() - start
    return outcome


async def client_loop(
    client: httpx.AsyncClient, model: str, index: int, deadline: float, max_tokens: int, out: list[Outcome]
) -> None:
    sent = 0
    while time.monotonic() < deadline:
        out.append(await one_request(client, model, PROMPTS[(index + sent) % len(PROMPTS)], max_tokens))
        sent += 1


async def counters(client: httpx.AsyncClient) -> tuple[int, int]:
    """The server's generated tokens and decode steps so far."""
    health = (await client.get("/health")).json()
    return health["generated_tokens"], health["steps"]


async def run_phase(url: str, model: str, clients: int, args: argparse.Namespace) -> dict[str, object]:
    outcomes: list[Outcome] = []
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    timeout = httpx.Timeout(args.grace, connect=30)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        start = time.monotonic()
        deadline = start + args.duration
        warm_up = min(5.0, args.duration / 6)  # the steady part: all clients sending, the batch full
        loops = [client_loop(client, model, i, deadline, args.max_tokens, outcomes) for i in range(clients)]
        tasks = [asyncio.ensure_future(loop) for loop in loops]
        await asyncio.sleep(warm_up)
        steady_from, (tokens_from, steps_from) = time.monotonic(), await counters(client)
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        steady_to, (tokens_to, steps_to) = time.monotonic(), await counters(client)
        await asyncio.gather(*tasks)
        wall = time.monotonic() - start
    ok = [o for o in outcomes if o.error is None and not o.lost]
    latencies = sorted(o.latency for o in ok)
    firsts = sorted(o.first_token for o in ok if o.first_token is not None)
    return {
        "clients": clients,
        "requests": len(outcomes),
        "ok": len(ok),
        "errors": sum(o.error is not None for o in outcomes),
        "lost": sum(o.lost for o in outcomes),
        "wall_s": round(wall, 1),
        "requests_per_s": round(len(ok) / wall, 2),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "ttft_p50_s": percentile(firsts, 50),
        "ttft_p99_s": percentile(firsts, 99),
        "client_tok_s": round(sum(o.tokens for o in ok) / wall, 1),
        "server_tok_s": round((tokens_to - tokens_from) / (steady_to - steady_from), 1),
        "server_steps_s": round((steps_to - steps_from) / (steady_to - steady_from), 1),
        "rows_per_step": round((tokens_to - tokens_from) / max(1, steps_to - steps_from), 2),
        "first_error": next((o.error for o in outcomes if o.error), None),
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))], 3)


def report_loop(when: str, speeds: dict[str, float]) -> None:
    print(format_line({"loop": when, **{k: round(v, 1) for k, v in speeds.items()}}), flush=True)


def main() -> None:
    args = parse_args()
    print(f"# python {' '.join(sys.argv)}", flush=True)
    torch.set_num_threads(args.threads)
    print(format_line(machine_line()), flush=True)
    pool, rule = pool_and_rule(
        None, args.experts, args.fusion, args.gate, {}, args.device, args.dtype, args.backend
    )
    print(format_line({"experts": "+".join(pool.names), "rule": rule.name, "gate": args.gate}), flush=True)
    before = bench_loop(args, pool, rule)
    report_loop("before", before)
    server = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        server, url = start_server(args)
    try:
        model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        phases = []
        for clients in args.clients:
            phases.append(asyncio.run(run_phase(url, model, clients, args)))
            print(format_line(phases[-1]), flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    # timed again: on a shared machine the loop's own speed drifts; the server is compared with the mean
    after = bench_loop(args, pool, rule)
    report_loop("after", after)
    batch8 = (before["batch8_tok_s"] + after["batch8_tok_s"]) / 2
    batch8_e2e = (before["batch8_e2e_tok_s"] + after["batch8_e2e_tok_s"]) / 2
    for phase in phases:
        ratio = phase["server_tok_s"] / batch8
        verdict = {"clients": phase["clients"], "server_over_loop_batch8": round(ratio, 3)}
        verdict["server_over_loop_batch8_e2e"] = round(phase["server_tok_s"] / batch8_e2e, 3)
        if phase["clients"] >= 32:
            verdict["target_no_errors_no_lost"] = phase["errors"] == 0 and phase["lost"] == 0
        if phase["clients"] == 8:
            verdict["target_8_clients_0.8x_batch8"] = ratio >= 0.8
        print(format_line(verdict), flush=True)


if __name__ == "__main__":
    main()
