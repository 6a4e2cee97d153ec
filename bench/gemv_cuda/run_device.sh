#!/bin/bash
# The device run of docs/perf-gemv-cuda.md: build hyperc-gemv-cuda with nvcc alone (the device
# machine has no abseil/gRPC), check it against the codec-made vectors and random full shapes,
# time it and the cuBLAS F16 baseline. Usage: run_device.sh SRC_DIR VECTORS OUT_DIR
set -euo pipefail
src=$1 vec=$2 out=$3
mkdir -p "$out" /tmp/gemvb
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.draw,temperature.gpu --format=csv | tee "$out/gpu.txt"
t0=$(date +%s)
nvcc -std=c++17 -O3 -gencode=arch=compute_90,code=sm_90 -I"$src" -Xptxas -v \
  -o /tmp/gemvb/hyperc-gemv-cuda "$src/bench/gemv_cuda/main.cu" "$src/core/infer/cuda/hc_gemv_cuda.cu" \
  "$src/core/infer/cuda/rtn_gemv_mma.cu" \
  > "$out/ptxas.txt" 2>&1 || { tail -50 "$out/ptxas.txt"; exit 1; }
echo "build_s=$(( $(date +%s) - t0 ))"
/tmp/gemvb/hyperc-gemv-cuda --vectors "$vec" --json "$out/fused.jsonl" "${@:4}" 2>&1 | tee "$out/fused.log" | grep -v '"check"' || true
grep -c '"ok":true' "$out/fused.jsonl" | sed 's/^/checks_ok=/'
grep '"ok":false' "$out/fused.jsonl" || echo "no failed checks"
PYTHONUNBUFFERED=1 python3 "$src/bench/gemv_cuda/cublas_gemv.py" --json "$out/cublas.jsonl" 2>&1 | tee "$out/cublas.log"
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv | tee -a "$out/gpu.txt"
