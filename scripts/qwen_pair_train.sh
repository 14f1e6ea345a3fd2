#!/usr/bin/env bash
# Issue 15's gate candidates for the real Qwen2.5-Coder pair, trained on the full label table
# (configs/qwen-coder-pair-full.yaml: teacher-forced HF bf16 features of each training prompt's reference
# answer, 10 % of the training prompts held out for validation, bf16 autocast). The first call extracts the
# features (cached, resumable: about an hour on 2 cores); each gate resumes from its last checkpoint, and one
# already trained is kept. Run it alone, in the background:
#
#   nice -n 10 bash scripts/qwen_pair_train.sh
#
# Each trained gate (only what it adds: its aux-LM backbone is the fetched 0.5B) is copied with its training
# log to results/qwen-coder-pair/gates/VARIANT, committed: later sessions evaluate it from there without
# training again (the run folder under runs/ does not outlive the machine).
#
# Then choose on the held-out prompts, never on the test sets:
#   nice -n 10 bash scripts/qwen_pair_eval.sh validation $(bash scripts/qwen_pair_train.sh --methods)
#   .venv/bin/python scripts/qwen_pair_select.py --methods $(bash scripts/qwen_pair_train.sh --methods)
set -euo pipefail
cd "$(dirname "$0")/.."
DLLG=${DLLG:-.venv/bin/dllg}
RUNS=runs/qwen-coder-pair-full
KEPT=results/qwen-coder-pair/gates
# cheapest first (the selection breaks ties toward the cheaper gate): the light gates at the world's
# learning rate (mlp 1000 steps, cross_attn 400: ~0.9 s each here, moving the batch's states; the mlp's
# validation loss was flat from step 400 on), then the paper's low-rank aux-LM gate (4 layers of the 0.5B) at
# the paper's, for 150 steps of 32 answers (~7 passes over the 713 training answers), its validation loss
# logged every 25 steps. A step took ~33 s here (bf16, 2 cores) with the 32 answers padded to the longest
# (up to 768 tokens, 466 on average); train.micro_batch: 8 pads groups of similar length instead (1.4x fewer
# padded tokens, 1.8x less attention on these lengths): about 1-1.5 h for the 150 steps
candidates=(
  "mlp $RUNS/gate-mlp --set train.lr=0.001"
  "cross_attn $RUNS/gate-cross_attn --set train.lr=0.001 --set train.steps=400"
  "lowrank_aux_lm $RUNS/gate --set train.steps=150 --set train.eval_every=25 --set train.checkpoint_every=25"
)

if [ "${1:-}" = "--methods" ]; then
  for candidate in "${candidates[@]}"; do
    read -r variant _ <<<"$candidate"
    printf 'dllg:%s/%s ' "$KEPT" "$variant"
  done
  echo
  exit 0
fi

for candidate in "${candidates[@]}"; do
  read -r variant folder overrides <<<"$candidate"
  if [ -f "$KEPT/$variant/gate.json" ]; then
    echo "kept: $KEPT/$variant"
    continue
  fi
  start=$SECONDS
  # shellcheck disable=SC2086  # the overrides are words
  "$DLLG" train --config configs/qwen-coder-pair-full.yaml --set gate.variant="$variant" --out-dir "$folder" \
    $overrides
  echo "$variant: $((SECONDS - start)) s wall (features included the first time)"
  mkdir -p "$KEPT/$variant.partial"
  cp "$folder"/gate/gate.json "$folder"/gate/gate.safetensors "$folder"/log.jsonl "$folder"/run.json \
    "$KEPT/$variant.partial/"
  rm -rf "${KEPT:?}/$variant" && mv "$KEPT/$variant.partial" "$KEPT/$variant"
done
