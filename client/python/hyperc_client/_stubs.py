"""Imports the generated gRPC stubs (hyperc.v1.hyperc_pb2 and hyperc_pb2_grpc).

The stubs are build outputs: `cmake --build build --target hc_python_client` writes them to
build/python/hyperc/v1/. Put build/python on PYTHONPATH, or set HYPERC_STUBS_DIR to it. When
neither is done, the build/python directories beside this source tree are tried.
"""

import os
import sys


def _candidate_dirs():
    env = os.environ.get("HYPERC_STUBS_DIR")
    if env:
        yield env
    # client/python/hyperc_client/_stubs.py -> the source root is three levels up.
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        d = os.path.join(root, name, "python")
        if name.startswith("build") and os.path.isfile(os.path.join(d, "hyperc", "v1", "hyperc_pb2.py")):
            yield d


def _load():
    try:
        from hyperc.v1 import hyperc_pb2, hyperc_pb2_grpc  # noqa: F401
        return hyperc_pb2, hyperc_pb2_grpc
    except ImportError as first:
        for d in _candidate_dirs():
            if os.path.isfile(os.path.join(d, "hyperc", "v1", "hyperc_pb2.py")):
                sys.path.insert(0, d)
                try:
                    from hyperc.v1 import hyperc_pb2, hyperc_pb2_grpc  # noqa: F811
                    return hyperc_pb2, hyperc_pb2_grpc
                except ImportError:
                    sys.path.remove(d)
        raise ImportError(
            "hyperc_client: cannot import the generated stubs hyperc.v1.hyperc_pb2 ("
            + str(first) + "). Build them with `cmake --build <build> --target hc_python_client` "
            "and put <build>/python on PYTHONPATH (or set HYPERC_STUBS_DIR). Use Debian's "
            "/usr/bin/python3 with python3-grpcio and python3-protobuf.") from first


pb2, pb2_grpc = _load()
