#!/usr/bin/env bash
# Issue 13's collection target (llama.cpp >= 5x HF) measured as an AVX2-only CPU would run it, on a CPU that
# has AVX512 with native bf16 (where HF bf16 is fast and the ratio is ~1.3x: results/bench/
# collect-llamacpp-vs-hf.txt). Both sides are held to AVX2: llama.cpp built from source without AVX512 into a
# separate virtual environment (~10 min on 2 cores, once), and torch told to use its AVX2 kernels
# (ATEN_CPU_CAPABILITY), oneDNN and MKL limited to AVX2; HF runs fp32, the best dtype without native bf16
# (docs: ../shared/DESIGN.md). An emulation, not an AVX2 machine: same cores, clock and caches.
#
#   nice -n 10 bash scripts/bench_collect_avx2.sh > results/bench/collect-llamacpp-vs-hf-avx2.txt
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${AVX2_VENV:-$HOME/.cache/dllg-avx2-venv}
if [ ! -x "$VENV/bin/dllg" ] || ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch==2.13.0
  "$VENV/bin/pip" install -q -e .
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
-DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF" \
    "$VENV/bin/pip" install -q --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36
  "$VENV/bin/pip" install -q llama-cpp-python==0.3.36  # its dependencies; the build above stays
fi
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
echo "# AVX2 emulated: llama.cpp built with GGML_NATIVE=OFF GGML_AVX2=ON GGML_AVX512=OFF; $(
  env | grep -E '^(ATEN_CPU_CAPABILITY|ONEDNN_MAX_CPU_ISA|MKL_ENABLE_INSTRUCTIONS)=' | sort | tr '\n' ' ')"
echo "# llama.cpp system info: $("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())')"
echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; commit $(git rev-parse --short HEAD)"
cmd=("$VENV/bin/dllg" bench collect --backend llamacpp,hf --task gsm_symbolic --limit 8 -n 256 --batch-size 8
  --dtype float32)
echo "\$ ${cmd[*]#"$VENV/bin/"}"
"${cmd[@]}"
