"""The hand-over analysis written out: `handover.md` (the kinds, counts and examples of each) and
`handover.csv` (one row per failed response)."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from pathlib import Path

from dllg.analysis.answer_target import CODE, DERIVATION, PARTS
from dllg.analysis.handover import CODE_ROLE, DERIVATION_ROLE, KINDS, Failure, HandoverAnalysis

CSV_COLUMNS = (
    "example_id", "tags", "kind", "segment", "part", "index", "answer_tokens", "target", "note",
    "target_token", "chosen_token", "fused_top1", "top1_derivation_expert", "top1_code_expert",
    "rank_derivation_expert", "rank_code_expert", "rank_fused", "weight_derivation_expert",
    "weight_code_expert", "code_led_before", "first_code_lead", "finish", "reproduced", "canonical_tokens",
    "prompt",
)  # fmt: skip


def code_span(text: str) -> str:
    """`text` as a Markdown code span that survives backticks, newlines and table pipes."""
    shown = text.replace("\n", "\\n").replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", shown)), default=0) + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def weights_text(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.3f} / {pair[1]:.3f}"


def csv_row(analysis: HandoverAnalysis, failure: Failure) -> dict:
    show = analysis.token_text
    weights = failure.weights[-1]
    return {
        "example_id": failure.example_id,
        "tags": " ".join(failure.tags),
        "kind": failure.kind,
        "segment": failure.segment,
        "part": failure.part,
        "index": failure.index,
        "answer_tokens": failure.answer_tokens,
        "target": failure.target_kind,
        "note": failure.note,
        "target_token": show(failure.target_token),
        "chosen_token": "" if failure.chosen_token is None else show(failure.chosen_token),
        "fused_top1": show(failure.fused_top1),
        "top1_derivation_expert": show(failure.expert_top1[0]),
        "top1_code_expert": show(failure.expert_top1[1]),
        "rank_derivation_expert": failure.expert_rank[0],
        "rank_code_expert": failure.expert_rank[1],
        "rank_fused": failure.fused_rank,
        "weight_derivation_expert": round(weights[0], 4),
        "weight_code_expert": round(weights[1], 4),
        "code_led_before": int(failure.code_led_before),
        "first_code_lead": "" if failure.first_code_lead is None else failure.first_code_lead,
        "finish": failure.finish,
        "reproduced": int(failure.reproduced),
        "canonical_tokens": int(failure.canonical_tokens),
        "prompt": failure.prompt,
    }


def kinds_table(failures: list[Failure]) -> list[str]:
    counts = Counter((f.kind, f.segment) for f in failures)
    lines = [f"| kind | {DERIVATION} segment | {CODE} segment | all |", "|:---|---:|---:|---:|"]
    for kind in KINDS:
        row = [counts[(kind, DERIVATION)], counts[(kind, CODE)]]
        lines.append(f"| {kind} | {row[0]} | {row[1]} | {sum(row)} |")
    lines.append(
        f"| all | {sum(f.segment == DERIVATION for f in failures)} | "
        f"{sum(f.segment == CODE for f in failures)} | {len(failures)} |"
    )
    return lines


def parts_table(failures: list[Failure]) -> list[str]:
    counts = Counter(f.part for f in failures)
    lines = ["| where | failures |", "|:---|---:|"]
    lines += [f"| {part} | {counts[part]} |" for part in PARTS]
    return lines


def own_expert_lines(analysis: HandoverAnalysis) -> list[str]:
    """How many first errors the segment's own expert alone would not have made."""
    failures = analysis.failures
    own = [f for f in failures if f.expert_rank[0 if f.segment == DERIVATION else 1] == 1]
    in_derivation = sum(f.segment == DERIVATION for f in own)
    return [
        f"The segment's own expert ({analysis.experts[0]} before the fence, {analysis.experts[1]} from it) "
        f"ranks the target token first at {len(own)} of {len(failures)} departures ({in_derivation} in the "
        f"{DERIVATION} segment, {len(own) - in_derivation} in the {CODE} segment): with all the weight on it "
        "there, those first errors would not have happened (later ones may still).",
    ]


def leads_table(analysis: HandoverAnalysis) -> list[str]:
    lines = [
        f"| responses | {DERIVATION} tokens | led by {analysis.experts[1]} | {CODE} tokens | "
        f"led by {analysis.experts[0]} |",
        "|:---|---:|---:|---:|---:|",
    ]
    for outcome, counts in analysis.leads.items():
        cells = []
        for segment, intruder in ((DERIVATION, CODE_ROLE), (CODE, DERIVATION_ROLE)):
            total = sum(n for (s, _), n in counts.items() if s == segment)
            share = f"{counts[(segment, intruder)] / total:.0%}" if total else "-"
            cells += [str(total), share]
        lines.append(f"| {outcome} | {' | '.join(cells)} |")
    return lines


