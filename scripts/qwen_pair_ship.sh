#!/usr/bin/env bash
# Ship the real pair's gate chosen on validation (scripts/qwen_pair_select.py) as the preset `qwen-coder-duo`:
# its checkpoint (only what the gate adds: an aux-LM gate's backbone is the fetched 0.5B) and a preset.json go
# into the package (src/dllg/shipped/qwen-coder-duo), read by the `shipped` plug-in.
#
#   bash scripts/qwen_pair_ship.sh results/qwen-coder-pair/gates/VARIANT
#   dllg models fetch qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct
#   dllg generate --preset qwen-coder-duo --backend llamacpp "..."
set -euo pipefail
cd "$(dirname "$0")/.."
GATE=${1:?name the chosen gate folder, e.g. results/qwen-coder-pair/gates/cross_attn}
[ -f "$GATE/gate.json" ] && [ -f "$GATE/gate.safetensors" ] || { echo "$GATE holds no gate checkpoint" >&2; exit 2; }
DEST=src/dllg/shipped/qwen-coder-duo
mkdir -p "$DEST.partial"
cp "$GATE/gate.json" "$GATE/gate.safetensors" "$DEST.partial/"
variant=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gate"]["variant"])' "$GATE/gate.json")
cat >"$DEST.partial/preset.json" <<EOF
{
  "description": "Qwen2.5-Coder 0.5B + 1.5B Instruct fused by the $variant gate chosen on validation (issue 15; see the README's real-pair section for how it compares with the 1.5B alone)",
  "experts": ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"],
  "fetch": ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"],
  "source": "$GATE"
}
EOF
rm -rf "$DEST" && mv "$DEST.partial" "$DEST"
echo "shipped $GATE as $DEST"
