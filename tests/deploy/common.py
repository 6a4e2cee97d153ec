"""Shared helpers of the deployment tests (tests/deploy): paths, skipping, and processes that are
stopped however the test ends (exception, assertion, SIGTERM from ctest's timeout)."""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

SKIP = 77  # SKIP_RETURN_CODE in tests/deploy/CMakeLists.txt

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HC_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
BINARY_DIR = os.environ.get("HC_BINARY_DIR") or os.path.join(SOURCE_DIR, "build")
SHARED_DIR = os.environ.get("HC_SHARED_DIR") or os.path.normpath(os.path.join(SOURCE_DIR, "..", "shared"))
HYPERC = os.path.join(BINARY_DIR, "bin", "hyperc")
SERVER = os.path.join(BINARY_DIR, "bin", "hyperc-server")
PYTHON = "/usr/bin/python3"
SHARDED_MODEL = os.path.join(SHARED_DIR, "models", "sotu-bytelm-14m-f16", "model.safetensors.index.json")


def skip(reason):
    print("SKIP: " + reason, flush=True)
    sys.exit(SKIP)


def log(*a):
    print(*a, flush=True)


def need_binaries():
    for b in (HYPERC, SERVER):
        if not os.access(b, os.X_OK):
            raise SystemExit("missing %s: build the hyperc and hyperc-server targets" % b)


def need_model(path=SHARDED_MODEL):
    if not os.path.exists(path):
        skip("shared model %s not found (set HC_SHARED_DIR)" % path)
    return path


# ---- cleanup ------------------------------------------------------------------------------
_cleanups = []


def on_exit(fn):
    """Registers fn to run at exit, last registered first."""
    _cleanups.append(fn)
    return fn


def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep stopping the rest
            print("cleanup: %r" % (e,), file=sys.stderr, flush=True)


atexit.register(_run_cleanups)


def _on_signal(sig, frame):
    _run_cleanups()
    os._exit(128 + sig)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def stop_process(p, name, timeout=10):
    if p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        print("%s (pid %d) ignored SIGTERM for %ds, killing it" % (name, p.pid, timeout), flush=True)
        p.kill()
        p.wait()


