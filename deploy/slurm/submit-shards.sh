#!/usr/bin/env bash
# Submits a sharded model to Slurm: the job array (one task per shard, hyperc-shards.sbatch),
# then the assembly (hyperc-assemble.py) once every task succeeded (--dependency=afterok).
#
#   HYPERC_SERVER=host:50051 deploy/slurm/submit-shards.sh INDEX OUT [hyperc compress options]
#   SBATCH_ARGS="--partition=cpu --wait" ... (extra sbatch flags for both jobs)
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 INDEX OUT [hyperc compress options]" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
index="$(readlink -f "$1")" out="$(readlink -m "$2")"
shift 2
n="$(/usr/bin/python3 "$here/hyperc-assemble.py" --count "$index")"
mkdir -p "$out"
# shellcheck disable=SC2086
array=$(sbatch --parsable ${SBATCH_ARGS:-} --array="0-$((n - 1))" --output="$out/slurm-%A_%a.out" \
          "$here/hyperc-shards.sbatch" "$index" "$out" "$@")
array="${array%%;*}"
# shellcheck disable=SC2086
join=$(sbatch --parsable ${SBATCH_ARGS:-} --dependency="afterok:$array" --job-name=hyperc-assemble \
         --output="$out/slurm-%j-assemble.out" --wrap="/usr/bin/python3 '$here/hyperc-assemble.py' '$index' '$out'")
echo "submitted array job $array ($n shards) and assembly job ${join%%;*}: $out"
