"""Expert fingerprints: stable where the weights are (a shipped asset touched, a catalog model re-fetched),
changed where they are not (a local folder rewritten)."""

import os

from dllg.sources import ModelSource
from dllg.sources.catalog import CATALOG
from dllg.sources.fingerprint import weights_fingerprint
from dllg.tiny import tiny_expert, tiny_tokenizer


def test_a_packaged_asset_is_fingerprinted_by_content_not_file_times(tmp_path, monkeypatch):
    folder = tmp_path / "asset"
    tiny_expert(0, tokenizer=tiny_tokenizer()).model.save_pretrained(folder)

    def packaged(name: str) -> ModelSource:
        return ModelSource("packaged", str(folder), None, name)

    monkeypatch.setattr("dllg.sources.fingerprint.resolve_source", packaged)
    before = weights_fingerprint("pkg:x")
    for file in folder.iterdir():
        os.utime(file, (1, 1))  # a fresh checkout: same bytes, other times
    assert weights_fingerprint("pkg:x") == before
    tiny_expert(1, tokenizer=tiny_tokenizer()).model.save_pretrained(folder)  # other weights
    assert weights_fingerprint("pkg:x") != before


def test_world_experts_have_distinct_stable_fingerprints():
    arith, code = weights_fingerprint("world:arith"), weights_fingerprint("world:code")
    assert arith != code and arith == weights_fingerprint("world:arith")


def test_a_catalog_model_is_fingerprinted_by_its_pinned_sha(tmp_path, monkeypatch):
    entry = CATALOG[0]
    (tmp_path / "m").mkdir()

    def catalog(name: str) -> ModelSource:
        return ModelSource("catalog", str(tmp_path / "m"), None, entry.name)

    monkeypatch.setattr("dllg.sources.fingerprint.resolve_source", catalog)
    assert weights_fingerprint(entry.name) == f"sha256:{entry.sha256[:12]}"


def test_a_local_folder_rewritten_in_place_changes_its_fingerprint(tmp_path):
    folder = tmp_path / "expert"
    tokenizer = tiny_tokenizer()
    tiny_expert(0, tokenizer=tokenizer).model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    before = weights_fingerprint(str(folder))
    assert before == weights_fingerprint(str(folder))
    tiny_expert(1, tokenizer=tokenizer).model.save_pretrained(folder)
    assert weights_fingerprint(str(folder)) != before