def _die_with_parent():
    """In the child: SIGTERM when the test process dies, even by SIGKILL (ctest's timeout)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(argv, name, **kw):
    """Starts a process that is stopped (SIGTERM, then SIGKILL) at exit, or when this process
    dies whatever the way."""
    p = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kw)
    on_exit(lambda: stop_process(p, name))
    return p


def tempdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    if os.environ.get("HC_KEEP_TMP"):
        log("keeping " + d)
    else:
        on_exit(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def free_port():
    """A port free now on 127.0.0.1 (for tools that cannot be told port 0 and report it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- hyperc-server ------------------------------------------------------------------------
class Server:
    def __init__(self, address, metrics_port, proc, spool):
        self.address, self.metrics_port, self.proc, self.spool = address, metrics_port, proc, spool


def start_server(tmp, extra=(), metrics=True, listen="127.0.0.1:0"):
    """Starts hyperc-server on a free port; parses its first stdout line."""
    spool = os.path.join(tmp, "spool")
    argv = [SERVER, "--listen", listen, "--spool-dir", spool, "--no-sync",
            "--metrics-address", "127.0.0.1:0" if metrics else ""] + list(extra)
    errlog = open(os.path.join(tmp, "server.stderr"), "w")
    p = spawn(argv, "hyperc-server", stdout=subprocess.PIPE, stderr=errlog, text=True)
    line = p.stdout.readline()
    m = re.match(r"hyperc-server listening on (\S+) \(spool (.*), metrics port (\d+)\)", line)
    if not m:
        p.wait(5)
        raise SystemExit("hyperc-server did not start: %r; stderr: %s" %
                         (line, open(os.path.join(tmp, "server.stderr")).read()))
    log("hyperc-server on %s, metrics port %s" % (m.group(1), m.group(3)))
    return Server(m.group(1), int(m.group(3)), p, spool)


def run(argv, timeout=300, check=True, **kw):
    log("$ " + " ".join(argv))
    r = subprocess.run(argv, timeout=timeout, capture_output=True, text=True, preexec_fn=_die_with_parent, **kw)
    if check and r.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s\n%s" % (argv[0], r.returncode, r.stdout[-4000:], r.stderr[-4000:]))
    return r


# ---- safetensors --------------------------------------------------------------------------
def safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h


def model_tensors(index_or_file):
    """{name: (dtype, shape, nbytes)} of a .safetensors file or of every shard of an index."""
    if index_or_file.endswith(".json"):
        idx = json.load(open(index_or_file))
        files = sorted(set(idx["weight_map"].values()))
        paths = [os.path.join(os.path.dirname(index_or_file), f) for f in files]
    else:
        paths = [index_or_file]
    out = {}
    for p in paths:
        for name, t in safetensors_header(p).items():
            out[name] = (t["dtype"], t["shape"], t["data_offsets"][1] - t["data_offsets"][0])
    return out


# ---- Prometheus ---------------------------------------------------------------------------
class Prometheus:
    def __init__(self, url, proc):
        self.url, self.proc = url, proc

    def api(self, path, **params):
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(self.url + path, data=data, timeout=10) as r:
            return json.loads(r.read())

    def query(self, expr, **kw):
        return self.api("/api/v1/query", query=expr, **kw)

    def value(self, expr):
        """The single sample of an instant query, or None when the result is empty."""
        r = self.query(expr)
        if r["status"] != "success":
            raise AssertionError("%s: %s" % (expr, r))
        res = r["data"]["result"]
        if not res:
            return None
        if len(res) != 1:
            raise AssertionError("%s: %d series, expected one: %s" % (expr, len(res), res))
        return float(res[0]["value"][1])


def start_prometheus(tmp, targets, scrape_interval="1s"):
    """Runs Debian's prometheus on 127.0.0.1 with deploy/prometheus/prometheus.yml, its targets
    replaced by `targets` and its intervals by `scrape_interval`. Skips if it is not installed."""
    import yaml
    prom = shutil.which("prometheus")
    promtool = shutil.which("promtool")
    if not prom or not promtool:
        skip("prometheus is not installed (.ci/install-deps.sh installs it)")
    cfg = yaml.safe_load(open(os.path.join(SOURCE_DIR, "deploy", "prometheus", "prometheus.yml")))
    cfg["global"]["scrape_interval"] = scrape_interval
    cfg["global"]["evaluation_interval"] = scrape_interval
    jobs = [j for j in cfg["scrape_configs"] if j["job_name"] == "hyperc"]
    assert len(jobs) == 1, "deploy/prometheus/prometheus.yml has no job 'hyperc'"
    jobs[0]["static_configs"] = [{"targets": list(targets)}]
    path = os.path.join(tmp, "prometheus.yml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    run([promtool, "check", "config", path])
    for attempt in range(3):
        port = free_port()
        logf = open(os.path.join(tmp, "prometheus.log"), "w")
        p = spawn([prom, "--config.file=" + path, "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                   "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                  "prometheus", stdout=logf, stderr=subprocess.STDOUT)
        url = "http://127.0.0.1:%d" % port
        deadline = time.time() + 30
        while time.time() < deadline and p.poll() is None:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        log("prometheus %s on %s" % (run([prom, "--version"]).stdout.split("\n")[0], url))
                        return Prometheus(url, p)
            except OSError:
                time.sleep(0.2)
        stop_process(p, "prometheus")
        log("prometheus did not come up on port %d (attempt %d):\n%s" %
            (port, attempt + 1, open(os.path.join(tmp, "prometheus.log")).read()[-2000:]))
    raise SystemExit("prometheus did not start")


class Checks:
    """Collects named checks: `check(ok, what)` logs "ok"/"FAIL" and remembers failures;
    `check.finish()` logs the tally and returns the exit code (0 when every check passed)."""

    def __init__(self):
        self.failures = []

    def __call__(self, ok, what):
        log(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            self.failures.append(what)

    def finish(self):
        if self.failures:
            log("%d check(s) failed" % len(self.failures))
            return 1
        log("all checks passed")
        return 0