def example_lines(analysis: HandoverAnalysis, failure: Failure) -> list[str]:
    show = analysis.token_text
    names = analysis.experts
    tail = "".join(show(t) for t in failure.prefix_tail)
    chosen = (
        "(none: out of new tokens)" if failure.chosen_token is None else code_span(show(failure.chosen_token))
    )
    weights = ", ".join(
        f"{code_span(show(t))} {weights_text(w)}"
        for t, w in zip([*failure.prefix_tail, failure.target_token], failure.weights, strict=True)
    )
    note = f" ({failure.note})" if failure.note else ""
    return [
        f"- **{failure.example_id}** ({' '.join(failure.tags)}; target: {failure.target_kind}{note}): "
        f"{failure.prompt}",
        f"  - token {failure.index} of {failure.answer_tokens}, {failure.segment} segment, {failure.part}; "
        f"prefix ends {code_span(tail)}",
        f"  - target {code_span(show(failure.target_token))}, chosen {chosen}; top-1 {names[0]} "
        f"{code_span(show(failure.expert_top1[0]))} (target rank {failure.expert_rank[0]}), {names[1]} "
        f"{code_span(show(failure.expert_top1[1]))} (rank {failure.expert_rank[1]}), fused rank "
        f"{failure.fused_rank}",
        f"  - weights {names[0]} / {names[1]} over the last tokens, target token last: {weights}; the code "
        "expert led "
        + (f"first at token {failure.first_code_lead}" if failure.code_led_before else "no token before"),
    ]


def reproduction_lines(analysis: HandoverAnalysis) -> list[str]:
    runs = analysis.reproductions
    differ = [r for r in runs if not r.matches]
    gaps = [r.weights_gap for r in runs if r.matches and not math.isnan(r.weights_gap)]
    failed = {f.example_id for f in analysis.failures}
    lines = [
        "Reproduction: the decode loop, greedy with the records' settings and rule, gives "
        f"{len(runs) - len(differ)} of {len(runs)} responses again character for character"
        + (f" (largest per-token weight difference {max(gaps):.2g})" if gaps else "")
        + "."
    ]
    if differ:
        lines.append("")
        lines.append("Responses that differ now (the analysis below reads the records' responses):")
        lines.append("")
        for r in differ:
            then = "failed" if r.example_id in failed else "passed"
            lines.append(f"- {r.example_id} ({then} in the records): now {code_span(r.response_now)}")
    noncanonical = [f.example_id for f in analysis.failures if f.reproduced and not f.canonical_tokens]
    if noncanonical:
        lines.append("")
        lines.append(
            "Generated tokens that are not the re-encoding of the response text (departure read on the "
            f"re-encoding): {', '.join(noncanonical)}."
        )
    lines.append("")
    lines.append(
        f"Teacher-forced weights vs the records' weights up to each departure: largest difference "
        f"{analysis.forced_weights_gap:.2g}."
    )
    return lines


def markdown(analysis: HandoverAnalysis, examples_per_kind: int) -> str:
    failures = analysis.failures
    own = sum(f.target_kind != "reference" for f in failures)
    fused_not_chosen = [
        f.example_id for f in failures if f.chosen_token is not None and f.fused_top1 != f.chosen_token
    ]
    lines = [
        f"# Where the hand-over fails: {analysis.method} on {analysis.task}",
        "",
        f"Records: `{analysis.records_path}`; experts (derivation, code): {', '.join(analysis.experts)}. "
        f"{len(failures)} of {analysis.responses} responses failed; each is compared with its target "
        f"from its first differing token on (target: the reference solution for {len(failures) - own}, the "
        f"response's own derivation with the reference code for {own}: its derivation reached the "
        "reference's last line by other steps, and the verifier reads only the code). Passed responses that "
        f"are not their reference solution: {len(analysis.passed_off_reference)}"
        + (f" ({', '.join(analysis.passed_off_reference)})" if analysis.passed_off_reference else "")
        + ".",
        "",
        *reproduction_lines(analysis),
        "",
        "## Kinds",
        "",
        *kinds_table(failures),
        "",
        *own_expert_lines(analysis),
        "",
        "## Where in the answer",
        "",
        *parts_table(failures),
        "",
        "## Who leads where (per-token weights; the leader has the larger weight)",
        "",
        *leads_table(analysis),
    ]
    if fused_not_chosen:
        lines += [
            "",
            "Teacher-forced fused top-1 is not the response's token at the departure: "
            f"{', '.join(fused_not_chosen)}.",
        ]
    for kind in KINDS:
        members = [f for f in failures if f.kind == kind]
        if not members:
            continue
        lines += ["", f"## {kind} ({len(members)})", ""]
        for failure in members[:examples_per_kind]:
            lines += example_lines(analysis, failure)
    return "\n".join(lines) + "\n"


def write_handover(
    analysis: HandoverAnalysis, out: str | Path, examples_per_kind: int = 3
) -> tuple[Path, Path, str]:
    """Write handover.md and handover.csv into `out`; the paths and the Markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(analysis, examples_per_kind)
    md_path, csv_path = out / "handover.md", out / "handover.csv"
    md_path.write_text(text)
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_row(analysis, f) for f in analysis.failures)
    return md_path, csv_path, text
