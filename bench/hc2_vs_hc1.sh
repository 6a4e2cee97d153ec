#!/bin/bash
# Issue 6, point 2: at the model bits per weight that hc1 --preset llm reaches on each shared model,
# hc2 --target-bpw at that rate; prints the median per-tensor SNR of both over the tensors hc1
# codes (hc2 keeps rank-1 tensors raw under a target: the "both-coded" line leaves those out).
# Usage: bench/hc2_vs_hc1.sh   (from the repository root, after the build; ~1 min)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${HC_SHARED_DIR:-../shared}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for m in ppocrv4-rec-f32.safetensors fmnist-cnn-f32.safetensors faceres-f16.safetensors movenet-thunder-f16.safetensors sotu-bytelm-14m-f16/model.safetensors.index.json; do
  rm -rf "$tmp/a" "$tmp/b"
  build/bin/hyperc compress $shared/models/$m -o $tmp/a --codec hc1 --preset llm --quiet --no-sync
  B=$(build/bin/hyperc inspect $tmp/a --json | python3 -c "import json,sys; print(json.load(sys.stdin)['total']['bits_per_weight'])")
  build/bin/hyperc compress $shared/models/$m -o $tmp/b --codec hc2 --target-bpw $(python3 -c "print(min(32, int($B*1e4)/1e4))") --quiet --no-sync
  /usr/bin/python3 - "$m" "$B" "$tmp" <<'PY'
import json,subprocess,sys,statistics
a=json.loads(subprocess.check_output(['build/bin/hyperc','inspect',sys.argv[3]+'/a','--json']))
b=json.loads(subprocess.check_output(['build/bin/hyperc','inspect',sys.argv[3]+'/b','--json']))
bs={t['name']:t for t in b['tensors']}
ha=[t for t in a['tensors'] if t['codec']=='hc1']
d=[]; s1=[]; s2=[]
for t in ha:
    u=bs[t['name']]
    s2v=u['snr_db'] if u['codec']!='raw' else 200.0
    s1.append(t['snr_db']); s2.append(s2v); d.append(s2v-t['snr_db'])
both=[x for x,t in zip(d,ha) if bs[t['name']]['codec']!='raw']
print('  both-coded median diff %.2f over %d'%(statistics.median(both), len(both)) if both else '  none both-coded')
print(sys.argv[1].split('/')[0], 'hc1 llm bpw %.3f'%float(sys.argv[2]), 'hc2 bpw %.3f'%b['total']['bits_per_weight'], 'tensors hc1 codes', len(ha),
      'median SNR hc1 %.2f hc2 %.2f'%(statistics.median(s1), statistics.median(s2)), 'median diff %.2f'%statistics.median(d), 'hc2 raw among them', sum(1 for t in ha if bs[t['name']]['codec']=='raw'))
PY
done
