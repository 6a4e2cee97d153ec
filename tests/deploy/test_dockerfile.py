#!/usr/bin/python3
"""Acceptance 3 of issue 5: docker-compose.yml passes `docker-compose config -q` (Debian's Compose
v1; no engine runs here), and deploy/Dockerfile installs exactly the packages of the project's
install script, .ci/install-deps.sh:
  - no RUN line installs a package itself (apt-get/apt/dpkg -i): packages come only through
    deploy/apt-install.sh, which reads the script's lists; each stage copies the script;
  - the build stage installs HC_BUILD_PACKAGES, the runtime stage HC_RUNTIME_PACKAGES;
  - HC_RUNTIME_PACKAGES is what the runtime needs, no more and no less: the packages of every
    shared library the built binaries load directly (readelf NEEDED, dpkg -S), plus python3 and
    python3-grpcio for the HEALTHCHECK, minus what debian:12-slim already has.
The checks are also run on mutated copies (a package added to the Dockerfile only, or to the
script's runtime list only) and must fail there, so the test cannot pass vacuously.
Compose and Dockerfile must agree on the image's ports, volume and health check.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as c  # noqa: E402

DOCKERFILE = os.path.join(c.SOURCE_DIR, "deploy", "Dockerfile")
APT_INSTALL = os.path.join(c.SOURCE_DIR, "deploy", "apt-install.sh")
DEPS_SCRIPT = os.path.join(c.SOURCE_DIR, ".ci", "install-deps.sh")
COMPOSE = os.path.join(c.SOURCE_DIR, "docker-compose.yml")
# In debian:12-slim already (dependencies of apt and dpkg); never listed.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
# The HEALTHCHECK runs /usr/bin/python3 deploy/healthcheck.py, which imports grpc.
HEALTHCHECK_PACKAGES = {"python3", "python3-grpcio"}


def instructions(text):
    """[(stage_index, KEYWORD, args)] with continuation lines joined and comments dropped."""
    out, stage, cur = [], -1, ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        cur += " " + s[:-1] if s.endswith("\\") else " " + s
        if s.endswith("\\"):
            continue
        kw, _, args = cur.strip().partition(" ")
        kw = kw.upper()
        if kw == "FROM":
            stage += 1
        out.append((stage, kw, args.strip()))
        cur = ""
    return out


def list_packages(lists, deps_script):
    env = dict(os.environ, HC_DEPS_SCRIPT=deps_script)
    r = subprocess.run(["bash", APT_INSTALL, "--print"] + list(lists), capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise AssertionError("apt-install.sh --print %s: %s" % (" ".join(lists), r.stderr.strip()))
    return set(r.stdout.split())


def needed_packages(binaries):
    """Debian packages owning the libraries the binaries need directly (DT_NEEDED)."""
    libs = set()
    for b in binaries:
        r = c.run(["readelf", "-d", b])
        libs |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", r.stdout))
    pkgs = {}
    ldd = {}
    for b in binaries:
        for m in re.finditer(r"^\s*(\S+) => (/\S+)", c.run(["ldd", b]).stdout, re.M):
            ldd[m.group(1)] = m.group(2)
    for lib in sorted(libs):
        pkg = ""
        for path in (ldd[lib], os.path.realpath(ldd[lib])):
            # usrmerge: dpkg may know the file under /lib or under /usr/lib.
            for cand in (path, re.sub(r"^/usr/lib/", "/lib/", path), re.sub(r"^/lib/", "/usr/lib/", path)):
                r = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
                if r.returncode == 0:
                    pkg = r.stdout.split(":")[0].strip()
                    break
            if pkg:
                break
        if not pkg:
            raise AssertionError("no package owns %s (%s)" % (lib, path))
        pkgs.setdefault(pkg, []).append(lib)
    return pkgs


def vol(v):
    """(source, target) of a compose volume entry, long or short syntax."""
    if isinstance(v, dict):
        return v.get("source", ""), v["target"]
    parts = str(v).split(":")
    return (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])


def check_dockerfile(text, deps_script, needed, check_runtime=True):
    """Returns a list of problems (empty when the Dockerfile and the script agree).

    check_runtime=False skips the equality of HC_RUNTIME_PACKAGES and the binaries' needs: in a
    sanitizer build the binaries load libasan/libubsan and link differently from the Release
    build the image ships, so only the Release build can judge it."""
    problems = []
    ins = instructions(text)
    stages = {}
    for st, kw, args in ins:
        if kw == "FROM":
            stages[st] = args.split()[-1] if " AS " in args.upper() else str(st)
    installed = {}
    for st, kw, args in ins:
        if kw != "RUN":
            continue
        if re.search(r"\b(apt-get|apt|aptitude)\s+(-\S+\s+)*install\b|\bdpkg\s+-i\b", args):
            problems.append("stage %s installs packages itself: RUN %s" % (stages[st], args))
        for m in re.finditer(r"apt-install\.sh((?:\s+HC_[A-Z_]+_PACKAGES)+)", args):
            installed.setdefault(stages[st], set()).update(m.group(1).split())
    for st, name in stages.items():
        if name in installed:
            copies = [a for s, kw, a in ins if s == st and kw == "COPY"]
            if not any(".ci/install-deps.sh" in a for a in copies):
                problems.append("stage %s runs apt-install.sh without copying .ci/install-deps.sh" % name)
    if installed.get("build") != {"HC_BUILD_PACKAGES"}:
        problems.append("build stage installs %s, expected HC_BUILD_PACKAGES" % installed.get("build"))
    if installed.get("runtime") != {"HC_RUNTIME_PACKAGES"}:
        problems.append("runtime stage installs %s, expected HC_RUNTIME_PACKAGES" % installed.get("runtime"))
    runtime = list_packages(["HC_RUNTIME_PACKAGES"], deps_script)
    if not check_runtime:
        needed = {p: ["(not checked)"] for p in runtime}
    want = (set(needed) - BASE_IMAGE_PACKAGES) | HEALTHCHECK_PACKAGES
    for p in sorted(want - runtime):
        problems.append("runtime needs %s (%s) but HC_RUNTIME_PACKAGES lacks it" % (p, ", ".join(needed.get(p, ["healthcheck"]))))
    for p in sorted(runtime - want):
        problems.append("HC_RUNTIME_PACKAGES has %s, which no binary or the health check needs" % p)
    build = list_packages(["HC_BUILD_PACKAGES"], deps_script)
    if not build:
        problems.append("HC_BUILD_PACKAGES is empty")
    return problems


class _NoRuntimeMutations:
    """Stands in for the runtime-list mutations in a sanitizer build (nothing to compare)."""

    def __enter__(self):
        c.log("sanitizer build: runtime-list mutations are checked in the Release build only")
        return None

    def __exit__(self, *exc):
        return False


def main():
    c.need_binaries()
    check = c.Checks()

    text = open(DOCKERFILE).read()
    needed = needed_packages([c.HYPERC, c.SERVER])
    c.log("packages of the binaries' NEEDED libraries: %s" % " ".join(sorted(needed)))
    c.log("HC_RUNTIME_PACKAGES: %s" % " ".join(sorted(list_packages(["HC_RUNTIME_PACKAGES"], DEPS_SCRIPT))))
    sanitized = bool({"libasan8", "libubsan1"} & set(needed))
    if sanitized:
        c.log("sanitizer build: the runtime list is compared with the binaries' needs in the Release build only")
    problems = check_dockerfile(text, DEPS_SCRIPT, needed, check_runtime=not sanitized)
    for p in problems:
        c.log("      " + p)
    check(not problems, "deploy/Dockerfile installs the packages of .ci/install-deps.sh, runtime list = runtime needs")

    # The same checks must catch a package added to one side only.
    bad = text.replace("RUN /tmp/hc/deploy/apt-install.sh HC_RUNTIME_PACKAGES",
                       "RUN apt-get update && apt-get install -y --no-install-recommends curl\n"
                       "RUN /tmp/hc/deploy/apt-install.sh HC_RUNTIME_PACKAGES")
    check(bad != text and check_dockerfile(bad, DEPS_SCRIPT, needed, check_runtime=not sanitized),
          "mutation: a package installed by the Dockerfile alone is caught")
    with tempfile.TemporaryDirectory(prefix="hc-deploy-docker-") if not sanitized else _NoRuntimeMutations() as tmp:
        script = open(DEPS_SCRIPT).read()
        for mutated, what in [] if tmp is None else [(script.replace("HC_RUNTIME_PACKAGES=(", "HC_RUNTIME_PACKAGES=(\n  curl", 1),
                               "a package added to HC_RUNTIME_PACKAGES alone"),
                              (script.replace(" libtbb12", "", 1), "a runtime library dropped from the script")]:
            path = os.path.join(tmp, "install-deps.sh")
            open(path, "w").write(mutated)
            check(mutated != script and check_dockerfile(text, path, needed), "mutation: %s is caught" % what)

    # Compose (acceptance 3): the offline check, and agreement with the image.
    compose = shutil.which("docker-compose")
    if not compose:
        c.skip("docker-compose is not installed (.ci/install-deps.sh installs it)")
    r = c.run([compose, "-f", COMPOSE, "config", "-q"], check=False, cwd=c.SOURCE_DIR)
    check(r.returncode == 0, "docker-compose -f docker-compose.yml config -q -> %d %s" % (r.returncode, r.stderr.strip()))
    with tempfile.TemporaryDirectory(prefix="hc-deploy-compose-") as tmp:
        bad = open(COMPOSE).read().replace("    ports:", "    portz:", 1)
        path = os.path.join(c.SOURCE_DIR, ".hc-test-compose-%d.yml" % os.getpid())
        try:
            open(path, "w").write(bad)
            r = c.run([compose, "-f", path, "config", "-q"], check=False, cwd=c.SOURCE_DIR)
        finally:
            os.unlink(path)
        check(r.returncode != 0, "docker-compose config rejects a bad key (%s)" % r.stderr.strip().splitlines()[-1:])
    import yaml
    cfg = yaml.safe_load(c.run([compose, "-f", COMPOSE, "config"], cwd=c.SOURCE_DIR).stdout)
    svc = cfg["services"]["hyperc-server"]
    check(os.path.normpath(os.path.join(svc["build"]["context"], svc["build"]["dockerfile"])) == DOCKERFILE,
          "compose builds hyperc-server from deploy/Dockerfile")
    ins = instructions(text)
    runtime = [(kw, a) for st, kw, a in ins if st == max(s for s, _, _ in ins)]
    expose = {int(p) for kw, a in runtime if kw == "EXPOSE" for p in a.split()}
    volume = [a for kw, a in runtime if kw == "VOLUME"]
    health = [a for kw, a in runtime if kw == "HEALTHCHECK"][0]
    user = [a for kw, a in runtime if kw == "USER"]
    check(user and not user[-1].startswith(("root", "0")), "runtime stage runs as a non-root user (%s)" % user)
    cmd = svc["command"]
    args = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}
    listen_port = int(args["--listen"].rsplit(":", 1)[1])
    metrics_port = int(args["--metrics-address"].rsplit(":", 1)[1])
    check({listen_port, metrics_port} == expose, "compose ports %s = Dockerfile EXPOSE %s" % ({listen_port, metrics_port}, expose))
    published = {int(p["target"]) if isinstance(p, dict) else int(str(p).rsplit(":", 1)[1].split("/")[0])
                 for p in svc.get("ports", [])}
    check(published == {listen_port}, "compose publishes the gRPC port (%s)" % published)
    targets = {vol(v)[1] for v in svc["volumes"]}
    check(args["--spool-dir"] in targets and any(args["--spool-dir"] in v for v in volume),
          "spool %s is a compose volume and the image's VOLUME %s" % (args["--spool-dir"], volume))
    hc = svc["healthcheck"]["test"]
    check(hc[0] == "CMD" and " ".join(hc[1:]) in health.replace('", "', " ").replace('"', ""),
          "compose healthcheck %s = Dockerfile HEALTHCHECK" % hc[1:])
    check(str(listen_port) in " ".join(hc), "health check probes the gRPC port %d" % listen_port)
    prom = cfg["services"]["prometheus"]
    pcfg = yaml.safe_load(open(os.path.join(c.SOURCE_DIR, "deploy", "prometheus", "prometheus.yml")))
    tgts = [t for j in pcfg["scrape_configs"] for s in j["static_configs"] for t in s["targets"]]
    check(tgts == ["hyperc-server:%d" % metrics_port], "Prometheus scrapes hyperc-server:%d (%s)" % (metrics_port, tgts))
    check(any(vol(v)[1] == "/etc/prometheus/prometheus.yml" for v in prom["volumes"]), "Prometheus gets deploy/prometheus/prometheus.yml")
    graf = cfg["services"]["grafana"]
    gv = {vol(v)[1]: vol(v)[0] for v in graf["volumes"]}
    check(gv.get("/etc/grafana/provisioning", "").endswith("deploy/grafana/provisioning"), "Grafana provisioning mounted")
    prov = yaml.safe_load(open(os.path.join(c.SOURCE_DIR, "deploy", "grafana", "provisioning", "dashboards", "hyperc.yml")))
    dpath = prov["providers"][0]["options"]["path"]
    check(gv.get(dpath, "").endswith("deploy/grafana/dashboards"), "dashboards mounted at the provider path %s" % dpath)
    ds = yaml.safe_load(open(os.path.join(c.SOURCE_DIR, "deploy", "grafana", "provisioning", "datasources", "prometheus.yml")))
    check(ds["datasources"][0]["url"] == "http://prometheus:9090" and ds["datasources"][0]["uid"] == "prometheus",
          "Grafana datasource uid prometheus -> http://prometheus:9090")
    import json
    dash = json.load(open(os.path.join(c.SOURCE_DIR, "deploy", "grafana", "dashboards", "hyperc.json")))
    uids = {p["datasource"]["uid"] for p in dash["panels"] if "datasource" in p}
    check(uids == {"prometheus"}, "every dashboard panel uses datasource uid prometheus (%s)" % uids)
    named = set(cfg.get("volumes", {}))
    check({"hyperc-spool", "grafana-data"} <= named, "named volumes for the spool and Grafana's data (%s)" % sorted(named))
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
