"""Continuous batching: requests that join a running batch between steps (and leave it when done) get
token-for-token the answer they get alone, for every rule and every gate variant (the gates' own caches
grow by the joining rows), with and without drafting, in float64 on tiny models. Requests keep their own
settings, a cancelled request leaves at the next step, and a request that fails to start fails alone."""

import pytest
import torch
from test_loop_matrix import HIDDEN, build_rule  # tests/decode/test_loop_matrix.py

from dllg.decode import GenerationConfig, generate
from dllg.decode.loop import Decoder
from dllg.experts import ExpertPool
from dllg.fusion import RULES
from dllg.gate import GATES
from dllg.tiny import tiny_expert, tiny_tokenizer

WORDS = ["def", "add", "(a, b):", "return", "a + b", "Hello", "world", "answer", "is", "42", "x", "="]
PROMPTS = [" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(2 + (i * 7) % 9)) for i in range(9)]
CONFIG = GenerationConfig(max_new_tokens=10, stop=("e", "t"))  # rows stop after 1 to 10 tokens
ARRIVALS = [0, 0, 1, 1, 2, 4, 5, 5, 9]  # the step before which prompt i is submitted


def cases() -> list[tuple[str, str | None]]:
    return [(n, v) for n in sorted(RULES) for v in (sorted(GATES) if n == "dllg" else [None])]


@pytest.fixture(scope="module")
def pool() -> ExpertPool:
    tok = tiny_tokenizer()
    return ExpertPool(
        [tiny_expert(70 + i, hidden=h, dtype=torch.float64, tokenizer=tok) for i, h in enumerate(HIDDEN[2])]
    )


def encode(pool: ExpertPool, texts: list[str]) -> list[list[int]]:
    return [pool.tokenizer(t)["input_ids"] for t in texts]


def run_staggered(decoder: Decoder, prompts, configs, arrivals, watch=None):
    """Submit prompt i before step arrivals[i]; step until every request is done; results by prompt."""
    ids: dict[int, int] = {}
    results = {}
    step = 0
    while len(ids) < len(prompts) or decoder.active:
        for i, when in enumerate(arrivals):
            if when == step:
                ids[decoder.submit([prompts[i]], configs[i])[0]] = i
        for update in decoder.step():
            assert update.error is None, update.error
            if update.finished is not None:
                results[ids[update.request]] = update.finished
        if watch:
            watch(decoder.running)
        step += 1
    decoder.close()
    return [results[i] for i in range(len(prompts))]


@pytest.mark.parametrize(("name", "variant"), cases())
def test_joining_requests_get_the_answer_they_get_alone(pool, name, variant):
    gates: dict = {}
    prompts = encode(pool, PROMPTS)
    alone = [generate(pool, build_rule(name, variant, pool, gates), [p], CONFIG)[0] for p in prompts]
    assert len({len(g.token_ids) for g in alone}) > 1  # rows leave at different steps
    drafters = ["none", "ngram"] if build_rule(name, variant, pool, gates).can_roll_back else ["none"]
    for drafter in drafters:
        decoder = Decoder(pool, build_rule(name, variant, pool, gates), drafter=drafter, max_rows=3)
        running: list[int] = []
        joined = run_staggered(decoder, prompts, [CONFIG] * len(prompts), ARRIVALS, running.append)
        assert max(running) == 3 and 0 in running  # the batch filled up, emptied, and started again
        for a, b in zip(alone, joined, strict=True):
            assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason, drafter
            torch.testing.assert_close(a.weights, b.weights, atol=1e-6, rtol=1e-6)


def test_each_request_keeps_its_own_settings(pool):
    prompts = encode(pool, PROMPTS[:4])
    configs = [
        GenerationConfig(max_new_tokens=3),
        GenerationConfig(max_new_tokens=12, stop=("e",)),
        GenerationConfig(max_new_tokens=8, temperature=0.9, top_p=0.8, seed=5),
        GenerationConfig(max_new_tokens=6, min_new_tokens=6),
    ]
    alone = [
        generate(pool, build_rule("uniform", None, pool, {}), [p], c)[0]
        for p, c in zip(prompts, configs, strict=True)
    ]
    decoder = Decoder(pool, build_rule("uniform", None, pool, {}))
    joined = run_staggered(decoder, prompts, configs, [0, 1, 1, 3])
    for a, b in zip(alone, joined, strict=True):
        assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
    assert len(joined[0].token_ids) == 3 and joined[3].finish_reason == "length"


def test_a_cancelled_request_leaves_and_the_others_go_on(pool):
    prompts = encode(pool, PROMPTS[:3])
    config = GenerationConfig(max_new_tokens=12)
    alone = [generate(pool, build_rule("entropy", None, pool, {}), [p], config)[0] for p in prompts]
    decoder = Decoder(pool, build_rule("entropy", None, pool, {}))
    ids = decoder.submit(prompts, config)
    finished = {}
    for step in range(40):
        if step == 3:
            decoder.cancel(ids[1])
        for update in decoder.step():
            if update.finished is not None:
                finished[update.request] = (step, update.finished)
        if not decoder.active:
            break
    decoder.close()
    step, cancelled = finished[ids[1]]
    assert cancelled.finish_reason == "cancelled" and step == 3
    assert cancelled.token_ids == alone[1].token_ids[:3]  # what it had before it left
    for i in (0, 2):
        assert finished[ids[i]][1].token_ids == alone[i].token_ids


def test_a_request_that_fails_to_start_fails_alone(pool):
    good = encode(pool, PROMPTS[:2])
    config = GenerationConfig(max_new_tokens=8)
    alone = generate(pool, build_rule("uniform", None, pool, {}), good, config)
    decoder = Decoder(pool, build_rule("uniform", None, pool, {}))
    first = decoder.submit(good, config)
    errors, finished = {}, {}
    for step in range(40):
        if step == 2:
            broken = decoder.submit([[5, 10**7]], config)[0]  # a token id the embedding does not have
        for update in decoder.step():
            if update.error is not None:
                errors[update.request] = update.error
            if update.finished is not None:
                finished[update.request] = update.finished
        if not decoder.active:
            break
    decoder.close()
    assert list(errors) == [broken]
    assert [finished[i].token_ids for i in first] == [g.token_ids for g in alone]


def test_a_long_running_batch_keeps_only_the_columns_its_rows_read(pool):
    """Requests keep joining a batch that never empties: the experts' and the aux-LM gate's caches hold at
    most the longest live row's history, not everything the batch ever held."""
    prompts = encode(pool, PROMPTS) * 3
    config = GenerationConfig(max_new_tokens=6)
    gates: dict = {}
    rule = build_rule("dllg", "lowrank_aux_lm", pool, gates)
    alone = [
        generate(pool, build_rule("dllg", "lowrank_aux_lm", pool, gates), [p], config)[0] for p in prompts[:4]
    ]
    decoder = Decoder(pool, rule, max_rows=3)
    widths, longest = [], []
    arrivals = [2 * i for i in range(len(prompts))]  # one joins every other step: the batch never empties

    def watch(_running):
        if decoder._rows:
            widths.append(max(s.mask.shape[1] for s in decoder._batch.states))
            widths[-1] = max(widths[-1], rule._state.mask.shape[1])
            longest.append(max(len(s.prompt) + len(s.tokens) for s in decoder._rows))

    joined = run_staggered(decoder, prompts, [config] * len(prompts), arrivals, watch)
    assert all(w <= n + 1 for w, n in zip(widths, longest, strict=True)), (widths, longest)
    # each step adds a column: kept forever, the cache would be wider than any row's history by now
    assert len(widths) > max(longest) + 10
    for a, b in zip(alone, joined, strict=False):
        assert a.token_ids == b.token_ids


@pytest.mark.parametrize("drafter", ["none", "expert"])
def test_a_request_gets_its_first_token_from_the_next_step_when_the_batch_has_room(pool, drafter):
    """Streaming's promise: a request that arrives while a batch runs is prefilled at the next step and
    gets its first token from that same step (one step later when drafting: a step whose drafts are still
    to be scored lets no one join, and it drafts no more while a request waits); with the batch full it
    waits for a row to leave."""
    decoder = Decoder(pool, build_rule("uniform", None, pool, {}), drafter, max_rows=2)
    long = GenerationConfig(max_new_tokens=60)  # no row finishes meanwhile, drafts or not
    first = decoder.submit(encode(pool, PROMPTS[:1]), long)[0]
    for _ in range(3):
        decoder.step()
    joining = decoder.submit(encode(pool, PROMPTS[1:2]), long)[0]
    steps = 0
    while True:
        steps += 1
        got = {u.request: u.tokens for u in decoder.step()}
        assert got[first]  # the running row goes on meanwhile
        if got.get(joining):
            break
    assert steps == (1 if drafter == "none" else 2)
    waiting = decoder.submit(encode(pool, PROMPTS[2:3]), long)[0]  # two rows run: no room
    assert waiting not in {u.request for u in decoder.step()} and decoder.waiting == 1
    decoder.close()


def test_a_stream_keeps_max_rows_running_while_prompts_wait_and_yields_each_once(pool, monkeypatch):
    from dllg.decode import generate_stream
    from dllg.fusion import make_rule

    prompts = encode(pool, PROMPTS)
    together = generate(pool, make_rule("uniform"), prompts, CONFIG)
    after_admit: list[tuple[int, int]] = []  # (running, waiting) as each step starts decoding
    admit = Decoder._admit

    def watched(self):
        updates = admit(self)
        after_admit.append((self.running, self.waiting))
        return updates

    monkeypatch.setattr(Decoder, "_admit", watched)
    streamed = list(generate_stream(pool, make_rule("uniform"), prompts, CONFIG, max_rows=3))
    indices = [i for i, _ in streamed]
    assert sorted(indices) == list(range(len(prompts)))
    assert indices != sorted(indices)  # yielded as they finished, not as submitted
    assert max(r for r, _ in after_admit) == 3
    # a finished row's place is taken at the next step: never fewer than 3 rows while prompts wait
    assert all(running == 3 for running, waiting in after_admit if waiting)
    assert any(waiting for _, waiting in after_admit)
    for i, generation in streamed:
        assert generation.token_ids == together[i].token_ids


def test_a_full_batch_drafts_while_prompts_wait_for_a_place(pool, monkeypatch):
    """An evaluation queues every prompt at once, so prompts wait nearly all the time: with the batch full
    nobody can join at the next step, and the rows draft; a place freed by a drafted step is taken one step
    later. The answers are the plain loop's."""
    from dllg.decode import generate_stream
    from dllg.fusion import make_rule

    prompts = encode(pool, PROMPTS)
    long = GenerationConfig(max_new_tokens=24, stop=("e",))
    plain = generate(pool, make_rule("uniform"), prompts, long)
    fed: list[tuple[int, int, int]] = []  # (running, waiting, positions fed per row) at each feed
    feed = Decoder._feed

    def watched(self):
        feed(self)
        fed.append((self.running, self.waiting, self._outputs[0].logits.shape[1]))

    monkeypatch.setattr(Decoder, "_feed", watched)
    streamed = dict(generate_stream(pool, make_rule("uniform"), prompts, long, drafter="expert", max_rows=3))
    assert [streamed[i].token_ids for i in range(len(prompts))] == [g.token_ids for g in plain]
    assert any(positions > 1 for running, waiting, positions in fed if waiting and running == 3)
    # a row waits only while the batch is full, or for one step after a drafted one freed a place
    assert all(running == 3 or positions == 1 for running, waiting, positions in fed if waiting)


def test_static_rows_gives_each_row_its_own_weights_as_static_does_alone(pool):
    from dllg.decode import generate_stream
    from dllg.fusion import make_rule
    from dllg.fusion.static import RowStatic

    prompts = encode(pool, PROMPTS)
    weights = [[0.1 + 0.2 * (i % 4), 1.0 - 0.2 * (i % 4)] for i in range(len(prompts))]
    weights[2] = [1.0, 0.0]  # this row alone runs one expert; in the batch, the other's weight is 0
    pairs = zip(prompts, weights, strict=True)
    alone = [generate(pool, make_rule("static", weights=w), [p], CONFIG)[0] for p, w in pairs]
    assert len({tuple(g.token_ids) for g in alone}) > 1
    for max_rows in (None, 2):  # all in one batch, and rows joining as others finish
        for i, generation in generate_stream(pool, RowStatic(weights), prompts, CONFIG, max_rows=max_rows):
            assert generation.token_ids == alone[i].token_ids, (max_rows, i)
            torch.testing.assert_close(generation.weights, alone[i].weights)


def test_static_rows_refuses_bad_weights_and_more_prompts_than_weights(pool):
    from dllg.errors import DllgError
    from dllg.fusion.static import RowStatic

    with pytest.raises(DllgError, match="got 3 weights for 2 experts"):
        generate(pool, RowStatic([[0.2, 0.3, 0.5]]), encode(pool, PROMPTS[:1]), CONFIG)
    with pytest.raises(DllgError, match="has weights for 1 prompts: more were submitted"):
        generate(pool, RowStatic([[0.5, 0.5]]), encode(pool, PROMPTS[:2]), CONFIG)
