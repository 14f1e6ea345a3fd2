#!/usr/bin/env bash
# The paper's Table 3 on the synthetic world: every gate variant (seed 0), and seeds 1 and 2 of the
# paper's lowrank_aux_lm and of mlp (the shipped one), all trained on the shipped build's label table and
# evaluated with their static ablations on the held-out tasks; and lowrank_aux_lm with normalised weights.
#   bash scripts/world_gate_variants.sh      (after scripts/build_world.py: it reuses runs/world)
# ~20 min on 2 cores; a gate already trained is kept. Records and tables: results/world/gate-variants/.
set -euo pipefail
cd "$(dirname "$0")/.."
DLLG=.venv/bin/dllg
gates=()
train() {  # variant, seed, output folder, more --set overrides
  [ -f "$3/gate/gate.json" ] || nice -n 5 $DLLG train --config configs/world.yaml \
    --set gate.variant="$1" --set train.seed="$2" --out-dir "$3" "${@:4}"
  gates+=("$3/gate")
}
for variant in lowrank_aux_lm aux_lm cross_attn mlp; do train "$variant" 0 "runs/world/gate-$variant"; done
for seed in 1 2; do
  for variant in lowrank_aux_lm mlp; do train "$variant" "$seed" "runs/world/gate-$variant-seed$seed"; done
done
# are the paper's gate's weights too small to matter? the same gate with weights normalised to sum 1
train lowrank_aux_lm 0 runs/world/gate-lowrank_aux_lm-normalized --set gate.normalize=true
methods=()
for gate in "${gates[@]}"; do methods+=("dllg:$gate" "dllg-static:$gate"); done
$DLLG eval --experts world:arith world:code --methods "${methods[@]}" \
  --tasks world-arith world-code world-mixed --by-tags world-mixed -n 96 --batch-size 64 \
  --out results/world/gate-variants/records.jsonl
