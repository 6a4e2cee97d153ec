"""cuBLAS F16 GEMV baseline for bench/gemv_cuda: y = x W^T through PyTorch (fp16 weights and
activations, torch.nn.functional.linear), timed like hyperc-gemv-cuda: a CUDA graph of back-to-back
calls cycling over enough weight copies to exceed the L2 cache, median of 9 timed replays.
Also the device-to-device copy bandwidth (bytes read + written), the practical ceiling, and one
LLaMA-7B layer's 7 linears at batch 1 in one graph.

  python3 cublas_gemv.py [--json FILE] [--shapes 4096x4096,11008x4096]
"""
import argparse
import json
import statistics

import torch


def time_graph(fn, per_graph, trials=9):
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        for i in range(3):
            fn(i)  # warm-up outside the graph (handles, workspaces)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        for i in range(per_graph):
            fn(i)
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(trials):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(1000.0 * a.elapsed_time(b) / per_graph)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    p.add_argument("--shapes", default="4096x4096,11008x4096")
    args = p.parse_args()
    out = open(args.json, "w") if args.json else None

    def emit(d):
        line = json.dumps(d)
        print(line, flush=True)
        if out:
            out.write(line + "\n")

    dev = torch.device("cuda")
    emit({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
          "cuda": torch.version.cuda})
    # Copy ceiling: 2 GiB buffer copied device to device.
    n = 1 << 29
    src = torch.empty(n, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    us = time_graph(lambda i: dst.copy_(src), 20)
    emit({"time": "d2d_copy", "bytes": 8 * n, "us": us, "GBps": 8 * n / (us * 1e3)})
    del src, dst
    torch.manual_seed(0)
    for shape in args.shapes.split(","):
        rows, cols = (int(v) for v in shape.split("x"))
        wbytes = rows * cols * 2
        copies = max(4, (512 << 20) // wbytes + 1)
        ws = [torch.randn(rows, cols, dtype=torch.float16, device=dev) * 0.02 for _ in range(copies)]
        for batch in (1, 4, 16):
            x = torch.randn(batch, cols, dtype=torch.float16, device=dev)
            # Correctness of the baseline itself against float64.
            ref = x.double() @ ws[0].double().t()
            got = torch.nn.functional.linear(x, ws[0]).double()
            err = ((got - ref).abs().max() / ref.pow(2).mean().sqrt()).item()
            per_graph = min(1024, 50 * copies)
            us = time_graph(lambda i: torch.nn.functional.linear(x, ws[i % copies]), per_graph)
            nbytes = wbytes + 2 * batch * (rows + cols)
            emit({"time": "cublas_f16", "rows": rows, "cols": cols, "batch": batch, "us": us,
                  "bytes": nbytes, "GBps": nbytes / (us * 1e3), "frac_4800": nbytes / (us * 1e3) / 4800,
                  "copies": copies, "max_err_over_rms": err})
        del ws
        torch.cuda.empty_cache()
    # One LLaMA-7B layer's 7 linears (q, k, v, o, gate, up, down), batch 1, back to back in one
    # graph over two copies of the layer (the same as hyperc-gemv-cuda --layer).
    layer = [(4096, 4096)] * 4 + [(11008, 4096)] * 2 + [(4096, 11008)]
    ws = [torch.randn(r, c, dtype=torch.float16, device=dev) * 0.02 for _ in range(2) for r, c in layer]
    xs = [torch.randn(1, w.shape[1], dtype=torch.float16, device=dev) for w in ws]
    n = len(ws)
    us = time_graph(lambda i: torch.nn.functional.linear(xs[i % n], ws[i % n]), 8 * n) * 7
    nbytes = sum(r * c * 2 + 2 * (r + c) for r, c in layer)
    emit({"time": "layer7_cublas_f16", "batch": 1, "us": us, "bytes": nbytes,
          "GBps": nbytes / (us * 1e3), "frac_4800": nbytes / (us * 1e3) / 4800, "copies": 2})
    if out:
        out.close()


if __name__ == "__main__":
    main()
