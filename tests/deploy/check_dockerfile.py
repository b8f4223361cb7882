"""Structural check of deploy/docker/Dockerfile and Dockerfile.cuda.

No image is built here: this machine has the docker client but no daemon, and
reaches no container registry, so `docker build` cannot run (docs/OPERATIONS.md
says so). Instead this parses the Dockerfiles and checks what the issue asks:

- a multi-stage build (named stages, COPY --from names an earlier stage),
  Debian bookworm bases for the CPU image, NVIDIA CUDA bases for the GPU one;
- the runtime stage: no compilers or -dev packages, a non-root numeric USER
  before the ENTRYPOINT, a VOLUME at the config's data_dir, EXPOSE of the
  config's port, a HEALTHCHECK that GETs /readyz on that port, the entry point
  `rlaifd run --config /etc/rlaifd/config.json`, and that config copied there;
- every file COPY takes from the build context exists and is not excluded
  by .dockerignore;
- the bundled config passes `rlaifd check-config`;
- the CPU runtime stage installs the Debian package of every shared library
  that the built rlaifd and rlaifctl link directly (readelf NEEDED -> ldd path
  -> dpkg -S), so the image would start;
- and the checker itself catches broken variants (no USER, root USER, no
  HEALTHCHECK, a single stage, a missing runtime library package).

  check_dockerfile.py --source DIR --bin BUILD/bin
"""
import argparse
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys

KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
         "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}
# Always present in a Debian/Ubuntu base image.
ESSENTIAL = {"libc6", "libstdc++6", "libgcc-s1"}
# Provided by the operator for the CUDA build (see Dockerfile.cuda), not in git.
OPERATOR_PROVIDED = {"deploy/docker/libtorch"}


def instructions(text):
    """[(lineno, KEYWORD, args)] with continuations joined and comments dropped."""
    out, buf, start = [], "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # comment lines inside a continuation are dropped by docker
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    if buf:
        out.append((start, "<unterminated>", buf))
    return out


def exec_form(args):
    try:
        v = json.loads(args)
    except ValueError:
        return None
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


def apt_packages(run_args):
    pkgs = []
    for m in re.finditer(r"apt-get install ([^&;|]*)", run_args):
        pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


def parse(text):
    """Returns (problems, stages, args); a stage is a dict."""
    problems, stages, args = [], [], {}
    for n, word, rest in instructions(text):
        if word not in KNOWN:
            problems.append(f"line {n}: unknown instruction {word}")
            continue
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        if word == "FROM":
            m = re.match(r"(\S+)\s+AS\s+(\S+)$", rest, re.I)
            if not m:
                problems.append(f"line {n}: FROM without a stage name (FROM image AS name)")
                image, name = rest.split()[0], f"#{len(stages)}"
            else:
                image, name = m.group(1), m.group(2)
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda v: args.get(v.group(1) or v.group(2), ""),
                           image)
            stages.append({"name": name, "image": image, "line": n, "ins": []})
            continue
        if not stages:
            problems.append(f"line {n}: {word} before the first FROM")
            continue
        stages[-1]["ins"].append((n, word, rest))
    return problems, stages, args


