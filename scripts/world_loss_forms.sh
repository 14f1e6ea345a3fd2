#!/usr/bin/env bash
# The paper's eq. 5 (each response averaged over its own tokens, the default) against the pooled loss (every
# token of the batch alike, what dllg did before) on the synthetic world: the shipped per-token mlp gate
# trained with each form on the same label table, seeds 0-2, evaluated with their static ablations.
#   bash scripts/world_loss_forms.sh      (after scripts/build_world.py: it reuses runs/world)
# ~6 min on 2 cores; a gate already trained is kept. Records and tables: results/world/loss-forms/.
set -euo pipefail
cd "$(dirname "$0")/.."
DLLG=.venv/bin/dllg
methods=()
for loss in per_response pooled; do
  for seed in 0 1 2; do
    out="runs/world/gate-$loss-seed$seed"
    [ -f "$out/gate/gate.json" ] || nice -n 5 $DLLG train --config configs/world.yaml \
      --set train.loss="$loss" --set train.seed="$seed" --out-dir "$out"
    methods+=("dllg:$out/gate" "dllg-static:$out/gate")
  done
done
$DLLG eval --experts world:arith world:code --methods "${methods[@]}" \
  --tasks world-arith world-code world-mixed --by-tags world-mixed -n 96 --batch-size 64 \
  --out results/world/loss-forms/records.jsonl
