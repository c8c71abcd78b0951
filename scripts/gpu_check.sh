#!/usr/bin/env bash
# The GPU check of issue 17 in one shot (155 s on one H200): a random-weight Llama-3.2-1B-shaped
# model, bench rows sdpa / flex / auto at batch 32 (STP in each), batched generation in bf16 (and
# fp32 where the outputs differ), and the same under auto on the SmolLM2-135M shape.
# Writes gpu_check.md, gpu_check.json and <row>.json to $OUT (default: ./gpu_check_out). --dry-run: the same rows on CPU with a tiny model (plumbing only).
#
#   scripts/gpu_check.sh            # on the GPU machine
#   scripts/gpu_check.sh --dry-run  # anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
python=$(command -v python3 || command -v python)
PYTHONUNBUFFERED=1 PYTHONPATH=src "$python" -m llm_jepa.cli bench --workdir "${TMPDIR:-/tmp}/llm_jepa_gpu_check" \
    --gpu-check "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
