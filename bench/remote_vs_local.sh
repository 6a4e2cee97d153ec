#!/usr/bin/env bash
# Times `hyperc compress` over loopback against local mode on the same model, interleaved in
# one run (median of N each), and reports the server's peak RSS (VmHWM) during the remote runs.
#   bench/remote_vs_local.sh [MODEL] [N] [extra compress flags...]
# Default MODEL: ../shared/models/movenet-thunder-f16.safetensors, N: 7.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${HC_BIN:-$root/build/bin}
model=${1:-$root/../shared/models/movenet-thunder-f16.safetensors}
n=${2:-7}
shift $(( $# > 2 ? 2 : $# ))
work=$(mktemp -d)
trap 'kill $srv 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/hyperc-server" --listen 127.0.0.1:0 --spool-dir "$work/spool" --metrics-address "" --no-sync \
  > "$work/server.out" 2> "$work/server.err" &
srv=$!
for _ in $(seq 100); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.05; done
addr=$(sed -E 's/.*listening on ([^ ]+).*/\1/' "$work/server.out" | head -1)
now() { date +%s.%N; }
local_t=(); remote_t=()
for i in $(seq "$n"); do
  t0=$(now); "$bin/hyperc" compress "$model" -o "$work/local.hyc" --quiet --no-sync "$@"; t1=$(now)
  "$bin/hyperc" compress "$model" -o "$work/remote.hyc" --quiet --server "$addr" "$@"; t2=$(now)
  local_t+=("$(echo "$t1 - $t0" | bc -l)"); remote_t+=("$(echo "$t2 - $t1" | bc -l)")
  cmp -s "$work/local.hyc" "$work/remote.hyc" || { echo "artifacts differ" >&2; exit 1; }
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ml=$(median "${local_t[@]}"); mr=$(median "${remote_t[@]}")
hwm=$(awk '/VmHWM/ {print $2, $3}' /proc/$srv/status)
printf 'model %s, %d runs each, interleaved\n' "$(basename "$model")" "$n"
printf 'local  median %.3f s\nremote median %.3f s (loopback, same artifact bytes)\nratio remote/local %.2f\n' "$ml" "$mr" "$(echo "$mr / $ml" | bc -l)"
printf 'server peak RSS (VmHWM) %s\n' "$hwm"
