#!/usr/bin/python3
"""Health probe for hyperc-server: calls grpc.health.v1.Health/Check and exits 0 when SERVING.

    healthcheck.py [HOST:PORT] [--service NAME] [--timeout S] [--tls-ca F] [--token-file F]

The container HEALTHCHECK of deploy/Dockerfile (grpcurl is not in Debian 12). It needs only
python3-grpcio: the two messages are one optional field each, so they are encoded by hand
instead of generating stubs from grpc/health/v1/health.proto:
  HealthCheckRequest  { string service = 1; }  -> b"" for the server as a whole ("")
  HealthCheckResponse { ServingStatus status = 1; }  UNKNOWN=0 SERVING=1 NOT_SERVING=2
Exit status: 0 SERVING, 1 anything else (not serving, unreachable, timeout), 2 usage.
"""
import argparse
import sys

import grpc

STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_request(service):
    raw = service.encode()
    return b"\x0a" + _varint(len(raw)) + raw if raw else b""


def decode_status(data):
    """Field 1 (varint) of HealthCheckResponse; other fields are skipped."""
    i, status = 0, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            if field == 1:
                status = value
        elif wire == 2:
            n, i = _read_varint(data, i)
            i += n
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise ValueError("bad wire type %d" % wire)
    return status


def _read_varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def check(address, service="", timeout=3.0, tls_ca=None, token=None):
    """Returns the ServingStatus number; raises grpc.RpcError when the call fails."""
    if tls_ca:
        with open(tls_ca, "rb") as f:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        call = channel.unary_unary("/grpc.health.v1.Health/Check")  # bytes in, bytes out
        metadata = [("authorization", "Bearer " + token)] if token else None
        return decode_status(call(encode_request(service), timeout=timeout, metadata=metadata))


def main(argv):
    p = argparse.ArgumentParser(description="gRPC health check of hyperc-server")
    p.add_argument("address", nargs="?", default="127.0.0.1:50051")
    p.add_argument("--service", default="", help='service name ("" = the whole server)')
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--tls-ca", help="CA certificate of a TLS server (PEM)")
    p.add_argument("--token-file", help="file holding the bearer token")
    a = p.parse_args(argv)
    token = None
    if a.token_file:
        with open(a.token_file) as f:
            token = f.read().strip()
    try:
        status = check(a.address, a.service, a.timeout, a.tls_ca, token)
    except grpc.RpcError as e:
        print("%s: %s %s" % (a.address, e.code().name, e.details()), file=sys.stderr)
        return 1
    print("%s: %s" % (a.address, STATUS_NAMES.get(status, str(status))))
    return 0 if status == 1 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
