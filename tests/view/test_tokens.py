"""Token ids as the text pieces the answer page shows, and the experts' tokenizer loaded by name."""

import pytest

from dllg.errors import DllgError
from dllg.view.tokens import load_expert_tokenizer, token_pieces

TEXT = "héllo → wörld\n    return x * 12 - 9\n"


@pytest.fixture(scope="module", params=["world:arith", "tiny:0"])
def tokenizer(request):
    return load_expert_tokenizer(request.param)


def test_pieces_join_to_the_text_one_per_token(tokenizer):
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    pieces = token_pieces(tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == TEXT


def test_a_character_split_over_tokens_goes_to_the_token_that_completes_it(tokenizer):
    ids = tokenizer.encode("→", add_special_tokens=False)
    assert len(ids) > 1  # byte-level: the arrow's three bytes are not one token in these small vocabularies
    pieces = token_pieces(tokenizer, ids)
    assert pieces[-1].endswith("→") and "".join(pieces) == "→"
    assert "\ufffd" not in "".join(pieces)


def test_an_answer_cut_mid_character_shows_what_decoding_shows(tokenizer):
    ids = tokenizer.encode("a→", add_special_tokens=False)[:-1]
    pieces = token_pieces(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids)


def test_special_tokens_are_shown(tokenizer):
    ids = [*tokenizer.encode("ok", add_special_tokens=False), tokenizer.eos_token_id]
    assert token_pieces(tokenizer, ids)[-1] == tokenizer.eos_token


def test_world_tokenizer_comes_from_its_packaged_folder():
    assert load_expert_tokenizer("world:code").vocab == load_expert_tokenizer("world:arith").vocab


def test_an_unknown_expert_is_a_clear_error(tmp_path):
    with pytest.raises(DllgError, match="world"):
        load_expert_tokenizer("world:nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DllgError, match=r"cannot load the tokenizer.*--tokenizer"):
        load_expert_tokenizer(str(tmp_path))