def check(text, source, config_path, cuda, needed_packages=None):
    problems, stages, _ = parse(text)
    if len(stages) < 2:
        return problems + [f"not a multi-stage build ({len(stages)} stage)"]
    names = [s["name"] for s in stages]
    for s in stages:
        if cuda:
            if not s["image"].startswith("nvidia/cuda:"):
                problems.append(f"stage {s['name']}: base {s['image']!r} is not an nvidia/cuda image")
        elif not re.match(r"(docker\.io/)?(library/)?debian:bookworm(-slim)?(@sha256:[0-9a-f]+)?$",
                          s["image"]):
            problems.append(f"stage {s['name']}: base {s['image']!r} is not Debian bookworm")
    with open(os.path.join(source, ".dockerignore")) as f:
        ignored = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    for must in (".git", "build"):
        if must not in ignored:
            problems.append(f".dockerignore does not exclude {must}")
    for i, s in enumerate(stages):
        for n, word, rest in s["ins"]:
            if word not in ("COPY", "ADD"):
                continue
            parts = shlex.split(rest)
            flags = [p for p in parts if p.startswith("--")]
            paths = [p for p in parts if not p.startswith("--")]
            src = [f for f in flags if f.startswith("--from=")]
            if src:
                if src[0][7:] not in names[:i]:
                    problems.append(f"line {n}: COPY --from={src[0][7:]} names no earlier stage")
                continue
            for p in paths[:-1]:
                p = p.rstrip("/") or "."
                if p == ".":
                    continue
                if p in OPERATOR_PROVIDED:
                    continue
                if not os.path.exists(os.path.join(source, p)):
                    problems.append(f"line {n}: COPY source {p} does not exist in the repository")
                if any(fnmatch.fnmatch(p, g) for g in ignored):
                    problems.append(f"line {n}: COPY source {p} is excluded by .dockerignore")

    final = stages[-1]
    ins = final["ins"]
    words = [w for _, w, _ in ins]
    with open(config_path) as f:
        config = json.load(f)
    data_dir = config["data_dir"]
    port = config["api"]["listen"].rsplit(":", 1)[1]
    if not config["api"]["listen"].startswith("0.0.0.0:"):
        problems.append("the image's config must listen on 0.0.0.0 (else -p cannot reach it)")

    runs = " ".join(r for _, w, r in ins if w == "RUN")
    for pkg in apt_packages(runs):
        if pkg.endswith("-dev") or pkg in ("build-essential", "cmake", "ninja-build", "g++", "gcc"):
            problems.append(f"runtime stage installs build tool/-dev package {pkg}")
    if needed_packages is not None:
        have = set(apt_packages(runs)) | ESSENTIAL
        for pkg, libs in sorted(needed_packages.items()):
            if pkg not in have:
                problems.append(f"runtime stage does not install {pkg} (provides {', '.join(libs)})")

    users = [(n, r) for n, w, r in ins if w == "USER"]
    if not users:
        problems.append("runtime stage has no USER: the daemon would run as root")
    else:
        n, user = users[-1]
        uid = user.split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            problems.append(f"line {n}: USER {user} must be a numeric non-root uid (Kubernetes "
                            "runAsNonRoot can only verify numeric ones)")
        ep = [i for i, w in enumerate(words) if w == "ENTRYPOINT"]
        if ep and words.index("USER") > ep[-1]:
            problems.append("USER comes after ENTRYPOINT")
    volumes = [v for _, w, r in ins if w == "VOLUME" for v in (exec_form(r) or r.split())]
    if data_dir not in volumes:
        problems.append(f"no VOLUME at the config's data_dir {data_dir} (got {volumes})")
    exposed = [r.split("/")[0] for _, w, r in ins if w == "EXPOSE" for r in r.split()]
    if port not in exposed:
        problems.append(f"EXPOSE does not include the config's port {port} (got {exposed})")
    hcs = [r for _, w, r in ins if w == "HEALTHCHECK"]
    if not hcs:
        problems.append("runtime stage has no HEALTHCHECK")
    else:
        hc = hcs[-1]
        cmd = exec_form(hc.split("CMD", 1)[1].strip()) if "CMD" in hc else None
        if not cmd:
            problems.append("HEALTHCHECK must use CMD in exec form")
        elif f"http://127.0.0.1:{port}/readyz" not in cmd:
            problems.append(f"HEALTHCHECK does not GET http://127.0.0.1:{port}/readyz: {cmd}")
        elif cmd[0] == "curl" and "-f" not in "".join(a for a in cmd if a.startswith("-")):
            problems.append("HEALTHCHECK curl without -f passes on a 503")
        elif cmd[0] == "curl" and "curl" not in apt_packages(runs):
            problems.append("HEALTHCHECK uses curl but the runtime stage does not install it")
    entry = [exec_form(r) for _, w, r in ins if w == "ENTRYPOINT"]
    cmd = [exec_form(r) for _, w, r in ins if w == "CMD"]
    if not entry or entry[-1] != ["/usr/bin/rlaifd"]:
        problems.append(f"ENTRYPOINT must be [\"/usr/bin/rlaifd\"] (exec form), got {entry}")
    if not cmd or cmd[-1] != ["run", "--config", "/etc/rlaifd/config.json"]:
        problems.append(f"CMD must be [\"run\", \"--config\", \"/etc/rlaifd/config.json\"], got {cmd}")
    copies = [r for _, w, r in ins if w == "COPY"]
    if not any(c.split()[-1] == "/etc/rlaifd/config.json" for c in copies):
        problems.append("the runtime stage does not COPY a config to /etc/rlaifd/config.json")
    if not any("--from=" in c and "rlaifd" in c for c in copies):
        problems.append("the runtime stage does not COPY rlaifd from the build stage")
    return problems


