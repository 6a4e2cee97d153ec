#!/usr/bin/python3
"""Acceptance 4 of issue 5: a real single-host Slurm (Debian's slurmctld, slurmd, munge), started
here and stopped after, runs deploy/slurm/hyperc-shards.sbatch as a job array with
`sbatch --wait`: one task per shard of the sharded model, each compressing its shard through a
running hyperc-server. Then hyperc-assemble.py (as a dependent Slurm job) joins the artifacts and
the test checks that every task's artifact decodes, that together they restore every tensor of
the model (names, dtypes, shapes against the source index), that they are byte-identical to
`hyperc compress INDEX --server` and that every task went through the server (its metrics).
It then runs hyperc-compress.sbatch (the whole model in one job) and submit-shards.sh (array plus
dependent assembly) and compares their artifact indexes with the reference.

Everything runs from a temporary directory: own slurm.conf (SLURM_CONF), free ports, state and
logs, and an own munged on its own socket; nothing under /etc or /run is touched. Needs root
(slurmd); skips with the reason where Slurm cannot start.
"""
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as c  # noqa: E402

TOOLS = ["slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "munged", "munge", "unmunge"]


def which(tool):
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        p = os.path.join(d, tool)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(tool)


def start_munge(tmp):
    try:
        pw = pwd.getpwnam("munge")
    except KeyError:
        c.skip("no munge user (the munge package creates it)")
    key = "/etc/munge/munge.key"
    if not os.path.exists(key):
        c.skip("%s is missing (the munge package creates it)" % key)
    d = os.path.join(tmp, "munge")
    os.makedirs(d, mode=0o700)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    sock = os.path.join(d, "munge.socket")
    os.chmod(d, 0o755)  # clients (root here) reach the socket
    log = open(os.path.join(tmp, "munged.stderr"), "w")
    c.spawn([which("munged"), "-F", "--socket=" + sock, "--key-file=" + key,
             "--pid-file=" + os.path.join(d, "munged.pid"), "--log-file=" + os.path.join(d, "munged.log"),
             "--seed-file=" + os.path.join(d, "munged.seed")],
            "munged", user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 15
    while time.time() < deadline:
        if os.path.exists(sock):
            m = subprocess.run([which("munge"), "-n", "-S", sock], capture_output=True, text=True)
            u = subprocess.run([which("unmunge"), "-S", sock], input=m.stdout, capture_output=True, text=True)
            if u.returncode == 0 and "Success" in u.stdout:
                c.log("munged up on " + sock)
                return sock
        time.sleep(0.2)
    c.skip("munged did not start: %s %s" % (open(os.path.join(tmp, "munged.stderr")).read()[-1500:],
                                            open(os.path.join(d, "munged.log")).read()[-1500:]
                                            if os.path.exists(os.path.join(d, "munged.log")) else ""))


def write_slurm_conf(tmp, sock):
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    dirs = {k: os.path.join(tmp, k) for k in ("ctld", "slurmd", "log")}
    for p in dirs.values():
        os.makedirs(p)
    conf = os.path.join(tmp, "slurm.conf")
    lines = [
        "ClusterName=hyperc-test",
        "SlurmctldHost=%s(127.0.0.1)" % host,
        "SlurmctldPort=%d" % c.free_port(),
        "SlurmdPort=%d" % c.free_port(),
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "AuthInfo=socket=%s" % sock,
        "StateSaveLocation=" + dirs["ctld"],
        "SlurmdSpoolDir=" + dirs["slurmd"],
        "SlurmctldPidFile=" + os.path.join(tmp, "slurmctld.pid"),
        "SlurmdPidFile=" + os.path.join(tmp, "slurmd.pid"),
        "SlurmctldLogFile=" + os.path.join(dirs["log"], "slurmctld.log"),
        "SlurmdLogFile=" + os.path.join(dirs["log"], "slurmd.log"),
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "MailProg=/bin/true",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "NodeName=%s NodeAddr=127.0.0.1 CPUs=%d State=UNKNOWN" % (host, cpus),
        "PartitionName=debug Nodes=%s Default=YES MaxTime=INFINITE State=UP" % host,
    ]
    open(conf, "w").write("\n".join(lines) + "\n")
    return conf, host, dirs["log"]


def main():
    c.need_binaries()
    index = c.need_model()
    if os.geteuid() != 0:
        c.skip("Slurm daemons need root (slurmd); running as uid %d" % os.geteuid())
    missing = [t for t in TOOLS if not which(t)]
    if missing:
        c.skip("not installed: %s (.ci/install-deps.sh installs slurmctld slurmd slurm-client munge)" % " ".join(missing))
    t_start = time.time()
    tmp = c.tempdir("hc-deploy-slurm-")
    os.chmod(tmp, 0o755)
    sock = start_munge(tmp)
    conf, host, logdir = write_slurm_conf(tmp, sock)
    env = dict(os.environ, SLURM_CONF=conf)
    for k in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")) and k != "SLURM_CONF"]:
        del env[k]
    ctld = c.spawn([which("slurmctld"), "-D", "-i", "-f", conf], "slurmctld", env=env,
                   stdout=open(os.path.join(logdir, "slurmctld.stdout"), "w"), stderr=subprocess.STDOUT)
    slurmd = c.spawn([which("slurmd"), "-D", "-f", conf, "-N", host], "slurmd", env=env,
                     stdout=open(os.path.join(logdir, "slurmd.stdout"), "w"), stderr=subprocess.STDOUT)

    @c.on_exit
    def shutdown():  # runs before the SIGTERM fallbacks registered with the daemons above
        if ctld.poll() is None:
            subprocess.run([which("scontrol"), "shutdown"], env=env, capture_output=True, timeout=20)
            for p in (ctld, slurmd):
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    pass
        c.log("slurm stopped (slurmctld rc %s, slurmd rc %s)" % (ctld.poll(), slurmd.poll()))

    def logs():
        out = []
        for f in sorted(os.listdir(logdir)):
            out.append("--- %s\n%s" % (f, open(os.path.join(logdir, f), errors="replace").read()[-3000:]))
        return "\n".join(out)

    deadline = time.time() + 40
    state = ""
    while time.time() < deadline:
        if ctld.poll() is not None or slurmd.poll() is not None:
            c.skip("a Slurm daemon exited (slurmctld %s, slurmd %s):\n%s" % (ctld.poll(), slurmd.poll(), logs()))
        r = subprocess.run([which("sinfo"), "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        state = r.stdout.strip()
        if state == "idle":
            break
        time.sleep(0.5)
    if state != "idle":
        c.skip("the Slurm node did not become idle (%r):\n%s" % (state, logs()))
    c.log("slurm up in %.1fs: %s" % (time.time() - t_start, c.run([which("sinfo")], env=env).stdout.strip()))

    srv = c.start_server(tmp, extra=["--threads", "2"])
    n = int(c.run([c.PYTHON, os.path.join(c.SOURCE_DIR, "deploy", "slurm", "hyperc-assemble.py"), "--count", index]).stdout)
    out = os.path.join(tmp, "out")
    job_env = dict(env, HYPERC=c.HYPERC, HYPERC_SERVER=srv.address)
    script = os.path.join(c.SOURCE_DIR, "deploy", "slurm", "hyperc-shards.sbatch")
    r = c.run([which("sbatch"), "--wait", "--array=0-%d" % (n - 1), "--chdir=" + tmp,
               "--output=" + os.path.join(tmp, "slurm-%A_%a.out"), script, index, out],
              env=job_env, timeout=120, check=False)
    task_logs = "\n".join("--- %s\n%s" % (f, open(os.path.join(tmp, f)).read())
                          for f in sorted(os.listdir(tmp)) if f.startswith("slurm-"))
    c.log(r.stdout.strip())
    c.log(task_logs)
    if r.returncode != 0:
        raise SystemExit("sbatch --wait exited %d: %s\n%s" % (r.returncode, r.stderr, logs()))
    array_id = re.search(r"Submitted batch job (\d+)", r.stdout).group(1)
    check = c.Checks()

    check(len(re.findall(r"hyperc-shards: wrote ", task_logs)) == n, "%d array tasks wrote their shard" % n)
    check(all(("--server %s" % srv.address) in l for l in task_logs.splitlines() if "hyperc-shards: task" in l)
          and task_logs.count("hyperc-shards: task") == n, "every task compressed through --server %s" % srv.address)
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.metrics_port, timeout=5) as m:
        metrics = m.read().decode()
    ok_rpcs = re.search(r'hyperc_rpcs_total\{code="OK",method="Compress"\} (\S+)', metrics)
    check(ok_rpcs and float(ok_rpcs.group(1)) == n, "hyperc-server counted %s Compress RPCs (one per task)" %
          (ok_rpcs.group(1) if ok_rpcs else None))

    # The assembly, as a Slurm job after the array (what submit-shards.sh queues).
    r = c.run([which("sbatch"), "--wait", "--dependency=afterok:" + array_id, "--chdir=" + tmp,
               "--output=" + os.path.join(tmp, "assemble-%j.out"),
               "--wrap=%s %s %s %s" % (c.PYTHON, os.path.join(c.SOURCE_DIR, "deploy", "slurm", "hyperc-assemble.py"), index, out)],
              env=env, timeout=60, check=False)
    check(r.returncode == 0, "assembly job (afterok:%s) exited %d" % (array_id, r.returncode))

    # Each task's artifact decodes to its shard's tensors; together they restore the model.
    import json
    src = json.load(open(index))["weight_map"]
    src_dir = os.path.dirname(index)
    for shard in sorted(set(src.values())):
        art = os.path.join(out, shard[:-len(".safetensors")] + ".hyc.safetensors")
        dec = os.path.join(tmp, "decoded-" + shard)
        r = c.run([c.HYPERC, "decompress", art, "-o", dec, "--quiet"], check=False)
        got = c.model_tensors(dec) if r.returncode == 0 else {}
        want = c.model_tensors(os.path.join(src_dir, shard))
        check(r.returncode == 0 and {k: v for k, v in got.items()} == want,
              "%s decodes: %d tensors, names/dtypes/shapes of %s" % (os.path.basename(art), len(got), shard))
    restored = os.path.join(tmp, "restored")
    r = c.run([c.HYPERC, "decompress", out, "-o", restored, "--quiet"], check=False)
    check(r.returncode == 0, "hyperc decompress %s (the assembled artifact) exits %d %s" % (out, r.returncode, r.stderr.strip()))
    if r.returncode == 0:
        got = c.model_tensors(os.path.join(restored, "model.safetensors.index.json"))
        want = c.model_tensors(index)
        check(got == want, "restored %d tensors (names, dtypes, shapes) = source index %d" % (len(got), len(want)))
        check(json.load(open(os.path.join(restored, "model.safetensors.index.json")))["weight_map"] == src,
              "restored index weight_map = source weight_map")
    ref = os.path.join(tmp, "ref")
    c.run([c.HYPERC, "compress", index, "-o", ref, "--server", srv.address, "--quiet"])
    same = all(open(os.path.join(ref, f), "rb").read() == open(os.path.join(out, f), "rb").read()
               for f in os.listdir(ref) if f.endswith(".safetensors"))
    check(same, "shard artifacts byte-identical to hyperc compress INDEX --server")
    check(json.load(open(os.path.join(ref, "hyperc.index.json"))) == json.load(open(os.path.join(out, "hyperc.index.json"))),
          "assembled hyperc.index.json = the one hyperc compress INDEX writes")
    # The single-job script: the whole model in one job, through the server.
    single = os.path.join(tmp, "single")
    r = c.run([which("sbatch"), "--wait", "--chdir=" + tmp, "--output=" + os.path.join(tmp, "single-%j.out"),
               os.path.join(c.SOURCE_DIR, "deploy", "slurm", "hyperc-compress.sbatch"), index, single],
              env=job_env, timeout=120, check=False)
    check(r.returncode == 0 and json.load(open(os.path.join(single, "hyperc.index.json"))) ==
          json.load(open(os.path.join(ref, "hyperc.index.json"))),
          "hyperc-compress.sbatch (one job, whole model) exits %d with the same artifact index" % r.returncode)
    # The helper that queues the array and the assembly after it (--wait: both, one by one).
    out2 = os.path.join(tmp, "out2")
    r = c.run([os.path.join(c.SOURCE_DIR, "deploy", "slurm", "submit-shards.sh"), index, out2],
              env=dict(job_env, SBATCH_ARGS="--wait"), timeout=120, check=False)
    check(r.returncode == 0 and os.path.exists(os.path.join(out2, "hyperc.index.json")) and
          json.load(open(os.path.join(out2, "hyperc.index.json"))) == json.load(open(os.path.join(ref, "hyperc.index.json"))),
          "submit-shards.sh (array + dependent assembly) exits %d with the same artifact index: %s" %
          (r.returncode, r.stdout.strip()))
    c.log("slurm test took %.1fs" % (time.time() - t_start))
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
