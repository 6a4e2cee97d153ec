#!/usr/bin/python3
"""Acceptance 1 and 2 of issue 5: a real Prometheus (Debian's `prometheus`) on 127.0.0.1 scrapes
a real hyperc-server with deploy/prometheus/prometheus.yml (target replaced); the test compresses
a model and checks through Prometheus' HTTP API that the metrics arrived with the values the
model and the artifact imply (metrics), and runs every PromQL expression of the Grafana
dashboard against it (dashboard). Also checks deploy/healthcheck.py against the server.

    test_prometheus.py [metrics|dashboard|all]
"""
import json
import math
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as c  # noqa: E402

DASHBOARD = os.path.join(c.SOURCE_DIR, "deploy", "grafana", "dashboards", "hyperc.json")
# Grafana's built-in variables, as Grafana would expand them for a short range.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "5s", "$__range": "5m"}


def dashboard_exprs():
    d = json.load(open(DASHBOARD))
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((p["title"], t["refId"], t["expr"]))
    walk(d["panels"])
    return out


def expand(expr):
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    if "$" in expr:
        raise AssertionError("unknown Grafana variable in %r" % expr)
    return expr


def wait_for(prom, expr, want, timeout=20):
    """Polls until the instant query's single value equals want; returns the last value."""
    deadline = time.time() + timeout
    v = None
    while time.time() < deadline:
        v = prom.value(expr)
        if v is not None and abs(v - want) <= 1e-9 * max(1.0, abs(want)):
            return v
        time.sleep(0.3)
    return v


def close(a, b, rel=1e-9):
    return a is not None and abs(a - b) <= rel * max(1.0, abs(b))