def needed_packages(bin_dir):
    """{debian package: [libs]} for the libraries rlaifd and rlaifctl link directly."""
    out = {}
    for exe in ("rlaifd", "rlaifctl"):
        path = os.path.join(bin_dir, exe)
        dyn = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True)
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dyn.stdout)
        ldd = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
        where = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
        for lib in needed:
            if lib not in where:
                raise SystemExit(f"ldd cannot resolve {lib} of {exe}")
            real = os.path.realpath(where[lib])
            owner = None
            for candidate in (where[lib], real, real.replace("/usr/lib/", "/lib/", 1),
                              where[lib].replace("/lib/", "/usr/lib/", 1)):
                r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
                if r.returncode == 0:
                    owner = r.stdout.split(":")[0]
                    break
            if owner is None:
                raise SystemExit(f"no Debian package owns {where[lib]} ({lib} of {exe})")
            out.setdefault(owner, []).append(lib)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--bin", required=True)
    a = ap.parse_args()
    docker_dir = os.path.join(a.source, "deploy", "docker")
    config = os.path.join(docker_dir, "config.json")
    failures = []

    r = subprocess.run([os.path.join(a.bin, "rlaifd"), "check-config", config],
                       capture_output=True, text=True)
    if r.returncode != 0:
        failures.append(f"deploy/docker/config.json: {r.stderr.strip()}")

    libs = needed_packages(a.bin)
    print("runtime packages needed by rlaifd/rlaifctl:", ", ".join(sorted(libs)))
    cpu = open(os.path.join(docker_dir, "Dockerfile")).read()
    cuda = open(os.path.join(docker_dir, "Dockerfile.cuda")).read()
    for name, text, is_cuda, pk in (("Dockerfile", cpu, False, libs),
                                    ("Dockerfile.cuda", cuda, True, None)):
        for p in check(text, a.source, config, is_cuda, pk):
            failures.append(f"{name}: {p}")

    # The checker must catch broken variants of the real file.
    mutants = {
        "no USER": re.sub(r"^USER .*$", "", cpu, flags=re.M),
        "root USER": re.sub(r"^USER .*$", "USER root", cpu, flags=re.M),
        "no HEALTHCHECK": re.sub(r"^HEALTHCHECK[^\n]*\\\n[^\n]*\n", "", cpu, flags=re.M),
        "healthcheck on /livez": cpu.replace("/readyz", "/livez"),
        "single stage": cpu[cpu.index("FROM ${DEBIAN_IMAGE} AS runtime"):].replace(
            "COPY --from=build", "COPY"),
        "ubuntu base": cpu.replace("ARG DEBIAN_IMAGE=debian:bookworm-slim",
                                   "ARG DEBIAN_IMAGE=ubuntu:24.04"),
        "no volume": re.sub(r"^VOLUME .*$", "", cpu, flags=re.M),
        "missing library package": cpu.replace(" librocksdb7.8 ", " "),
        "dev package at runtime": cpu.replace("libssl3 ca-certificates", "libssl-dev ca-certificates"),
    }
    for what, text in mutants.items():
        if text == cpu:
            failures.append(f"self-test: mutant '{what}' did not change the Dockerfile")
        elif not check(text, a.source, config, False, libs):
            failures.append(f"self-test: the checker accepted a Dockerfile with {what}")

    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print("0 passed, 1 failed" if failures else "1 passed, 0 failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
