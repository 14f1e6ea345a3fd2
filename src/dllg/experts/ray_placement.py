"""Experts as Ray actors: each expert lives in its own actor process (any backend, its own device and
cache); the driver runs the one decode loop, the fusion and the gate, and the experts of one step run
concurrently (`Expert.step_later`).

Only what fusion needs crosses the boundary: logits already trimmed to the shared vocabulary (the actor
trims), and hidden states only while the rule reads them (`Expert.outputs_wanted`); a decoding state stays
in the actor and the driver holds its id. Calls that return nothing (drop rows, roll back, free) are not
waited for: an actor runs one caller's calls in order, and their errors surface at the next call that waits.
A step, the call made every token, can go through a Ray compiled graph (a shared-memory channel to the
actor: a shorter round trip than a plain actor call) where Ray can compile one. By default only an actor on a
GPU does: on CPUs the graph's polling slowed the actors' own compute more than it saved on 2 cores
(`dllg bench ray`, results/bench/ray-real-pair-llamacpp.txt).

  RayExpert("qwen2.5-coder-1.5b-instruct", backend="llamacpp", resources={"num_cpus": 1})
  dllg generate --ray local --experts A B ...            (`--ray ADDRESS` joins a running cluster)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from dllg.errors import DllgError
from dllg.experts.expert import Expert, ExpertOutput
from dllg.experts.ray_host import ExpertHost, Packed, unpack

INSTALL_HINT = "pip install 'dllg[ray]'"
LOCAL = "local"  # the address that means: start a Ray instance on this machine
PLACEMENT_TIMEOUT_S = 600.0  # for an actor to be scheduled and load its model
STEP_TIMEOUT_S = 3600.0  # for one step through the compiled graph (Ray's own default is 10 s)
# The step channel's first size: a batch of 16 rows' logits over a 152k vocabulary and their hidden states
# fit without Ray growing the channel (it grows for more).
STEP_BUFFER_BYTES = 16 * 1024 * 1024


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise DllgError(f"placing experts on Ray needs ray: {INSTALL_HINT}") from exc
    return ray


def ensure_ray(address: str | None = None) -> Any:
    """Ray, connected: to `address` (a cluster's "host:port" or "ray://host:10001"), else to a local
    instance started here ("local" or None). An existing connection is kept."""
    ray = import_ray()
    if not ray.is_initialized():
        target = None if address in (None, LOCAL) else address
        try:
            ray.init(address=target, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise DllgError(
                f"cannot connect to Ray at {address!r} ({str(exc).splitlines()[0]}): start the cluster "
                "(`ray start --head`) or give --ray local"
            ) from exc
    return ray


def actor_options(resources: dict[str, float] | None) -> dict[str, Any]:
    """Ray's actor options from one mapping: num_cpus, num_gpus and memory are Ray's own; any other key
    is a custom resource a node must offer (e.g. {"num_gpus": 1, "big_node": 1})."""
    resources = dict(resources or {})
    own = {key: resources.pop(key) for key in ("num_cpus", "num_gpus", "memory") if key in resources}
    for key, value in {**own, **resources}.items():
        if not isinstance(value, int | float) or value < 0:
            raise DllgError(f"resources.{key}={value!r}: give a number of at least 0 (e.g. num_gpus: 1)")
    own.setdefault("num_cpus", 1)
    return {**own, "resources": resources} if resources else own


def check_feasible(ray: Any, name: str, options: dict[str, Any]) -> None:
    """Refuse at once what no node of the cluster offers (Ray would wait for it forever)."""
    total = ray.cluster_resources()
    wanted = {
        "CPU": options.get("num_cpus", 0),
        "GPU": options.get("num_gpus", 0),
        **options.get("resources", {}),
    }
    for key, amount in wanted.items():
        if amount and total.get(key, 0) < amount:
            raise DllgError(
                f"expert {name!r} asks for {amount} {key} but the Ray cluster has {total.get(key, 0)} in "
                "all: lower its resources or add nodes that have them"
            )


@dataclass
class RemoteState:
    """A decoding state that lives in the actor, by its id there."""

    id: int


class RayExpert(Expert):
    """An expert loaded and run by a Ray actor; to the loop, the pool and the rules an expert like any.
    Its outputs arrive on the driver's CPU."""

    runs_elsewhere = True

    def __init__(
        self,
        name: str,
        device: str | torch.device | None = "auto",
        dtype: str | torch.dtype | None = "auto",
        backend: str = "hf",
        resources: dict[str, float] | None = None,
        address: str | None = None,
        llamacpp: dict[str, Any] | None = None,
        compiled_steps: bool | None = None,
    ) -> None:
        self._ray = ensure_ray(address)
        options = actor_options(resources)
        check_feasible(self._ray, name, options)
        threads = max(1, int(options["num_cpus"]))
        actor_class = self._ray.remote(ExpertHost).options(**options)
        self._actor = actor_class.remote(
            name, str(device or "auto"), str(dtype or "auto"), backend, threads, llamacpp
        )
        self._pending: list = []  # calls not waited for: their errors surface at the next wait
        self._send_hidden = True
        try:
            facts = self._wait(self._actor.describe.remote(), timeout=PLACEMENT_TIMEOUT_S, name=name)
        except DllgError:
            self._ray.kill(self._actor)
            raise
        self.backend = facts["backend"]  # type: ignore[misc] - the backend running inside the actor
        self._facts = facts
        super().__init__(facts["name"], facts["tokenizer"], facts["source"])
        if compiled_steps is None:  # where the actor's own compute is not on the CPU that the polling takes
            compiled_steps = bool(options.get("num_gpus"))
        self._step_graph = self._compile_step() if compiled_steps else None

    @property
    def compiled_steps(self) -> bool:
        """Whether steps go through a compiled graph (else plain actor calls: the same outputs, slower)."""
        return self._step_graph is not None

    def _compile_step(self) -> Any | None:
        try:
            from ray.dag import InputNode

            logging.getLogger("ray.dag").setLevel(logging.WARNING)  # its setup and teardown notes
            with InputNode() as call:
                node = self._actor.step_compiled.bind(call)
            return node.experimental_compile(_buffer_size_bytes=STEP_BUFFER_BYTES)
        except Exception:  # a Ray, or a connection (Ray Client), without compiled graphs: plain calls
            return None

    # -- talking to the actor ----------------------------------------------------------------------------

    def _wait(
        self, ref: Any, timeout: float | None = None, name: str | None = None, compiled: bool = False
    ) -> Any:
        """`ref`'s result, after every call not waited for; Ray's errors as one-line DllgErrors. A compiled
        graph's result is waited for on its own (step_later waited for the rest before it)."""
        with self._errors(timeout, name):
            if compiled:  # the calls not waited for stay pending: they are not this result's to wait for
                return self._ray.get(ref, timeout=STEP_TIMEOUT_S)
            pending, self._pending = self._pending, []
            return self._ray.get([*pending, ref], timeout=timeout)[-1]

    @contextlib.contextmanager
    def _errors(self, timeout: float | None = None, name: str | None = None) -> Iterator[None]:
        label = repr(name or getattr(self, "name", "?"))
        try:
            yield
        except self._ray.exceptions.RayChannelTimeoutError as exc:
            raise DllgError(
                f"expert {label} took more than {STEP_TIMEOUT_S:.0f} s for one step in its Ray actor: it "
                "is hung or starved of CPU; give it more (resources) or fewer rows (--batch-size)"
            ) from exc
        except self._ray.exceptions.GetTimeoutError as exc:
            self._ray.kill(self._actor)
            raise DllgError(
                f"expert {label} was not placed and loaded within {timeout:.0f} s: the cluster has no room "
                "for its resources now (other actors hold them); free some, or lower its resources"
            ) from exc
        except self._ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, DllgError):
                raise DllgError(str(cause)) from exc
            last = [line for line in str(exc).splitlines() if line.strip()][-1:]  # "Type: message"
            raise DllgError(f"expert {label} failed in its Ray actor: {' '.join(last)}") from exc
        except (self._ray.exceptions.RayActorError, self._ray.exceptions.RayChannelError) as exc:
            # a dead actor's compiled graph reports a closed channel
            raise DllgError(
                f"expert {label}'s Ray actor died ({type(exc).__name__}): it was killed, its node went away "
                "or it ran out of memory; for the last, give it more (resources) or fewer rows (--batch-size)"
            ) from exc

    def _later(self, method: str, *args: Any) -> None:
        self._pending.append(getattr(self._actor, method).remote(*args))

    def _output(self, sent: tuple[Packed, Packed]) -> ExpertOutput:
        return ExpertOutput(unpack(sent[0]), unpack(sent[1]))

    def _configure(self) -> None:
        self._later("configure", self.vocab_size, self._send_hidden)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @vocab_size.setter
    def vocab_size(self, value: int) -> None:  # the pool trims every expert to the shared vocabulary
        self._vocab_size = value
        self._configure()

    def outputs_wanted(self, hidden: bool) -> None:
        if hidden != self._send_hidden:
            self._send_hidden = hidden
            self._configure()

    # -- what an expert is -------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return self._facts["dtype"]

    @property
    def hidden_size(self) -> int:
        return self._facts["hidden_size"]

    @property
    def output_rows(self) -> int:
        return self._facts["output_rows"]

    def parameter_count(self) -> int:
        return self._facts["parameter_count"]

    @property
    def max_sequence_tokens(self) -> int:
        return self._facts["max_sequence_tokens"]

    def eos_token_ids(self) -> set[int]:
        return set(self._facts["eos_token_ids"])

    # -- decoding ----------------------------------------------------------------------------------------

    def prefill_later(self, prompts: list[list[int]]) -> Callable[[], tuple[RemoteState, ExpertOutput]]:
        ref = self._actor.prefill.remote(prompts)

        def wait() -> tuple[RemoteState, ExpertOutput]:
            sid, sent = self._wait(ref)
            return RemoteState(sid), self._output(sent)

        return wait

    def prefill(self, prompts: list[list[int]]) -> tuple[RemoteState, ExpertOutput]:
        return self.prefill_later(prompts)()

    def step_later(self, state: RemoteState, tokens: torch.Tensor) -> Callable[[], ExpertOutput]:
        if self._step_graph is None:
            ref = self._actor.step.remote(state.id, tokens.cpu())
            return lambda: self._output(self._wait(ref))
        if self._pending:  # they must land first: the actor runs the graph's steps beside its plain calls
            self._wait(self._pending.pop())
        with self._errors():
            ref = self._step_graph.execute((state.id, tokens.cpu()))
        # unpack copies the arrays out of the channel: a view held on would block its next write
        return lambda: self._output(self._wait(ref, compiled=True))

    def step(self, state: RemoteState, tokens: torch.Tensor) -> ExpertOutput:
        return self.step_later(state, tokens)()

    def keep_rows(self, state: RemoteState, rows: torch.Tensor) -> None:
        self._later("keep_rows", state.id, rows.cpu())

    def join(self, state: RemoteState, other: RemoteState) -> None:
        self._later("join", state.id, other.id)

    def rollback(self, state: RemoteState, counts: torch.Tensor) -> None:
        self._later("rollback", state.id, counts.cpu())

    def release(self, state: RemoteState) -> None:
        self._later("release", state.id)

    def sequence_states(
        self, sequences: list[list[int]], starts: list[int] | None = None
    ) -> list[torch.Tensor]:
        return self._wait(self._actor.sequence_states.remote(sequences, starts))

    def mean_nll(self, sequences: list[list[int]]) -> torch.Tensor:
        return self._wait(self._actor.mean_nll.remote(sequences))

    def generate_alone(self, prompts: list[list[int]], new_tokens: int) -> None:
        self._wait(self._actor.generate_alone.remote(prompts, new_tokens))

    def busy_seconds(self) -> float:
        """Seconds the actor has spent computing steps and prefills (benchmarks: the rest is transport)."""
        return self._wait(self._actor.busy_seconds.remote())

    def __del__(self) -> None:
        # the compiled graph holds the actor's handle for the process's life: end both with the expert
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        """End the actor (its model and states go with it)."""
        graph, self._step_graph = self._step_graph, None
        if graph is not None:
            with contextlib.suppress(Exception):  # an actor already dead cannot cancel its graph loop
                graph.teardown()
        self._ray.kill(self._actor)
