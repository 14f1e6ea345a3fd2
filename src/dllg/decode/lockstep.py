"""The experts of the running batch in lock-step: prefill, step (with drafts), join, roll back, keep rows.

The decode loop (`decode.loop.Decoder`) owns one of these; it never talks to an expert's state directly.
"""

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from dllg.experts.expert import Expert, ExpertOutput


class LockstepExperts:
    """The running experts' decoding states, one per expert for all running rows, stepped together: experts
    elsewhere (Ray actors) start first, in-process ones run in threads when `parallel`."""

    def __init__(self, experts: list[Expert], parallel: bool = False) -> None:
        self.experts = experts
        self.states: list = []
        self._order = sorted(range(len(experts)), key=lambda k: not experts[k].runs_elsewhere)
        # In-process experts step in threads when asked (their own accelerators): torch and llama.cpp
        # release the GIL while they compute.
        local = [k for k in range(len(experts)) if not experts[k].runs_elsewhere]
        self._threads = ThreadPoolExecutor(len(local), "dllg-expert") if parallel and len(local) > 1 else None

    def _prefill_later(self, k: int, prompts: list[list[int]]) -> Callable[[], tuple]:
        expert = self.experts[k]
        if self._threads is None or expert.runs_elsewhere:
            return expert.prefill_later(prompts)
        return self._threads.submit(expert.prefill, prompts).result

    def _step_later(self, k: int, tokens: torch.Tensor) -> Callable[[], ExpertOutput]:
        expert, state = self.experts[k], self.states[k]
        if self._threads is None or expert.runs_elsewhere:
            return expert.step_later(state, tokens)
        return self._threads.submit(expert.step, state, tokens).result

    def prefill(self, prompts: list[list[int]]) -> tuple[list, list[ExpertOutput]]:
        """Every expert reads the prompts into new states; if one fails, the others' states are freed."""
        started, states, outputs = [], {}, {}
        try:
            for k in self._order:  # experts elsewhere first: they work while the local ones do
                started.append((k, self._prefill_later(k, prompts)))
            for k, wait in started:
                states[k], outputs[k] = wait()
        except BaseException:
            for k, wait in started:  # a prefill started elsewhere is waited for, then freed
                if k not in states:
                    with contextlib.suppress(Exception):
                        states[k] = wait()[0]
            for k, state in states.items():
                self.experts[k].release(state)
            raise
        return [states[k] for k in range(len(self.experts))], [outputs[k] for k in range(len(self.experts))]

    @torch.inference_mode()  # the joined caches were made in inference mode
    def join(self, states: list) -> None:
        if not self.states:
            self.states = states
            return
        for expert, state, joining in zip(self.experts, self.states, states, strict=True):
            expert.join(state, joining)

    def step(self, tokens: torch.Tensor) -> list[ExpertOutput]:
        """Feed (B, T) new tokens (one chosen, T - 1 drafted) per running sequence to every expert."""
        tokens = tokens.cpu()
        waits = {k: self._step_later(k, tokens) for k in self._order}
        return [waits[k]() for k in range(len(self.experts))]

    def step_drafting(
        self, last: torch.Tensor, count: int, drafter: int
    ) -> tuple[torch.Tensor, list[ExpertOutput]]:
        """Expert `drafter` drafts `count` tokens after each row's `last` (B, 1) token, greedily, one step
        each, and steps once more past the last draft; the others read [last, drafts] in one step. Its own
        steps are its outputs at those positions: nothing is scored twice. -> drafts (B, count), outputs."""
        expert, state = self.experts[drafter], self.states[drafter]
        fed, own = last.cpu(), []
        for _ in range(count + 1):
            own.append(expert.step(state, fed))
            fed = own[-1].logits[:, -1:].argmax(-1).cpu()
        drafts = torch.cat([o.logits.argmax(-1).cpu() for o in own[:-1]], dim=1)
        feed = torch.cat([last.cpu(), drafts], dim=1)
        waits = {k: self._step_later(k, feed) for k in self._order if k != drafter}
        outputs = [
            ExpertOutput(torch.cat([o.logits for o in own], 1), torch.cat([o.hidden for o in own], 1))
            if k == drafter
            else waits[k]()
            for k in range(len(self.experts))
        ]
        return drafts, outputs

    def rollback(self, counts: torch.Tensor) -> None:
        for expert, state in zip(self.experts, self.states, strict=True):
            expert.rollback(state, counts)

    def keep(self, keep: torch.Tensor) -> None:
        for expert, state in zip(self.experts, self.states, strict=True):
            expert.keep_rows(state, keep)

    def release(self) -> None:
        for expert, state in zip(self.experts, self.states, strict=bool(self.states)):
            expert.release(state)
        self.states = []

    def close(self) -> None:
        self.release()
        if self._threads is not None:
            self._threads.shutdown(wait=False)
