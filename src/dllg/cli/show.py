"""`dllg show`: one evaluation record's answer as an HTML page of which expert wrote each token."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dllg.cli.common import console, user_errors
from dllg.errors import DllgError
from dllg.jsonl import read_records

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def methods_of(records: list[dict], example_id: str, weighted: bool) -> list[str]:
    """The methods with a record of `example_id` that has (weighted) or lacks per-token weights."""
    return sorted(
        {
            str(r.get("method"))
            for r in records
            if r.get("example_id") == example_id and bool(r.get("weights")) == weighted
        }
    )


def method_choices(records: list[dict], example_id: str) -> str:
    fused, other = methods_of(records, example_id, True), methods_of(records, example_id, False)
    return f"with per-token weights: {', '.join(fused) or 'none'}; without: {', '.join(other) or 'none'}"


def pick_record(records: list[dict], example_id: str, method: str | None, source: str) -> dict:
    """The one record of `example_id` (and `method`); DllgError naming the choices when there is not one."""
    matching = [r for r in records if r.get("example_id") == example_id]
    if not matching:
        sample = next((r["example_id"] for r in records if r.get("example_id")), None)
        hint = f" (ids look like {sample!r})" if sample else ""
        raise DllgError(f"no record with example id {example_id!r} in {source}{hint}: check --id")
    if method is not None:
        matching = [r for r in matching if r.get("method") == method]
        if not matching:
            raise DllgError(
                f"no record of method {method!r} for {example_id!r}; its methods "
                f"{method_choices(records, example_id)}"
            )
    if len({str(r.get("method")) for r in matching}) > 1:
        raise DllgError(
            f"{example_id!r} has records of several methods, pick one with --method; "
            f"{method_choices(records, example_id)}"
        )
    if len(matching) > 1:
        raise DllgError(
            f"{len(matching)} records of method {matching[0].get('method')!r} for {example_id!r} in "
            f"{source}: keep one run's records per file"
        )
    return matching[0]


def record_token_ids(record: dict, tokenizer: PreTrainedTokenizerBase, tokenizer_name: str) -> list[int]:
    """The answer's token ids, one per row of `weights`: as recorded, else the response re-encoded."""
    count = len(record["weights"])
    if record.get("token_ids") is not None:
        ids = [int(i) for i in record["token_ids"]]
        if len(ids) != count:
            raise DllgError(
                f"the record has {len(ids)} token_ids but {count} rows of weights: the record is damaged, "
                "re-run its evaluation"
            )
        return ids
    ids = tokenizer.encode(record.get("response") or "", add_special_tokens=False)
    # The step that chose EOS has weights but no text in `response`; which EOS id is not recorded, so the
    # tokenizer's own stands for it.
    if record.get("finish") == "eos" and len(ids) + 1 == count and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    if len(ids) != count:
        raise DllgError(
            f"the record has no per-token text: no token_ids, and its response re-encodes to {len(ids)} "
            f"tokens with {tokenizer_name!r}'s tokenizer but it has {count} rows of weights; re-run the "
            "evaluation with a dllg that records token_ids, or give the experts' tokenizer with --tokenizer"
        )
    return ids


def example_prompt(record: dict) -> str:
    """The prompt the record answered, from its task's data."""
    from dllg.tasks.base import get_task

    task, split, example_id = record.get("task"), record.get("split"), record.get("example_id")
    try:
        examples = get_task(str(task)).load(split)
    except DllgError as exc:
        raise DllgError(f"{exc} (to show the answer without its prompt, pass --no-prompt)") from exc
    example = next((e for e in examples if e.id == example_id), None)
    if example is None:
        raise DllgError(
            f"task {task!r} split {split!r} has no example {example_id!r} any more: pass --no-prompt"
        )
    return example.prompt


def page_meta(record: dict) -> dict[str, object]:
    meta = {
        "method": record.get("method"),
        "task": record.get("task"),
        "example": record.get("example_id"),
        "verdict": record.get("verdict"),
        "reason": record.get("reason"),
        "finish": record.get("finish"),
    }
    return {key: value for key, value in meta.items() if value not in (None, "")}


@user_errors
def show_command(
    records_file: Path = typer.Argument(..., help="An evaluation's records.jsonl."),
    example_id: str = typer.Option(..., "--id", help="The example id, e.g. world-code/test-0."),
    method: str = typer.Option(None, "--method", "-m", help="The method, when the id has several."),
    out: Path = typer.Option(Path("answer.html"), "--out", "-o", help="The HTML file to write."),
    tokenizer_name: str = typer.Option(
        None,
        "--tokenizer",
        help="The experts' tokenizer (name or folder); default: the record's first expert.",
    ),
    prompt: bool = typer.Option(True, "--prompt/--no-prompt", help="Show the prompt (read from the task)."),
) -> None:
    """Write one record's answer as an HTML page: each token coloured by the expert that wrote it."""
    from dllg.view import write_answer_html
    from dllg.view.tokens import load_expert_tokenizer, token_pieces

    if not records_file.is_file():
        raise DllgError(f"no such records file {str(records_file)!r}: give an evaluation's records.jsonl")
    records = list(read_records(records_file))
    record = pick_record(records, example_id, method, str(records_file))
    name = str(record.get("method"))
    if not record.get("weights"):
        fused = ", ".join(methods_of(records, example_id, True)) or "none"
        raise DllgError(
            f"the record of {name!r} has no per-token weights (only fused methods record them): pick one "
            f"with --method: {fused}"
        )
    experts = [str(e) for e in record.get("experts") or []]
    tokenizer_name = tokenizer_name or (experts[0] if experts else None)
    if tokenizer_name is None:
        raise DllgError("the record names no experts: give their tokenizer with --tokenizer")
    if len(experts) != len(record["weights"][0]):
        raise DllgError(
            f"the record names {len(experts)} experts but has {len(record['weights'][0])} weights per token: "
            "the record is damaged, re-run its evaluation"
        )
    tokenizer = load_expert_tokenizer(tokenizer_name)
    pieces = token_pieces(tokenizer, record_token_ids(record, tokenizer, tokenizer_name))
    path = write_answer_html(
        out,
        pieces,
        record["weights"],
        experts,
        title=f"{name} on {example_id}",
        prompt=example_prompt(record) if prompt else None,
        meta=page_meta(record),
    )
    console.print(f"wrote {path} ({len(pieces)} tokens)", highlight=False)
