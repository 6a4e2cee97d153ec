#!/usr/bin/python3
"""Compresses a model through hyperc-server and prints progress and the summary.

    PYTHONPATH=build/python:client/python /usr/bin/python3 client/python/example_compress.py \
        --server 127.0.0.1:50051 model.safetensors -o model.hyc.safetensors --codec rtn --opt bits=4

A sharded model (model.safetensors.index.json) gives a directory artifact. Exit status: 0 on
success, 1 on a failed call (the gRPC status code and message are printed), 2 on bad usage.
"""

import argparse
import os
import sys

# Run from a source checkout without PYTHONPATH: the package sits beside this script (the
# generated stubs are then looked for in <source>/build*/python, see hyperc_client/_stubs.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hyperc_client  # noqa: E402


def parse_opt(text):
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError("--opt needs KEY=VALUE, got %r" % text)
    return key, value


def main(argv=None):
    p = argparse.ArgumentParser(description="Compress a model with hyperc-server.")
    p.add_argument("model", help="a .safetensors file or a model.safetensors.index.json")
    p.add_argument("-o", "--output", required=True, help="the artifact: a file, or a directory for a sharded model")
    p.add_argument("--server", default=os.environ.get("HYPERC_SERVER", "127.0.0.1:50051"),
                   help="host:port of hyperc-server (default $HYPERC_SERVER or 127.0.0.1:50051)")
    p.add_argument("--codec", default="rtn", help="codec name (default rtn)")
    p.add_argument("--opt", action="append", default=[], type=parse_opt, metavar="KEY=VALUE",
                   help="a codec option, e.g. --opt bits=4 --opt group_size=128 (repeatable)")
    p.add_argument("--skip", action="append", default=[], metavar="REGEX",
                   help="store tensors matching REGEX raw (repeatable)")
    p.add_argument("--token-file", help="file holding the server's bearer token")
    p.add_argument("--tls-ca", help="PEM file of the CA of the server's certificate (TLS)")
    p.add_argument("--timeout", type=float, default=hyperc_client.DEFAULT_STREAM_TIMEOUT,
                   help="deadline of the whole call, seconds")
    args = p.parse_args(argv)

    token = None
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()

    def on_progress(ev):
        total = ev["tensors_total"]
        width = len(str(total)) if total else 1
        eta = " eta %.0fs" % ev["eta_seconds"] if ev["eta_seconds"] > 0 else ""
        print("[%*d/%d] %5.1f%%  uploaded %d/%d bytes%s  %s" % (
            width, ev["tensors_done"], total, 100.0 * ev["fraction"], ev["bytes_received"],
            ev["bytes_total"], eta, ev["tensor"]), flush=True)

    try:
        with hyperc_client.Client(args.server, token=token, tls_ca=args.tls_ca,
                                  stream_timeout=args.timeout) as client:
            s = client.compress(args.model, args.output, codec=args.codec, skip=args.skip,
                                progress=on_progress, codec_options=dict(args.opt))
    except hyperc_client.HypercError as e:
        print("example_compress: error: %s: %s" % (e.code, e.message), file=sys.stderr)
        return 1

    print("summary: %d tensors (%d coded), %.3f bits/weight overall, %.3f bits/weight coded, "
          "SNR %.2f dB, %.2f dB above D(R), %.2f s" % (
              s["tensors_total"], s["coded_tensors"], s["bits_per_weight"], s["coded_bits_per_weight"],
              s["snr_db"], s["db_above_rd"], s["seconds"]))
    for f in s["files"]:
        print("  %s  %d bytes" % (f["name"], f["size"]))
    print("wrote %s" % args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
