"""Validates deploy/k8s/ offline: yamllint, a strict schema check, and rlaifd's needs.

Runs with Debian's Python (/usr/bin/python3) and Debian packages only:
yamllint, python3-yaml, python3-kubernetes (scripts/deps.sh installs them).

Schema: the Kubernetes Python client's model classes are generated from the
Kubernetes OpenAPI spec (v1.22 in Debian bookworm's python3-kubernetes 22.6).
Each object is walked against them strictly: every field name must exist in
its type (catches typos that kubectl would drop or reject), every value must
have the field's type, and the client's own deserializer enforces required
fields. No cluster or network is needed. It is not a full API-server
validation (no defaulting, no cross-field rules such as selector/label
matching); the rlaifd-specific checks below cover the ones that matter here.

rlaifd checks: one replica (single-writer store); the config in the ConfigMap
passes `rlaifd check-config`; the PVC template is mounted at its data_dir;
probes GET /livez and /readyz on the named port the config listens on; every
environment variable the config names (admin token, API keys) comes from the
Secret, which has those keys; Services select the pod and target its port;
pod and container security contexts are non-root; the GPU overlay, merged
onto the base, still validates and requests nvidia.com/gpu.

Finally the checker must catch broken variants (a typo, a wrong type, a
missing required field, a wrong probe path, a missing secret key, 2 replicas).

  /usr/bin/python3 check_k8s.py --source DIR --bin BUILD/bin
"""
import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml
from kubernetes import client

MODELS = {("v1", "ConfigMap"): "V1ConfigMap", ("v1", "Secret"): "V1Secret",
          ("v1", "Service"): "V1Service", ("apps/v1", "StatefulSet"): "V1StatefulSet"}
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i?|[mun]|k)?$")


def walk(value, typ, path, problems):
    """Checks `value` (parsed YAML) against the client model type name `typ`."""
    if value is None:
        return
    if typ.startswith("list["):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, v in enumerate(value):
            walk(v, typ[5:-1], f"{path}[{i}]", problems)
    elif typ.startswith("dict("):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map, got {type(value).__name__}")
            return
        inner = typ[5:-1].split(",", 1)[1].strip()
        for k, v in value.items():
            if path.endswith((".limits", ".requests")) and inner == "str":
                # Resource quantities: Kubernetes accepts numbers and strings.
                if not isinstance(v, (str, int, float)) or isinstance(v, bool) or \
                        not QUANTITY.match(str(v)):
                    problems.append(f"{path}.{k}: {v!r} is not a quantity")
                continue
            walk(v, inner, f"{path}.{k}", problems)
    elif typ == "str":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {type(value).__name__} {value!r}")
    elif typ == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {type(value).__name__} {value!r}")
    elif typ == "bool":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean, got {type(value).__name__} {value!r}")
    elif typ == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{path}: expected a number, got {value!r}")
    elif typ == "datetime":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a timestamp string")
    elif typ == "object":
        pass  # IntOrString, RawExtension: any JSON value
    else:
        cls = getattr(client.models, typ)
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object ({typ}), got {type(value).__name__}")
            return
        by_json = {j: a for a, j in cls.attribute_map.items()}
        for k, v in value.items():
            if k not in by_json:
                problems.append(f"{path}.{k}: unknown field in {typ}")
                continue
            walk(v, cls.openapi_types[by_json[k]], f"{path}.{k}", problems)


def validate(doc, where):
    problems = []
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in MODELS:
        return [f"{where}: unexpected apiVersion/kind {key}"]
    typ = MODELS[key]
    walk(doc, typ, f"{where}:{doc['kind']}", problems)
    if not problems:
        try:  # required fields, via the generated client's own validation
            client.ApiClient()._ApiClient__deserialize(copy.deepcopy(doc), typ)
        except (ValueError, TypeError) as e:
            problems.append(f"{where}:{doc['kind']}: {e}")
    if not (doc.get("metadata") or {}).get("name"):
        problems.append(f"{where}:{doc['kind']}: metadata.name is required")
    return problems


