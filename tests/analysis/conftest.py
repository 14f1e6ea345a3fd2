"""Fixtures: the hand-written records (`hand_records`), as a list and as a records file."""

import json

import pytest
from hand_records import DYNAMIC, STATIC_CORRECT, make_record


@pytest.fixture
def records() -> list[dict]:
    found = [make_record("expert:a", i, c) for i, (c, _) in DYNAMIC.items()]  # no weights: skipped
    found += [make_record("dllg:g", i, c, w) for i, (c, w) in DYNAMIC.items()]
    found += [make_record("dllg-static:g", i, c, [[0.6, 0.4]] * 3) for i, c in STATIC_CORRECT.items()]
    found += [make_record("dllg:g", "u/0", 1, [[0.3, 0.7], [0.8, 0.2]], task="u")]
    found += [make_record("dllg-static:g", "u/0", 1, [[0.5, 0.4], [0.5, 0.4]], task="u")]
    return found


@pytest.fixture
def records_file(tmp_path, records):
    path = tmp_path / "run" / "records.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
