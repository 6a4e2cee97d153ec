#!/usr/bin/python3
"""Exploration for hc2 (issue 6), not shipped code: per-tensor SNR of rtn 4-bit group 128 against
random-Hadamard-rotated blocks of 128 + uniform scalar quantization with a per-block scale + ideal
entropy coding (empirical entropy of the indices), at matched bits per weight (4.25, side info
included: F16 mean and scale per block). Tensors with >= 4096 elements; numel-weighted means.
Usage: bench/hc2_explore.py MODEL.safetensors...  (Debian python3-numpy)
"""
import json, struct, sys, numpy as np
def load(p):
    b=open(p,'rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); h.pop('__metadata__',None)
    out={}
    for k,v in h.items():
        dt={'F32':np.float32,'F16':np.float16}.get(v['dtype'])
        if dt is None: continue
        a=np.frombuffer(b[8+n+v['data_offsets'][0]:8+n+v['data_offsets'][1]],dtype=dt).astype(np.float64)
        if a.size>=4096: out[k]=a
    return out
def snr(x,y): return 10*np.log10(np.var(x)/np.mean((x-y)**2))
def rtn(x,bits=4,g=128):
    n=len(x); pad=(-n)%g; xp=np.concatenate([x,np.full(pad,x[-1])]).reshape(-1,g)
    lo=xp.min(1,keepdims=True); hi=xp.max(1,keepdims=True); s=(hi-lo)/(2**bits-1); s[s==0]=1
    s=s.astype(np.float16).astype(np.float64); lo=lo.astype(np.float16).astype(np.float64); s[s==0]=1  # as core/codec/rtn.cc
    q=np.clip(np.round((xp-lo)/s),0,2**bits-1); return (q*s+lo).reshape(-1)[:n]
def hadamard(n):
    H=np.array([[1.0]])
    while H.shape[0]<n: H=np.block([[H,H],[H,-H]])
    return H/np.sqrt(n)
rng=np.random.default_rng(0)
def ecsq(x,target_bpw,B=128):
    n=len(x); pad=(-n)%B; xp=np.concatenate([x,np.zeros(pad)]).reshape(-1,B)
    H=hadamard(B); sign=rng.choice([-1.0,1.0],B)
    mu=xp.mean(1,keepdims=True); z=((xp-mu)*sign)@H  # rotate each block
    sd=z.std(1,keepdims=True); sd[sd==0]=1
    side=32.0/B  # F16 mean + F16 scale per block
    lo,hi=0.01,4.0
    for _ in range(40):
        d=(lo+hi)/2; q=np.round(z/(sd*d))
        vals,cnt=np.unique(q,return_counts=True); p=cnt/cnt.sum(); H_=-(p*np.log2(p)).sum()
        if H_+side>target_bpw: lo=d
        else: hi=d
    d=hi; q=np.round(z/(sd*d)); zr=q*sd*d
    y=((zr@H.T)*sign+mu).reshape(-1)[:n]
    vals,cnt=np.unique(q,return_counts=True); p=cnt/cnt.sum(); H_=-(p*np.log2(p)).sum()
    return y, H_+side
for path in sys.argv[1:]:
    t=load(path); w=0; s_r=0; s_e=0; b_e=0
    for k,x in t.items():
        yr=rtn(x); ye,bpw=ecsq(x,4.25)
        s_r+=len(x)*snr(x,yr); s_e+=len(x)*snr(x,ye); b_e+=len(x)*bpw; w+=len(x)
    print(path.split('/')[-1], len(t),'tensors', 'rtn4g128 %.2f dB'%(s_r/w), 'hadamard+ECSQ %.2f dB at %.3f bpw'%(s_e/w,b_e/w), 'gain %.2f dB'%((s_e-s_r)/w))
