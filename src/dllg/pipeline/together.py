"""`dllg eval --together`: the fused methods of an evaluation decode each example in one tree of rows.

Greedy fused methods mostly agree token by token: run one after another, each pays the experts' steps of
the same prefixes again. Together, an example's methods share a row until their rules choose different
tokens, then fork (`decode.generate_together`); each still gets exactly its own greedy answer (where the
experts' arithmetic does not depend on the batch's make-up), for fewer expert steps. A method decodes
together if its rule runs every expert (`Method.decodes_together`) and the methods it requires have their
records already; the others decode alone, as without the option.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from dllg.decode import GenerationConfig
from dllg.decode.generate import generate_together
from dllg.decode.prompts import encode_user_text
from dllg.experts import ExpertPool
from dllg.pipeline.methods import EvalItem, Method, MethodOutput, RecordKey, encode_items

# (method, item, its output, the other methods it shared rows with) -> the verified record
RecordMaker = Callable[[Method, EvalItem, MethodOutput, list[str]], dict]


def together_methods(
    methods: Sequence[Method], pending: Sequence[tuple[Method, list[EvalItem]]]
) -> list[Method]:
    """The methods that decode together: at least two, each with its required records in place."""
    waiting = {method.name for method, items in pending if items}
    chosen = [
        m for m in methods if m.decodes_together and m.name in waiting and not set(m.requires) & waiting
    ]
    return chosen if len(chosen) > 1 else []


def together_stream(
    pool: ExpertPool,
    methods: list[Method],
    config: GenerationConfig,
    done: Mapping[RecordKey, dict],
    record: RecordMaker,
) -> Callable[[list[tuple[Method, EvalItem]], int], Iterator[list[dict]]]:
    """A work group's stream over (method, item) pairs of one task: every item's methods decode together,
    `max_rows` rows at once (forks may take more for a while); a record as each answer is done."""

    def stream(pairs: list[tuple[Method, EvalItem]], max_rows: int) -> Iterator[list[dict]]:
        items: list[EvalItem] = []
        position: dict[str, int] = {}
        members: dict[int, list[int]] = {}
        index = {method.name: j for j, method in enumerate(methods)}
        for method, item in pairs:
            if item.example.id not in position:
                position[item.example.id] = len(items)
                items.append(item)
            members.setdefault(position[item.example.id], []).append(index[method.name])
        rules_per_prompt = [sorted(members[i]) for i in range(len(items))]
        plans = [
            method.together(pool, items, done, [j in rules for rules in rules_per_prompt])
            for j, method in enumerate(methods)
        ]
        rules = [plan.rule for plan in plans]
        scored = (
            [encode_user_text(pool.tokenizer, item.example.messages) for item in items]
            if any(rule.needs_prompt_nll for rule in rules)
            else None
        )
        prompts = encode_items(pool, items)
        answers = generate_together(pool, rules, prompts, config, scored, rules_per_prompt, max_rows)
        for (i, j), generation in answers:
            others = [methods[k].name for k in rules_per_prompt[i] if k != j]
            yield [record(methods[j], items[i], plans[j].output(i, generation), others)]

    return stream
