"""The engine: one thread that owns the decode loop (a `Decoder`, which is not thread-safe) and runs it step
by step for every request in flight (continuous batching).

HTTP handlers (on the event loop) `submit` jobs and `cancel` them through a thread-safe inbox; between two
steps the engine takes them in, lets queued jobs join the batch (at most `max_batch` rows), and sends each
job what the step gave it through the job's asyncio queue (`loop.call_soon_threadsafe`). A step that raises
fails the jobs in the batch (500) and the engine goes on with a fresh batch; nothing takes the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from dllg.decode.config import GenerationConfig
from dllg.decode.loop import Decoder, Generation, Update
from dllg.experts import ExpertPool
from dllg.fusion import FusionRule

log = logging.getLogger("dllg.serve")
IDLE_POLL_SECONDS = 0.1  # how often an idle engine looks at timeouts and whether to stop


class ServeError(Exception):
    """A request the server cannot serve: an HTTP status and an OpenAI error type with the message."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


@dataclass
class Event:
    """What one step gave a job: new tokens (with weights), and its result or the error that ended it."""

    tokens: list[int]
    weights: torch.Tensor  # (len(tokens), K)
    finished: Generation | None = None
    error: ServeError | None = None


@dataclass(eq=False)
class Job:
    prompt: list[int]
    config: GenerationConfig
    loop: asyncio.AbstractEventLoop
    scored_prompt: list[int] | None = None
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    deadline: float = float("inf")
    request: int | None = None  # its id in the decoder once submitted there
    timed_out: bool = False
    done: bool = False  # its last event is sent (only the engine thread writes this)


@dataclass
class EngineStats:
    running: int = 0  # rows in the batch
    queued: int = 0  # accepted, waiting for a row
    generated_tokens: int = 0
    steps: int = 0
    finished: int = 0
    cancelled: int = 0
    timed_out: int = 0
    failed: int = 0  # requests failed by an error
    failed_steps: int = 0


def _put_all(events: list[tuple[Job, Event]]) -> None:
    for job, event in events:
        job.events.put_nowait(event)


