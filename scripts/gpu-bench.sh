#!/usr/bin/env bash
# The local classifier's GPU figures in one run (under 10 minutes on an H100 or H200):
# bench_gpu on random-weight Gemma 3 4B shapes, logits mode, with the prefix cache off and on,
# then with the cache on and compile=true (bounded: a slow compile leaves the first two intact).
# Usage (from the repository root, in an environment with torch for CUDA and the `local`
# extra): bash scripts/gpu-bench.sh [OUT_DIR]
set -euo pipefail
out="${1:-${OUT:-.}}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
for mb in 0 512; do
  python -m benchmarks.bench_gpu --verdict-mode logits --n 50 --prefix-cache-mb "$mb" \
    2>&1 | tee "$out/bench_gpu_prefix_${mb}.txt"
done
timeout 300 python -m benchmarks.bench_gpu --verdict-mode logits --n 50 --compile \
  2>&1 | tee "$out/bench_gpu_compile.txt" || echo "compile run: exit $?" | tee -a "$out/bench_gpu_compile.txt"
