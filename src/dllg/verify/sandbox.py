"""Run untrusted Python in a bubblewrap sandbox and judge it by a secret token, never by its exit code.

Isolation, each layer for a reason:
- bubblewrap: new pid, net, ipc, uts and cgroup namespaces (no network, not even the host's loopback;
  every process dies with the sandbox), `/` read-only, a fresh size-capped tmpfs as /tmp and working
  directory, the home directories, /run and the dllg cache hidden behind empty tmpfs.
- an unprivileged uid (nobody) with no capabilities: root-only files stay unreadable and the rlimits
  that `harness.py` sets (CPU, address space, file size) cannot be raised again.
- a v1 pids cgroup per run caps the process count: RLIMIT_NPROC does not bind root, and a fork bomb
  must not reach the shared machine. Without that cgroup (none writable here, or `pids_cgroup=False`),
  RLIMIT_NPROC (`Limits.nproc_backstop`, counted over all of nobody's processes) caps it where the run
  drops to nobody, and the pid namespace and the wall-clock kill bound it in time.
- a scrubbed environment, stdout/stderr capped (the rest is read and dropped), a wall-clock timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

from dllg.errors import DllgError
from dllg.paths import cache_dir
from dllg.verify.base import TestKind, Verdict, map_bounded

# One script: the guard against lying results, then the runner that uses it (see harness.py).
HARNESS_SOURCE = "\n\n".join(
    (Path(__file__).with_name(name)).read_text() for name in ("result_guard.py", "harness.py")
)
PIDS_CGROUP_ROOT = Path("/sys/fs/cgroup/pids")
NOBODY = 65534
# Single-threaded numeric libraries: thread pools reserve address space that RLIMIT_AS counts.
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "POLARS_MAX_THREADS": "1",
}


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 20.0
    cpu_seconds: int = 15
    memory_bytes: int = 4 << 30
    max_processes: int = 32
    max_output_bytes: int = 64 << 10
    max_file_bytes: int = 16 << 20
    tmpfs_bytes: int = 64 << 20
    nproc_backstop: int = 1024


@dataclass(frozen=True)
class Job:
    """A program and the tests to run after it (see `Reference.test_kind`)."""

    program: str
    tests: str = ""
    test_kind: TestKind = "script"
    # Overrides both the wall-clock and the CPU limit for this job (library-heavy tasks need more).
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class RunResult:
    verdict: Verdict
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    seconds: float = 0.0


def find_bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise DllgError(
            "the code sandbox needs bubblewrap, which is not installed: apt-get install -y bubblewrap"
        )
    return path


class _PidsCgroup:
    """One v1 pids cgroup for one run: caps its processes, and lists them for the final kill."""

    def __init__(self, root: Path, max_processes: int) -> None:
        self.path = root / f"run-{uuid.uuid4().hex[:12]}"
        self.path.mkdir()
        (self.path / "pids.max").write_text(str(max_processes))

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def close(self) -> None:
        # Anything still in the group (a child that escaped the namespace teardown) is killed first.
        for _ in range(50):
            try:
                pids = [int(p) for p in self.procs_file.read_text().split()]
            except FileNotFoundError:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


def pids_cgroup_root() -> Path | None:
    """The writable parent for per-run pids cgroups, or None where this machine has none."""
    root = PIDS_CGROUP_ROOT / "dllg"
    try:
        root.mkdir(exist_ok=True)
        if (root / "pids.max").exists():
            return root
    except OSError:
        pass
    return None


class Sandbox:
    """Runs jobs under `limits`; `run_many` runs several at once, at most `max_workers` in flight."""

    def __init__(
        self, limits: Limits | None = None, python: str | None = None, pids_cgroup: bool = True
    ) -> None:
        """pids_cgroup=False runs without the per-run cgroup even where one is available, on the
        RLIMIT_NPROC backstop alone (as on machines without a v1 pids cgroup; the tests use it)."""
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.bwrap = find_bwrap()
        self.cgroup_root = pids_cgroup_root() if pids_cgroup else None
        # As root, setpriv (util-linux) drops the run to an unprivileged uid inside the sandbox.
        self.setpriv = shutil.which("setpriv") if os.geteuid() == 0 else None
        self.drop_uid = self.setpriv is not None

    @cached_property
    def command(self) -> list[str]:
        """The bwrap + setpriv + python command line, the same for every run."""
        hidden = [Path(p) for p in ("/root", "/home", "/run", "/var/tmp", str(Path.home()), str(cache_dir()))]
        hidden = sorted({p.resolve() for p in hidden if p.exists() and p.resolve() != Path("/")})
        args = [self.bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        if os.geteuid() != 0:
            args.append("--unshare-user")  # what lets an unprivileged bwrap build the other namespaces
        args += ["--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for path in hidden:
            args += ["--tmpfs", str(path)]
        size = str(self.limits.tmpfs_bytes)
        args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
        args += ["--perms", "1777", "--size", size, "--tmpfs", "/dev/shm", "--chdir", "/tmp"]
        # The interpreter and its packages may live under a directory hidden above: pyenv under /root, or a
        # checkout (and its .venv) under /tmp. Bind them back read-only, after the tmpfs mounts they sit in.
        covered = [*hidden, Path("/tmp"), Path("/dev/shm")]
        for path in self._python_paths():
            if any(path.is_relative_to(h) for h in covered):
                args += ["--ro-bind", str(path), str(path)]
        # The interpreter as it is named: a venv reached through a symlinked folder under /tmp (a worktree's
        # .venv linking to another checkout's) must exist at that name too, or the run exits 127.
        named = Path(os.path.abspath(self.python)).parent.parent
        if named.resolve() != named and any(named.is_relative_to(h) for h in covered):
            args += ["--ro-bind", str(named.resolve()), str(named)]
        if self.drop_uid:
            args += ["--cap-add", "CAP_SETUID,CAP_SETGID", "--", str(self.setpriv), f"--reuid={NOBODY}"]
            args += [f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
            args += ["--no-new-privs"]
        elif os.geteuid() == 0:
            args += ["--cap-drop", "ALL", "--"]
        else:
            args.append("--")
        return [*args, self.python, "-I", "-B", "-c", HARNESS_SOURCE]

    def _python_paths(self) -> list[Path]:
        found = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
        found.add(Path(os.path.realpath(self.python)).parent.parent)
        found.update(Path(p) for p in sys.path if p and Path(p).is_dir())
        resolved = sorted({p.resolve() for p in found})
        # Keep only the outermost paths: a bind inside another bind is redundant.
        return [p for p in resolved if not any(p != q and p.is_relative_to(q) for q in resolved)]

    def run(self, job: Job) -> RunResult:
        token = secrets.token_hex(16)
        token_r, token_w = os.pipe()
        result_r, result_w = os.pipe()
        os.write(token_w, token.encode())
        os.close(token_w)
        cgroup = _PidsCgroup(self.cgroup_root, self.limits.max_processes) if self.cgroup_root else None
        command = [*self.command, str(token_r), str(result_w)]
        if cgroup is not None:
            # The shell joins the cgroup, then becomes bwrap: every process of the run is born inside.
            command = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup.procs_file), *command]
        limits = self._limits_for(job)
        payload = {**asdict(job), "limits": asdict(limits)}
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(token_r, result_w),
                env=SANDBOX_ENV,
                cwd="/",
                start_new_session=True,
            )
        except OSError as err:
            os.close(result_r)
            if cgroup is not None:
                cgroup.close()
            return RunResult(Verdict("error", f"could not start the sandbox: {err}"))
        finally:
            os.close(token_r)
            os.close(result_w)
        try:
            streams, timed_out = self._communicate(
                proc, json.dumps(payload).encode(), result_r, start, limits
            )
        finally:
            os.close(result_r)
            if proc.poll() is None:
                _kill_group(proc)
            proc.wait()
            if cgroup is not None:
                cgroup.close()
        seconds = time.monotonic() - start
        stdout, stderr, result = (s.decode("utf-8", "replace") for s in streams)
        verdict = _judge(proc.returncode, result, token, timed_out, stderr, seconds, limits)
        return RunResult(verdict, stdout, stderr, proc.returncode, seconds)

    def _limits_for(self, job: Job) -> Limits:
        if job.timeout_seconds is None:
            return self.limits
        seconds = job.timeout_seconds
        return replace(self.limits, wall_seconds=seconds, cpu_seconds=max(1, int(seconds)))

    def run_many(self, jobs: Sequence[Job], max_workers: int | None = None) -> list[RunResult]:
        workers = max_workers or max(1, (os.cpu_count() or 1))
        return map_bounded(self.run, list(jobs), workers)

    @staticmethod
    def _communicate(
        proc: subprocess.Popen, payload: bytes, result_r: int, start: float, limits: Limits
    ) -> tuple[tuple[bytes, bytes, bytes], bool]:
        """Feed stdin, drain stdout/stderr/result (keeping the first bytes of each) until exit or deadline."""
        assert proc.stdin and proc.stdout and proc.stderr
        cap = limits.max_output_bytes
        kept = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray(), result_r: bytearray()}
        with selectors.DefaultSelector() as sel:
            for fd in kept:
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ)
            stdin_fd = proc.stdin.fileno()
            os.set_blocking(stdin_fd, False)
            sel.register(stdin_fd, selectors.EVENT_WRITE)
            pending = memoryview(payload)
            deadline = start + limits.wall_seconds
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _kill_group(proc)
                    return (
                        bytes(kept[proc.stdout.fileno()]),
                        bytes(kept[proc.stderr.fileno()]),
                        bytes(kept[result_r]),
                    ), True
                for key, _ in sel.select(timeout=min(remaining, 1.0)):
                    fd = key.fd
                    if fd == stdin_fd:
                        try:
                            pending = pending[os.write(fd, pending[:65536]) :]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:  # it exited without reading its job
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(fd)
                            proc.stdin.close()
                        continue
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        sel.unregister(fd)
                    elif len(kept[fd]) < cap:
                        kept[fd] += chunk[: cap - len(kept[fd])]
        out = (bytes(kept[proc.stdout.fileno()]), bytes(kept[proc.stderr.fileno()]), bytes(kept[result_r]))
        return out, False


def _judge(
    returncode: int | None,
    result: str,
    token: str,
    timed_out: bool,
    stderr: str,
    seconds: float,
    limits: Limits,
) -> Verdict:
    """Pass only on the secret token; otherwise the runner's own message, else what the exit says."""
    if timed_out:
        return Verdict("timeout", f"wall-clock limit of {limits.wall_seconds:g}s")
    if returncode == 0 and f"PASS {token}" in result.splitlines():
        return Verdict("pass", "all tests passed")
    # RLIMIT_CPU sends SIGXCPU, then SIGKILL a second later if the program ignored the first.
    killed = returncode in (128 + signal.SIGXCPU, 128 + signal.SIGKILL)
    if killed and seconds >= limits.cpu_seconds:
        return Verdict("timeout", f"CPU limit of {limits.cpu_seconds}s")
    for line in result.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("status") in ("fail", "error"):
            return Verdict(message["status"], str(message.get("reason", ""))[:500])
    if "bwrap:" in stderr and returncode not in (0, None):
        return Verdict("error", f"sandbox failed: {stderr.strip().splitlines()[-1][:300]}")
    if returncode == 0:
        return Verdict("fail", "the program exited before the tests finished")
    if returncode is not None and returncode > 128:
        number = returncode - 128
        name = signal.Signals(number).name if number in signal.valid_signals() else "?"
        return Verdict("fail", f"killed by signal {number} ({name}) before the tests finished")
    return Verdict("fail", f"exited with code {returncode} before the tests finished")


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