class Engine:
    def __init__(
        self,
        pool: ExpertPool,
        rule: FusionRule,
        max_batch: int = 8,
        max_queue: int = 64,
        timeout: float = 600.0,
        drafter: str = "none",
    ) -> None:
        if max_batch < 1 or max_queue < 0 or not timeout > 0:
            raise ValueError(f"max_batch={max_batch}, max_queue={max_queue}, timeout={timeout}: out of range")
        self.pool, self.rule, self.drafter = pool, rule, drafter
        self.max_batch, self.max_queue, self.timeout = max_batch, max_queue, timeout
        self.context = pool.max_sequence_tokens()
        self._decoder = self._new_decoder()  # a rule that cannot run on these experts fails here, at start
        self._inbox: queue.SimpleQueue[tuple[str, Job]] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards the in-flight count that admission reads
        self._in_flight = 0
        self._pending: deque[Job] = deque()  # accepted, not yet in the decoder
        self._jobs: dict[int, Job] = {}  # the decoder's request id -> job
        self._outbox: dict[
            asyncio.AbstractEventLoop, list[tuple[Job, Event]]
        ] = {}  # events not yet handed out
        self.stats = EngineStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _new_decoder(self) -> Decoder:
        return Decoder(self.pool, self.rule, self.drafter, max_rows=self.max_batch)

    # -- the handlers' side (any thread) -----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Accept a job, or refuse it with 429 when `max_batch` run and `max_queue` wait already."""
        with self._lock:
            if self._in_flight >= self.max_batch + self.max_queue:
                raise ServeError(
                    429,
                    f"the server is full: {self.max_batch} requests running and {self.max_queue} queued "
                    "(dllg serve --max-batch / --max-queue); retry later",
                    "rate_limit_error",
                )
            self._in_flight += 1
        job.deadline = time.monotonic() + self.timeout
        self._inbox.put(("submit", job))

    def cancel(self, job: Job) -> None:
        """Stop a job whose client went away: it leaves the batch at the next step."""
        self._inbox.put(("cancel", job))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="dllg-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # -- the engine thread -----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._iterate()
                except (
                    Exception
                ) as exc:  # the batch's state is unknown now: its jobs fail, the engine goes on
                    log.exception(
                        "a decode step failed; failing the %d requests in the batch", len(self._jobs)
                    )
                    self._fail_batch(exc)
                self._flush()
        finally:
            self._close_all()
            self._flush()

    def _iterate(self) -> None:
        """Take in new jobs and cancellations, then one decode step for every running job."""
        self._take_inbox(block=not (self._decoder.active or self._pending))
        self._expire(time.monotonic())
        self._admit()
        if self._decoder.active:
            updates = self._decoder.step()
            self.stats.steps += 1
            for update in updates:
                self._deliver(update)
        self._update_counts()

    def _fail_batch(self, exc: Exception) -> None:
        """Fail every job in the decoder with a 500 and start a fresh one; queued jobs wait on."""
        self.stats.failed_steps += 1
        error = ServeError(500, f"the decode step failed: {type(exc).__name__}: {exc}", "server_error")
        for job in list(self._jobs.values()):
            if not job.done:
                self._send(job, Event([], torch.zeros(0, len(self.pool)), error=error))
        self._jobs.clear()
        try:
            self._decoder.close()
        except Exception:
            log.exception("freeing the failed batch raised too")
        self._decoder = self._new_decoder()
        self._update_counts()

    def _take_inbox(self, block: bool) -> None:
        try:
            command, job = self._inbox.get(timeout=IDLE_POLL_SECONDS) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if command == "submit":
                self._pending.append(job)
            else:
                self._cancel(job)
            try:
                command, job = self._inbox.get_nowait()
            except queue.Empty:
                break
        self._update_counts()

    def _cancel(self, job: Job) -> None:
        if job.done:
            return
        if job.request is not None:
            self._decoder.cancel(job.request)  # its "cancelled" update comes at the next step
        elif job in self._pending:
            self._pending.remove(job)
            self._finish_unstarted(job)

    def _finish_unstarted(self, job: Job) -> None:
        empty = torch.zeros(0, len(self.pool))
        if job.timed_out:
            self._send(job, Event([], empty, error=self._timeout_error()))
        else:
            self._send(
                job, Event([], empty, finished=Generation("", [], empty, "cancelled", self.pool.names))
            )

    def _timeout_error(self) -> ServeError:
        return ServeError(
            504,
            f"the request ran past the server's timeout of {self.timeout:g} s: ask for fewer tokens "
            "(max_tokens) or start the server with a longer --timeout",
            "timeout_error",
        )

    def _expire(self, now: float) -> None:
        for job in [j for j in self._pending if j.deadline <= now]:
            job.timed_out = True
            self._cancel(job)
        for job in [j for j in self._jobs.values() if j.deadline <= now and not j.timed_out]:
            job.timed_out = True
            self._cancel(job)

    def _admit(self) -> None:
        """Hand queued jobs to the decoder while rows are free (the decoder lets them join at its step)."""
        while self._pending and self._decoder.running + self._decoder.waiting < self.max_batch:
            job = self._pending.popleft()
            scored = [job.scored_prompt] if job.scored_prompt is not None else None
            try:
                (job.request,) = self._decoder.submit([job.prompt], job.config, scored)
            except Exception as exc:
                error = ServeError(400, str(exc))
                self._send(job, Event([], torch.zeros(0, len(self.pool)), error=error))
                continue
            self._jobs[job.request] = job

    def _deliver(self, update: Update) -> None:
        job = self._jobs.get(update.request)
        if job is None:
            return
        self.stats.generated_tokens += len(update.tokens)
        event = Event(update.tokens, update.weights, update.finished)
        if update.error is not None:
            event.error = ServeError(500, f"the request failed to start: {update.error}", "server_error")
        elif update.finished is not None and update.finished.finish_reason == "cancelled" and job.timed_out:
            event.finished, event.error = None, self._timeout_error()
        if event.error is not None or event.finished is not None:
            del self._jobs[update.request]
        self._send(job, event)

    def _send(self, job: Job, event: Event) -> None:
        """Hand the event to the job's event loop; a job's last event also frees its place."""
        last = event.error is not None or event.finished is not None
        if last:
            job.done = True
            with self._lock:
                self._in_flight -= 1
            if event.error is not None:
                self.stats.timed_out += event.error.status == 504
                self.stats.failed += event.error.status != 504
            elif event.finished is not None and event.finished.finish_reason == "cancelled":
                self.stats.cancelled += 1
            else:
                self.stats.finished += 1
        self._outbox.setdefault(job.loop, []).append((job, event))

    def _flush(self) -> None:
        """Hand the events out: one wake-up per event loop for all of them, not one per job."""
        for loop, events in self._outbox.items():
            with contextlib.suppress(RuntimeError):  # its event loop is closed: the server is going down
                loop.call_soon_threadsafe(_put_all, events)
        self._outbox = {}

    def _update_counts(self) -> None:
        self.stats.running = self._decoder.running
        self.stats.queued = len(self._pending) + self._decoder.waiting

    def _close_all(self) -> None:
        """The server stops: every job still in flight gets an error, the batch is freed."""
        error = ServeError(503, "the server is shutting down: retry on another server", "server_error")
        while True:
            try:
                command, job = self._inbox.get_nowait()
            except queue.Empty:
                break
            if command == "submit":
                self._pending.append(job)
        for job in [*self._pending, *self._jobs.values()]:
            if not job.done:
                self._send(job, Event([], torch.zeros(0, len(self.pool)), error=error))
        self._pending.clear()
        self._jobs.clear()
        self._decoder.close()
        self._update_counts()