def main(part):
    c.need_binaries()
    model = c.need_model()
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        c.skip("prometheus is not installed (.ci/install-deps.sh installs it)")
    tmp = c.tempdir("hc-deploy-prom-")
    # --max-jobs 1 keeps submitted jobs queued a while, so queue and progress gauges get scraped.
    srv = c.start_server(tmp, extra=["--max-jobs", "1", "--threads", "2"])
    check = c.Checks()

    # deploy/healthcheck.py (the image's HEALTHCHECK): SERVING here, failing on a closed port.
    r = c.run([c.PYTHON, os.path.join(c.SOURCE_DIR, "deploy", "healthcheck.py"), srv.address], check=False)
    check(r.returncode == 0 and "SERVING" in r.stdout, "healthcheck.py %s -> %d %s" % (srv.address, r.returncode, r.stdout.strip()))
    r = c.run([c.PYTHON, os.path.join(c.SOURCE_DIR, "deploy", "healthcheck.py"), "127.0.0.1:%d" % c.free_port(),
               "--timeout", "1"], check=False)
    check(r.returncode == 1, "healthcheck.py on a closed port -> %d" % r.returncode)

    prom = c.start_prometheus(tmp, ["127.0.0.1:%d" % srv.metrics_port], scrape_interval="200ms")
    t0 = time.time()
    deadline = time.time() + 30
    while time.time() < deadline and prom.value('up{job="hyperc"}') != 1.0:
        time.sleep(0.2)
    check(prom.value('up{job="hyperc"}') == 1.0, "target up")

    # What the model and the artifact say.
    tensors = c.model_tensors(model)
    compressible = {n: t for n, t in tensors.items() if t[0] in ("F32", "F16", "BF16")}
    out = os.path.join(tmp, "out")
    c.run([c.HYPERC, "compress", model, "-o", out, "--server", srv.address, "--quiet"])
    index = json.load(open(os.path.join(out, "hyperc.index.json")))
    files = sorted(set(index["weight_map"].values())) if "weight_map" in index else sorted(
        f for f in os.listdir(out) if f.endswith(".safetensors"))
    records = []
    for f in files:
        r = c.run([c.HYPERC, "inspect", os.path.join(out, f), "--json"])
        records += json.loads(r.stdout)["tensors"]
    coded = [t for t in records if t["codec"] != "raw"]
    numel = math.prod
    exp = {
        "tensors": len(tensors),
        "coded": len(coded),
        "weights": sum(numel(t[1]) for t in tensors.values()),
        "input_bytes": sum(t[2] for t in tensors.values()),
        "output_bytes": sum(t["stored_bytes"] for t in records),
        "snr_sum": sum(t["snr_db"] for t in coded),
        "bpw_sum": sum(t["bits_per_weight"] for t in coded),
    }
    c.log("model: %d tensors, %d compressible (F32/F16/BF16), artifact: %d coded; expected %s" %
          (len(tensors), len(compressible), len(coded), exp))

    if part in ("metrics", "all"):
        v = wait_for(prom, "sum(hyperc_tensors_total)", exp["tensors"])
        check(v == exp["tensors"], "sum(hyperc_tensors_total) = %s, model tensors %d" % (v, exp["tensors"]))
        v = wait_for(prom, 'hyperc_tensors_total{codec="rtn"}', exp["coded"])
        check(v == len(compressible) == exp["coded"],
              'hyperc_tensors_total{codec="rtn"} = %s, compressible tensors %d, coded in artifact %d' %
              (v, len(compressible), exp["coded"]))
        v = wait_for(prom, "sum(hyperc_weights_total)", exp["weights"])
        check(v == exp["weights"], "sum(hyperc_weights_total) = %s, model weights %d" % (v, exp["weights"]))
        v = wait_for(prom, "sum(hyperc_input_bytes_total)", exp["input_bytes"])
        check(v == exp["input_bytes"], "sum(hyperc_input_bytes_total) = %s, tensor bytes %d" % (v, exp["input_bytes"]))
        v = wait_for(prom, "sum(hyperc_output_bytes_total)", exp["output_bytes"])
        check(v == exp["output_bytes"], "sum(hyperc_output_bytes_total) = %s, artifact stored_bytes %d" %
              (v, exp["output_bytes"]))
        v = wait_for(prom, 'hyperc_tensor_snr_db_count{codec="rtn"}', exp["coded"])
        check(v == exp["coded"], "hyperc_tensor_snr_db_count = %s" % v)
        v = wait_for(prom, 'hyperc_tensor_snr_db_sum{codec="rtn"}', exp["snr_sum"])
        check(close(v, exp["snr_sum"]), "hyperc_tensor_snr_db_sum = %s, sum of inspect snr_db %.9g" % (v, exp["snr_sum"]))
        v = wait_for(prom, 'hyperc_tensor_bits_per_weight_sum{codec="rtn"}', exp["bpw_sum"])
        check(close(v, exp["bpw_sum"]), "hyperc_tensor_bits_per_weight_sum = %s, sum of inspect bpw %.9g" % (v, exp["bpw_sum"]))
        v = wait_for(prom, 'hyperc_tensor_bits_per_weight_bucket{codec="rtn",le="+Inf"}', exp["coded"])
        check(v == exp["coded"], "bits_per_weight le=+Inf bucket = %s" % v)
        v = wait_for(prom, 'hyperc_tensor_fit_seconds_count{codec="rtn"}', exp["coded"])
        check(v == exp["coded"], "hyperc_tensor_fit_seconds_count = %s" % v)
        v = wait_for(prom, 'hyperc_jobs_total{state="SUCCEEDED"}', 1)
        check(v == 1, "hyperc_jobs_total{state=SUCCEEDED} = %s" % v)
        v = wait_for(prom, "hyperc_job_seconds_count", 1)
        check(v == 1, "hyperc_job_seconds_count = %s" % v)
        v = wait_for(prom, 'hyperc_rpcs_total{method="Compress",code="OK"}', 1)
        check(v == 1, 'hyperc_rpcs_total{method="Compress",code="OK"} = %s' % v)
        v = wait_for(prom, "hyperc_pool_threads", 2)
        check(v == 2, "hyperc_pool_threads = %s (--threads 2)" % v)
        v = wait_for(prom, "hyperc_jobs_running", 0, timeout=5)
        check(v == 0, "hyperc_jobs_running back to 0 (is %s)" % v)

    # Jobs: several queued behind --max-jobs 1, one failing call, so every panel has data.
    # Submitted at once: the uploads end together, three jobs wait behind the first. rtn got
    # so fast that its jobs could end between two scrapes; hc2 with two tensors in its slow
    # fixed-rate mode (the trellis search, about 0.8 M weights) keeps each job a few tenths of
    # a second, so the queue is seen at the 200 ms scrapes.
    argv = [c.HYPERC, "jobs", "submit", model, "--codec", "hc2",
            "--override", r"layers\.[01]\.mlp\.down_proj=mode=fixed,bits=4", "--server", srv.address]
    c.log("$ 4 x " + " ".join(argv))
    subs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    ids = []
    for p in subs:
        so, se = p.communicate(timeout=120)
        if p.returncode != 0:
            raise SystemExit("jobs submit failed (%d): %s" % (p.returncode, se))
        ids.append(so.strip().split()[-1])  # submit prints the job id
    for i in ids:
        c.run([c.HYPERC, "jobs", "watch", i, "--server", srv.address], timeout=120)
    c.run([c.HYPERC, "jobs", "fetch", ids[-1], "-o", os.path.join(tmp, "fetched"), "--server", srv.address])
    r = c.run([c.HYPERC, "jobs", "get", "no-such-job", "--server", srv.address], check=False)
    check(r.returncode != 0, "jobs get of an unknown job fails (%d)" % r.returncode)

    if part in ("metrics", "all"):
        n = 1 + len(ids)
        v = wait_for(prom, 'hyperc_jobs_total{state="SUCCEEDED"}', n)
        check(v == n, "hyperc_jobs_total{state=SUCCEEDED} = %s after %d jobs" % (v, len(ids)))
        v = wait_for(prom, "sum(hyperc_tensors_total)", n * exp["tensors"])
        check(v == n * exp["tensors"], "sum(hyperc_tensors_total) = %s = %d x %d" % (v, n, exp["tensors"]))
        v = wait_for(prom, 'hyperc_rpcs_total{method="SubmitJob",code="OK"}', len(ids))
        check(v == len(ids), "SubmitJob OK RPCs = %s" % v)
        v = wait_for(prom, 'sum(hyperc_rpcs_total{code="NOT_FOUND"})', 1)
        check(v == 1, "NOT_FOUND RPCs = %s" % v)
        v = prom.value("hyperc_spool_bytes")
        check(v is not None and v > 0, "hyperc_spool_bytes = %s (> 0: jobs and artifacts in the spool)" % v)
        r = prom.api("/api/v1/query_range", query="max_over_time(hyperc_jobs_queued[10m])",
                     start=t0, end=time.time(), step=1)
        peak = max((float(s[1]) for res in r["data"]["result"] for s in res["values"]), default=0)
        check(peak >= 1, "hyperc_jobs_queued reached %s while 4 jobs waited on --max-jobs 1" % peak)

    if part in ("dashboard", "all"):
        time.sleep(1.0)  # a few more scrapes after the last change
        promtool = shutil.which("promtool")
        exprs = dashboard_exprs()
        rules = os.path.join(tmp, "dashboard-rules.yml")
        with open(rules, "w") as f:
            f.write("groups:\n  - name: dashboard\n    rules:\n")
            for i, (_, _, e) in enumerate(exprs):
                f.write("      - record: dashboard:expr_%d\n        expr: %s\n" % (i, json.dumps(expand(e))))
        r = c.run([promtool, "check", "rules", rules], check=False)
        check(r.returncode == 0, "promtool check rules on the %d dashboard expressions: %s" %
              (len(exprs), (r.stdout + r.stderr).strip().splitlines()[-1:]))
        end = time.time()
        for title, ref, e in exprs:
            q = expand(e)
            inst = prom.query(q)
            rng = prom.api("/api/v1/query_range", query=q, start=t0, end=end, step=0.5)
            ok = inst["status"] == "success" and rng["status"] == "success"
            n_inst = len(inst["data"]["result"]) if ok else 0
            n_rng = sum(len(s["values"]) for s in rng["data"]["result"]) if ok else 0
            check(ok and n_rng > 0, "%-40s %s: %d series now, %d samples over the run   %s" %
                  (title, ref, n_inst, n_rng, q))
    return check.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "all"))
