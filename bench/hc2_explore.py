#!/usr/bin/python3
"""Exploration for hc2 (issue 6), not shipped code: per-tensor SNR of candidate designs against rtn
4-bit group 128 at matched bits per weight. Numel-weighted mean SNR (dB) over the float tensors with
>= 16 elements. Designs:
  rtn     rtn 4/128 (F16 scale and zero), as core/codec/rtn.cc
  frG     fixed rate: random-Hadamard blocks of 128, F16 rms scale per block, 16-level Gaussian
          Lloyd-Max codebook (4 + 16/128 bpw)
  frT     the same with a per-tensor Lloyd codebook trained on the normalised rotated values
  frN     no rotation, per-block absmax scale, per-tensor trained 16-level codebook
  ec      entropy-coded: rotated blocks, one step per tensor, ideal code length under per-block
          class contexts (class = round(2 log2(rms/step)), 5 bits per block), at <= 4.25 bpw
Usage: bench/hc2_explore.py MODEL.safetensors|DIR...  (Debian python3-numpy)
"""
import glob, json, os, struct, sys
import numpy as np


def load(p):
    files = sorted(glob.glob(os.path.join(p, '*.safetensors'))) if os.path.isdir(p) else [p]
    out = {}
    for f in files:
        b = open(f, 'rb').read()
        n = struct.unpack('<Q', b[:8])[0]
        h = json.loads(b[8:8 + n])
        h.pop('__metadata__', None)
        for k, v in h.items():
            dt = {'F32': np.float32, 'F16': np.float16}.get(v['dtype'])
            if dt is None:
                continue
            a = np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], dtype=dt)
            if a.size >= 16:
                out[k] = a.astype(np.float64)
    return out


def snr(x, y):
    return 10 * np.log10(np.var(x) / max(np.mean((x - y) ** 2), 1e-300))


def rtn(x, bits=4, g=128):
    n = len(x)
    pad = (-n) % g
    xp = np.concatenate([x, np.full(pad, x[-1])]).reshape(-1, g)
    lo = xp.min(1, keepdims=True)
    hi = xp.max(1, keepdims=True)
    s = (hi - lo) / (2 ** bits - 1)
    s = s.astype(np.float16).astype(np.float64)
    lo = lo.astype(np.float16).astype(np.float64)
    s[s == 0] = 1
    q = np.clip(np.round((xp - lo) / s), 0, 2 ** bits - 1)
    return (q * s + lo).reshape(-1)[:n]


def hadamard(n):
    H = np.array([[1.0]])
    while H.shape[0] < n:
        H = np.block([[H, H], [H, -H]])
    return H / np.sqrt(n)


B = 128
H = hadamard(B)
SIGN = np.where(np.random.default_rng(12345).random(B) < 0.5, -1.0, 1.0)


def blocks(x):
    n = len(x)
    pad = (-n) % B
    return np.concatenate([x, np.zeros(pad)]).reshape(-1, B), n


def rot(xp):
    return (xp * SIGN) @ H


def unrot(z, n):
    return ((z @ H.T) * SIGN).reshape(-1)[:n]


def lloyd(samples, k, iters=30, init=None):
    s = np.sort(samples)
    c = init if init is not None else np.quantile(s, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        edges = (c[1:] + c[:-1]) / 2
        idx = np.searchsorted(edges, s)
        sums = np.bincount(idx, weights=s, minlength=k)
        cnt = np.bincount(idx, minlength=k)
        c = np.where(cnt > 0, sums / np.maximum(cnt, 1), c)
    return np.sort(c)


GAUSS = lloyd(np.random.default_rng(1).standard_normal(2_000_000), 16, iters=100)


def quant_cb(v, c):
    edges = (c[1:] + c[:-1]) / 2
    return c[np.searchsorted(edges, v)]


def fr(x, rotate, trained, scale='rms'):
    xp, n = blocks(x)
    z = rot(xp) if rotate else xp
    if scale == 'rms':
        s = np.sqrt(np.mean(z * z, 1, keepdims=True))
    else:
        s = np.max(np.abs(z), 1, keepdims=True)
    s = s.astype(np.float16).astype(np.float64)
    s[s == 0] = 1
    u = z / s
    c = GAUSS if not trained else lloyd(u.reshape(-1)[:1 << 20], 16, init=np.quantile(u, (np.arange(16) + .5) / 16))
    # per block: best of a few scale multipliers (the multiplier index is 2 bits of side info)
    best = None
    for m in ([1.0] if scale != 'rms' else [0.85, 1.0, 1.15]):
        zr = quant_cb(u / m, c) * m
        e = np.sum((u - zr) ** 2, 1, keepdims=True)
        if best is None:
            best, bz = e, zr
        else:
            better = e < best
            best = np.where(better, e, best)
            bz = np.where(better, zr, bz)
    zr = bz * s
    y = unrot(zr, n) if rotate else zr.reshape(-1)[:n]
    return y


def ec(x, target):
    xp, n = blocks(x)
    z = rot(xp)
    rms = np.sqrt(np.mean(z * z, 1))
    side = 5.0 / B

    def rate(step):
        q = np.round(z / step)
        cls = np.clip(np.round(2 * np.log2(np.maximum(rms, 1e-30) / step)), -4, 27).astype(int)
        bits = 0.0
        for c in np.unique(cls):
            qq = q[cls == c].reshape(-1)
            vals, cnt = np.unique(qq, return_counts=True)
            p = cnt / cnt.sum()
            bits += -(cnt * np.log2(p)).sum()
        return bits / len(x) + side + 32.0 / len(x), q

    lo, hi = 1e-8, 10 * np.max(np.abs(z)) + 1e-8
    for _ in range(40):
        mid = np.sqrt(lo * hi)
        r, _ = rate(mid)
        if r > target:
            lo = mid
        else:
            hi = mid
    r, q = rate(hi)
    return unrot(q * hi, n), r


for path in sys.argv[1:]:
    t = load(path)
    tot = {}
    w = 0
    ecb = 0
    for k, x in t.items():
        if np.var(x) == 0:
            continue
        ys = {'rtn': rtn(x), 'frG': fr(x, True, False), 'frT': fr(x, True, True),
              'frN': fr(x, False, True, 'absmax')}
        ye, r = ec(x, 4.25)
        ys['ec'] = ye
        ecb += r * len(x)
        for name, y in ys.items():
            tot[name] = tot.get(name, 0) + len(x) * snr(x, y)
        w += len(x)
    line = ' '.join('%s %.2f' % (k, v / w) for k, v in tot.items())
    print(os.path.basename(path.rstrip('/')), len(t), 'tensors |', line, '| ec bpw %.3f' % (ecb / w),
          '| D(R)@4.25 %.2f' % (6.0206 * 4.25), flush=True)