def merge(base, patch):
    """Strategic-merge subset used by the GPU overlay: maps deep-merge, lists
    of objects with a "name" merge by name, other lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    if isinstance(base, list) and isinstance(patch, list) and patch and \
            all(isinstance(x, dict) and "name" in x for x in base + patch):
        out = [dict(x) for x in base]
        for p in patch:
            hit = [i for i, x in enumerate(out) if x["name"] == p["name"]]
            if hit:
                out[hit[0]] = merge(out[hit[0]], p)
            else:
                out.append(p)
        return out
    return patch


def rlaifd_checks(docs, rlaifd):
    p = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    sts = by_kind["StatefulSet"][0]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    if spec.get("replicas") != 1:
        p.append("StatefulSet replicas must be 1: the RocksDB store admits one writer")
    if spec["selector"]["matchLabels"].items() - labels.items():
        p.append("StatefulSet selector does not match the pod labels")
    c = [x for x in pod["containers"] if x["name"] == "rlaifd"]
    if not c:
        return p + ["no container named rlaifd"]
    c = c[0]

    cms = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    cfg_vols = {v["name"]: v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v}
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    args = c.get("args", [])
    if args[:2] != ["run", "--config"] or len(args) != 3:
        return p + [f"container args must be run --config FILE, got {args}"]
    cfg_path = args[2]
    cfg_dir, cfg_file = os.path.dirname(cfg_path), os.path.basename(cfg_path)
    vol = mounts.get(cfg_dir)
    if vol not in cfg_vols or cfg_vols[vol] not in cms or cfg_file not in cms[cfg_vols[vol]]["data"]:
        return p + [f"{cfg_path} is not a key of a ConfigMap mounted at {cfg_dir}"]
    text = cms[cfg_vols[vol]]["data"][cfg_file]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        f.write(text)
        f.flush()
        r = subprocess.run([rlaifd, "check-config", f.name], capture_output=True, text=True)
    if r.returncode != 0:
        return p + [f"the ConfigMap's {cfg_file} fails rlaifd check-config: {r.stderr.strip()}"]
    cfg = json.loads(text)

    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    if mounts.get(cfg["data_dir"]) not in claims:
        p.append(f"data_dir {cfg['data_dir']} is not mounted from a volumeClaimTemplate")
    backup = cfg.get("backup_dir") or cfg["data_dir"] + "/backups"
    if not (backup + "/").startswith(cfg["data_dir"] + "/") and backup not in mounts:
        p.append(f"backup_dir {backup} is on no writable volume")
    host, port = cfg["api"]["listen"].rsplit(":", 1)
    if host != "0.0.0.0":
        p.append("the config must listen on 0.0.0.0 in a pod (probes and the Service connect to the pod IP)")
    ports = {x.get("name"): x["containerPort"] for x in c.get("ports", [])}
    if ports.get("http") != int(port):
        p.append(f"container port 'http' ({ports.get('http')}) is not the config's port {port}")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        g = (c.get(probe) or {}).get("httpGet") or {}
        if g.get("path") != path or g.get("port") not in ("http", int(port)):
            p.append(f"{probe} must GET {path} on port http, got {g}")

    secrets = {d["metadata"]["name"]: set((d.get("stringData") or {}).keys()) |
               set((d.get("data") or {}).keys()) for d in by_kind.get("Secret", [])}
    provided = set()
    for e in c.get("envFrom", []):
        name = (e.get("secretRef") or {}).get("name")
        if name:
            if name not in secrets:
                p.append(f"envFrom names Secret {name}, which is not in the manifests")
            provided |= secrets.get(name, set())
    for e in c.get("env", []):
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref and ref["key"] in secrets.get(ref["name"], set()):
            provided.add(e["name"])
    needed = {cfg["api"].get("admin_token_env", "RLAIF_TOKEN")}
    needed |= {t["token_env"] for t in cfg["api"].get("admin_tokens", []) if t.get("token_env")}
    for up in ("generator", "judge"):
        if cfg[up].get("api_key_env"):
            needed.add(cfg[up]["api_key_env"])
    for n in sorted(needed - provided):
        p.append(f"environment variable {n} (named in the config) does not come from the Secret")
    # A key file (api_key_file) must be a key of a Secret in the manifests,
    # mounted whole (no subPath: kubelet never updates such a mount, and a
    # rotation would need a restart).
    # The pod runs as a non-root user: the file must be readable by it, as
    # owner (runAsUser 0 only) or through the fsGroup the volume gets.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    psc_ = pod.get("securityContext") or {}
    for up in ("generator", "judge"):
        f = cfg[up].get("api_key_file")
        if not f:
            continue
        found = False
        for m in c.get("volumeMounts", []):
            sec = (volumes.get(m["name"]) or {}).get("secret")
            mount = m["mountPath"].rstrip("/")
            if not sec or not (f == mount or f.startswith(mount + "/")):
                continue
            found = True
            if m.get("subPath") or f == mount:
                p.append(f"{up}.api_key_file {f} is mounted with subPath: never updated")
                continue
            rel = f[len(mount) + 1:]
            items = sec.get("items")
            item = next((i for i in items if i["path"] == rel), None) if items else {"key": rel}
            if item is None or item["key"] not in secrets.get(sec.get("secretName"), set()):
                p.append(f"{up}.api_key_file {f}: no key of Secret {sec.get('secretName')} there")
                continue
            mode = item.get("mode", sec.get("defaultMode", 0o644))
            if not (mode & 0o004 or (mode & 0o040 and psc_.get("fsGroup"))):
                p.append(f"{up}.api_key_file {f}: mode {oct(mode)} is not readable by the pod's "
                         "user (group-readable with an fsGroup, or readable by others)")
        if not found:
            p.append(f"{up}.api_key_file {f} is not in a mounted Secret volume")
    for e in c.get("env", []):
        if e["name"] in needed and "value" in e:
            p.append(f"secret {e['name']} is set in plain text in the StatefulSet")

    for s in by_kind.get("Service", []):
        sel = s["spec"].get("selector") or {}
        if not sel or sel.items() - labels.items():
            p.append(f"Service {s['metadata']['name']} does not select the rlaifd pod")
        for sp in s["spec"]["ports"]:
            if sp.get("targetPort") not in ("http", int(port)):
                p.append(f"Service {s['metadata']['name']} targets {sp.get('targetPort')}")
    headless = [s for s in by_kind.get("Service", []) if s["spec"].get("clusterIP") == "None"]
    if spec.get("serviceName") not in [s["metadata"]["name"] for s in headless]:
        p.append("StatefulSet serviceName is not a headless Service in the manifests")

    psc = pod.get("securityContext") or {}
    csc = c.get("securityContext") or {}
    if not psc.get("runAsNonRoot") or not psc.get("runAsUser"):
        p.append("pod securityContext must set runAsNonRoot and a non-zero runAsUser")
    if csc.get("allowPrivilegeEscalation") is not False:
        p.append("container securityContext must set allowPrivilegeEscalation: false")
    return p


def load_dir(d, files):
    docs = []
    for name in files:
        with open(os.path.join(d, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    docs.append((name, doc))
    return docs


def check_all(k8s_dir, rlaifd, docs=None, gpu_patch=None):
    problems = []
    with open(os.path.join(k8s_dir, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    if docs is None:
        docs = load_dir(k8s_dir, kust["resources"])
    for where, d in docs:
        problems += validate(d, where)
    plain = [d for _, d in docs]
    if problems:
        return problems
    problems += rlaifd_checks(plain, rlaifd)
    # GPU overlay: the patch merged onto the base must validate and ask for a GPU.
    gdir = os.path.join(k8s_dir, "gpu")
    with open(os.path.join(gdir, "kustomization.yaml")) as f:
        gk = yaml.safe_load(f)
    if gk.get("resources") != ["../"]:
        problems.append("gpu/kustomization.yaml must build on ../")
    if gpu_patch is None:
        with open(os.path.join(gdir, gk["patches"][0]["path"])) as f:
            gpu_patch = yaml.safe_load(f)
    base = [d for d in plain if d["kind"] == gpu_patch["kind"] and
            d["metadata"]["name"] == gpu_patch["metadata"]["name"]]
    if not base:
        return problems + ["the GPU patch matches no base object"]
    merged = merge(base[0], gpu_patch)
    problems += validate(merged, "gpu overlay")
    for c in merged["spec"]["template"]["spec"]["containers"]:
        if c["name"] == "rlaifd":
            lim = (c.get("resources") or {}).get("limits") or {}
            if str(lim.get("nvidia.com/gpu", "0")) == "0":
                problems.append("gpu overlay does not request nvidia.com/gpu in limits")
    if not problems:
        others = [d for d in plain if d is not base[0]]
        problems += [f"gpu overlay: {x}" for x in rlaifd_checks(others + [merged], rlaifd)]
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--bin", required=True)
    a = ap.parse_args()
    k8s = os.path.join(a.source, "deploy", "k8s")
    rlaifd = os.path.join(a.bin, "rlaifd")
    failures = []

    r = subprocess.run(["yamllint", "--strict", "-c", os.path.join(a.source, "deploy", ".yamllint"),
                        k8s], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append("yamllint:\n" + r.stdout + r.stderr)
    failures += check_all(k8s, rlaifd)

    # The checker must catch broken variants of the real manifests.
    with open(os.path.join(k8s, "kustomization.yaml")) as f:
        docs = load_dir(k8s, yaml.safe_load(f)["resources"])

    def sts(ds):
        return [d for _, d in ds if d["kind"] == "StatefulSet"][0]

    def container(ds):
        return sts(ds)["spec"]["template"]["spec"]["containers"][0]

    def mutant(fn):
        ds = copy.deepcopy(docs)
        fn(ds)
        return ds

    def typo(ds):
        container(ds)["livenessProbes"] = container(ds).pop("livenessProbe")

    def secret_key(ds):
        [d for _, d in ds if d["kind"] == "Secret"][0]["stringData"].pop("JUDGE_API_KEY")

    mutants = {
        "a misspelt field": typo,
        "a string replica count": lambda ds: sts(ds)["spec"].update(replicas="1"),
        "a container without a name": lambda ds: container(ds).pop("name"),
        "readiness on /livez": lambda ds: container(ds)["readinessProbe"]["httpGet"].update(path="/livez"),
        "a missing secret key": secret_key,
        "key files not mounted": lambda ds: container(ds).update(
            volumeMounts=[m for m in container(ds)["volumeMounts"] if m["name"] != "keys"]),
        "key files only the owner (root) may read": lambda ds: [
            v["secret"].update(defaultMode=0o400) for v in sts(ds)["spec"]["template"]["spec"]
            ["volumes"] if v["name"] == "keys"],
        "2 replicas": lambda ds: sts(ds)["spec"].update(replicas=2),
        "no PVC at data_dir": lambda ds: sts(ds)["spec"].update(volumeClaimTemplates=[]),
        "root": lambda ds: sts(ds)["spec"]["template"]["spec"]["securityContext"].update(runAsUser=0),
    }
    for what, fn in mutants.items():
        if not check_all(k8s, rlaifd, docs=mutant(fn)):
            failures.append(f"self-test: the checker accepted manifests with {what}")
    with open(os.path.join(k8s, "gpu", "statefulset-gpu.yaml")) as f:
        patch = yaml.safe_load(f)
    for c in patch["spec"]["template"]["spec"]["containers"]:
        c["resources"]["limits"].pop("nvidia.com/gpu")
    if not check_all(k8s, rlaifd, gpu_patch=patch):
        failures.append("self-test: the checker accepted a GPU overlay without a GPU limit")

    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"k8s manifests: {len(docs)} objects checked, {len(mutants) + 1} broken variants caught")
    print("0 passed, 1 failed" if failures else "1 passed, 0 failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
