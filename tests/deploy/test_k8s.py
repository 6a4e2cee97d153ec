#!/usr/bin/python3
"""Acceptance 5 of issue 5: parses deploy/k8s (python3-yaml) and checks that the manifests agree:
kustomization resources, labels and selectors, ports (container, Service, flags, probes,
Prometheus annotations), the gRPC liveness/readiness probes on the health service, the
headless Service, ConfigMap and PVC references, $(VAR) expansions, and the Job template's
--server address and image. No cluster is needed (kubectl is not in Debian 12)."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as c  # noqa: E402

K8S = os.path.join(c.SOURCE_DIR, "deploy", "k8s")


def load_all(path):
    import yaml
    return [d for d in yaml.safe_load_all(open(path)) if d]


def flag(args, name):
    """Value of --name=V or --name V in a container's args."""
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return None


def subset(a, b):
    return all(b.get(k) == v for k, v in a.items())


def main():
    try:
        import yaml  # noqa: F401
    except ImportError:
        c.skip("python3-yaml is not installed (.ci/install-deps.sh installs it)")
    check = c.Checks()

    kust = load_all(os.path.join(K8S, "kustomization.yaml"))[0]
    check(kust.get("kind") == "Kustomization", "kustomization.yaml is a Kustomization")
    docs = {}
    for res in kust["resources"]:
        path = os.path.join(K8S, res)
        check(os.path.exists(path), "resource %s exists" % res)
        for d in load_all(path):
            check(all(k in d for k in ("apiVersion", "kind", "metadata")) and d["metadata"].get("name"),
                  "%s: %s/%s has apiVersion, kind, metadata.name" % (res, d.get("kind"), d.get("metadata", {}).get("name")))
            docs[(d["kind"], d["metadata"]["name"])] = d
    listed = set(kust["resources"])
    on_disk = {f for f in os.listdir(K8S) if f.endswith(".yaml") and f not in ("kustomization.yaml", "job.yaml")}
    check(on_disk == listed, "every manifest but job.yaml is a kustomization resource (%s)" % sorted(on_disk ^ listed))
    ns = kust.get("namespace")
    check(("Namespace", ns) in docs, "kustomization namespace %s is created" % ns)

    deps = [d for (k, _), d in docs.items() if k == "Deployment"]
    svcs = [d for (k, _), d in docs.items() if k == "Service"]
    check(len(deps) == 1 and len(svcs) == 1, "one Deployment and one Service")
    dep, svc = deps[0], svcs[0]
    pod = dep["spec"]["template"]
    plabels = pod["metadata"]["labels"]
    check(subset(dep["spec"]["selector"]["matchLabels"], plabels), "Deployment selector %s matches its pod labels" %
          dep["spec"]["selector"]["matchLabels"])
    check(subset(svc["spec"]["selector"], plabels), "Service selector %s matches the pod labels" % svc["spec"]["selector"])
    check(svc["spec"].get("clusterIP") == "None", "Service is headless (clusterIP: None), for round_robin over pod IPs")
    check(dep["spec"].get("replicas", 1) >= 2, "Deployment runs %s replicas" % dep["spec"].get("replicas"))

    ctr = [x for x in pod["spec"]["containers"] if x["name"] == "hyperc-server"][0]
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    args = ctr.get("args", [])
    listen = flag(args, "--listen")
    metrics = flag(args, "--metrics-address")
    check(listen and int(listen.rsplit(":", 1)[1]) == ports.get("grpc") and listen.startswith("0.0.0.0:"),
          "--listen %s = containerPort grpc %s (all interfaces)" % (listen, ports.get("grpc")))
    check(metrics and int(metrics.rsplit(":", 1)[1]) == ports.get("metrics"),
          "--metrics-address %s = containerPort metrics %s" % (metrics, ports.get("metrics")))
    for sp in svc["spec"]["ports"]:
        tp = sp.get("targetPort", sp["port"])
        target = ports.get(tp) if isinstance(tp, str) else tp
        check(target == sp["port"] == ports.get(sp["name"]),
              "Service port %s %s -> targetPort %s = containerPort %s" % (sp["name"], sp["port"], tp, ports.get(sp["name"])))
    check({sp["name"] for sp in svc["spec"]["ports"]} == set(ports), "Service exposes the container ports %s" % sorted(ports))
    for probe in ("livenessProbe", "readinessProbe"):
        p = ctr.get(probe, {})
        g = p.get("grpc")
        check(g is not None and g.get("port") == ports.get("grpc") and g.get("service", "") == "",
              "%s: native gRPC probe on port %s, service \"\" (grpc.health.v1)" % (probe, g and g.get("port")))
    ann = pod["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and int(ann.get("prometheus.io/port", 0)) == ports.get("metrics"),
          "Prometheus annotations scrape port %s" % ann.get("prometheus.io/port"))

    spool = flag(args, "--spool-dir")
    mounts = {m["mountPath"]: m for m in ctr.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    check(spool in mounts, "--spool-dir %s is a volume mount" % spool)
    sv = vols.get(mounts.get(spool, {}).get("name"), {})
    claim = sv.get("persistentVolumeClaim", {}).get("claimName")
    check(("PersistentVolumeClaim", claim) in docs, "spool volume uses the PVC %s of pvc.yaml" % claim)
    if dep["spec"].get("replicas", 1) > 1 and ("PersistentVolumeClaim", claim) in docs:
        pvc = docs[("PersistentVolumeClaim", claim)]
        check("ReadWriteMany" in pvc["spec"]["accessModes"], "several replicas share the PVC: ReadWriteMany")
        check("POD_NAME" in mounts[spool].get("subPathExpr", ""), "each replica has its own spool (subPathExpr $(POD_NAME))")

    env = {e["name"] for e in ctr.get("env", [])}
    for ef in ctr.get("envFrom", []):
        name = ef["configMapRef"]["name"]
        check(("ConfigMap", name) in docs, "envFrom ConfigMap %s exists" % name)
        env |= set(docs.get(("ConfigMap", name), {}).get("data", {}))
    refs = set(re.findall(r"\$\((\w+)\)", " ".join(args) + " " + " ".join(m.get("subPathExpr", "") for m in mounts.values())))
    check(refs <= env, "every $(VAR) in args and mounts is defined (%s)" % sorted(refs - env or refs))
    known = {"--listen", "--spool-dir", "--threads", "--max-jobs", "--max-queue", "--max-upload-bytes",
             "--max-tensor-bytes", "--memory-budget", "--metrics-address", "--auth-token-file", "--tls-cert", "--tls-key", "--no-sync",
             "--input-root", "--output-root"}
    used = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    check(used <= known, "every flag is a hyperc-server flag (%s)" % sorted(used - known or used))
    if os.access(c.SERVER, os.X_OK):
        helptext = c.run([c.SERVER, "--help"]).stdout
        check(all(f in helptext for f in used), "hyperc-server --help lists every flag used")
    sc = {**pod["spec"].get("securityContext", {}), **ctr.get("securityContext", {})}
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, "runs as non-root (uid %s)" % sc.get("runAsUser"))

    # The image (deploy/Dockerfile): same user and ports.
    dtext = open(os.path.join(c.SOURCE_DIR, "deploy", "Dockerfile")).read()
    duser = re.findall(r"^USER\s+(\d+)", dtext, re.M)
    check(duser and int(duser[-1]) == sc.get("runAsUser"), "runAsUser %s = the image's USER %s" % (sc.get("runAsUser"), duser))
    expose = {int(x) for line in re.findall(r"^EXPOSE\s+(.*)$", dtext, re.M) for x in line.split()}
    check(set(ports.values()) == expose, "container ports %s = the image's EXPOSE %s" % (sorted(ports.values()), sorted(expose)))
    check(spool == "/var/lib/hyperc/spool" and spool in dtext, "spool path %s = the image's VOLUME" % spool)

    # Paths the server reads and writes in place are volume mounts (its own filesystem).
    for f in ("--input-root", "--output-root"):
        for a in args:
            if a.startswith(f + "="):
                root = a.split("=", 1)[1]
                check(any(root == mp or root.startswith(mp.rstrip("/") + "/") for mp in mounts),
                      "%s %s lies on a volume mount" % (f, root))

    # The Job template: the CLI against the headless Service.
    job = load_all(os.path.join(K8S, "job.yaml"))[0]
    check(job["kind"] == "Job", "job.yaml is a Job")
    jc = job["spec"]["template"]["spec"]["containers"][0]
    jargs = jc.get("command", []) + jc.get("args", [])
    server = flag(jargs, "--server")
    m = re.match(r"^(?:dns:///)?([^:/,]+):(\d+)$", server or "")
    check(m is not None, "Job --server %s is one DNS name" % server)
    if m:
        host, port = m.group(1), int(m.group(2))
        parts = host.split(".")
        check(parts[0] == svc["metadata"]["name"], "Job --server names the Service %s" % svc["metadata"]["name"])
        check(len(parts) == 1 or parts[1] == ns, "Job --server namespace %s = kustomization namespace %s" % (parts[1:2], ns))
        check(port == ports.get("grpc"), "Job --server port %d = gRPC port" % port)
        check(server.startswith("dns:///"), "Job uses dns:/// so the client resolves every replica")
    check(job["metadata"].get("namespace", ns) == ns, "Job namespace %s" % job["metadata"].get("namespace"))
    check(jc["image"] == ctr["image"], "Job image %s = Deployment image" % jc["image"])
    check(jargs[:2] == ["/usr/local/bin/hyperc", "compress"] or "compress" in jargs, "Job runs hyperc compress")
    check(job["spec"]["template"]["spec"].get("restartPolicy") in ("Never", "OnFailure"), "Job restartPolicy")
    img = ctr["image"].split(":")[0]
    check(any(i["name"] == img for i in kust.get("images", [])), "kustomization images: sets %s" % img)
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
