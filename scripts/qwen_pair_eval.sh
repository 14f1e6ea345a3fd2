#!/usr/bin/env bash
# Issue 15's evaluation of the real Qwen2.5-Coder pair on the held-out test sets: HumanEval (164), the GSM8K
# originals of the held-out templates (gsm8k eval: 50) and DataFrameBench test (100); greedy, 768 new tokens,
# llama.cpp Q4_K_M experts, 8 rows decoding at once. Resumable: rerun the same command after a kill or in the
# next session (each record is appended as it is verified; what is there is skipped). Long: hours per fused
# method on a 2-core CPU; run it alone, in the background:
#
#   nice -n 10 bash scripts/qwen_pair_eval.sh baselines     # needs no labels: each expert, the heuristics
#   nice -n 10 bash scripts/qwen_pair_eval.sh gated METHOD... # after training: routers, DLLG, its ablation
#   bash scripts/qwen_pair_eval.sh all                      # the whole table, once the records are there
#   .venv/bin/python scripts/qwen_pair_report.py            # then: paired statistics and the target, report.md
#   nice -n 10 bash scripts/qwen_pair_eval.sh validation dllg:GATE...  # choose the gate: fused decoding on
#       the training prompts `dllg train` held out (val_fraction 0.1), never on the test sets; the experts'
#       validation answers are already in the label table (scripts/qwen_pair_select.py reads both)
#
# The expert:* methods come first: a router's answer is then its chosen expert's recorded answer. The table
# (with the oracle row and truncation rates) is written beside the records; `dllg compare` gives the paired
# statistics, e.g. dllg compare results/qwen-coder-pair/eval/records.jsonl --a dllg:GATE \
#   --b expert:qwen2.5-coder-1.5b-instruct --out results/qwen-coder-pair/eval/dllg-vs-1.5b
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL=qwen2.5-coder-0.5b-instruct
LARGE=qwen2.5-coder-1.5b-instruct
OUT=results/qwen-coder-pair/eval/records.jsonl
TASKS=(humaneval:test gsm8k:eval dataframebench:test)
DLLG=${DLLG:-.venv/bin/dllg}

case "${1:-}" in
  baselines) methods=("expert:$SMALL" "expert:$LARGE" uniform entropy packllm majority unite) ;;
  all)  # every row of issue 15's table: decodes only what the records lack, then writes the whole table
    methods=("expert:$SMALL" "expert:$LARGE" uniform entropy packllm majority unite
      router:results/qwen-coder-pair/routers/embedllm router:results/qwen-coder-pair/routers/routerdc
      dllg:src/dllg/shipped/qwen-coder-duo dllg-static:src/dllg/shipped/qwen-coder-duo
      dllg-sharp:4:src/dllg/shipped/qwen-coder-duo)  # power 4: chosen on validation (validation/sharpening.md)
    ;;
  gated)
    shift
    [ "$#" -ge 1 ] || { echo "gated: name the method(s), e.g. router:runs/... dllg:GATE dllg-static:GATE" >&2; exit 2; }
    methods=("expert:$SMALL" "expert:$LARGE" "$@")
    ;;
  validation)
    shift
    [ "$#" -ge 1 ] || { echo "validation: name the gated method(s), e.g. dllg:runs/.../gate" >&2; exit 2; }
    methods=("$@")
    OUT=results/qwen-coder-pair/validation/records.jsonl
    TASKS=(gsm_symbolic:train dataframebench:train --holdout 0.1)
    ;;
  *) echo "usage: $0 baselines | gated METHOD... | validation METHOD... | all" >&2; exit 2 ;;
esac

# each prompt's prefill is kept on disk (outside the repository) and restored for the next method; the fused
# methods decode each example together, sharing rows until they choose differently (2.75x faster on
# HumanEval/0-7: results/bench/eval-together.txt)
PROMPT_CACHE=${PROMPT_CACHE:-${DLLG_CACHE:-$HOME/.cache/dllg}/prompt-states}
"$DLLG" eval --experts "$SMALL" "$LARGE" --backend llamacpp --methods "${methods[@]}" \
  --tasks "${TASKS[@]}" --max-new-tokens 768 --batch-size 8 \
  --speculate none --together --prompt-cache "$PROMPT_CACHE" --out "$OUT"
