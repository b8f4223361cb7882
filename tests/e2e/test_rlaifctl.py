"""rlaifctl against a real rlaifd (issue 6, operators): tables and --json,
exit codes (0 ok, 1 the daemon said no, 2 usage, 3 unreachable), the token
from RLAIF_TOKEN, promote/rollback/train/pause/resume with --reason recorded
in the audit log under the token's name, and export. Also the on-call drill's
defects: a daemon that accepts but never answers (kill -STOP) ends in the read
timeout (exit 3), not after 300 s; a base URL with a trailing '/' works, one
with a path or no scheme is a usage error; a 401 says whether RLAIF_TOKEN is unset.
"""
import json
import os
import re
import socket
import subprocess
import time

from rlaif_e2e import (check, get_json, run_main, start_rlaifd, start_sim, wait_for)

TOKEN = "ctl-e2e-secret-token"
BOT_TOKEN = "ctl-e2e-bot-token"


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    sample = os.path.join(src, "data", "sample-logs", "app.jsonl")
    lines = open(sample, "rb").read().splitlines(keepends=True)[:80]
    ctl = os.path.join(args.bin, "rlaifctl")

    def run(*argv, token=None, url=None, timeout=120):
        env = {k: v for k, v in os.environ.items() if k not in ("RLAIF_TOKEN", "RLAIF_URL")}
        if token:
            env["RLAIF_TOKEN"] = token
        if url:
            env["RLAIF_URL"] = url
        p = subprocess.run([ctl, *argv], env=env, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    # Usage errors and an unreachable daemon, before anything runs.
    check(run()[0] == 2, "no command must exit 2")
    check(run("promote")[0] == 2, "promote without a version must exit 2")
    check(run("promote", "")[0] == 2, "promote with an empty version must exit 2")
    check(run("pause", "because", "x")[0] == 2, "pause with extra words must exit 2 (use --reason)")
    check(run("status", "extra")[0] == 2, "status with extra words must exit 2")
    check(run("frobnicate")[0] == 2, "unknown command must exit 2")
    rc, _, err = run("--url", "http://127.0.0.1:1", "status")
    check(rc == 3, f"unreachable daemon must exit 3, got {rc}: {err}")
    check("cannot connect" in err and "RLAIF_URL" in err, f"unreachable: unhelpful message {err!r}")
    # An IPv6 address in brackets is an address (refused or unreachable: 3), not a usage error.
    rc, _, err = run("--url", "http://[::1]:1/", "status")
    check(rc == 3, f"http://[::1]:1/ must parse and be unreachable (3), got {rc}: {err}")

    # The URL is the daemon's base address: no path, a scheme (checked before connecting).
    for bad in ("http://127.0.0.1:1/v1", "notaurl", "127.0.0.1:1", "ftp://127.0.0.1:1",
                "http://127.0.0.1:port", "http://:1"):
        rc, _, err = run("--url", bad, "status")
        check(rc == 2 and "invalid URL" in err, f"--url {bad} must exit 2, got {rc}: {err}")
    rc, _, err = run("status", url="http://127.0.0.1:1/v1")
    check(rc == 2 and "no path" in err and "RLAIF_URL" in err,
          f"RLAIF_URL with a path: {rc} {err!r}")

    # A frozen daemon (kill -STOP): the kernel accepts the connection, nothing answers.
    # rlaifctl gives up after status's 30 s read timeout, with exit 3 and a hint.
    frozen = socket.socket()
    try:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(8)
        t0 = time.monotonic()
        rc, _, err = run("--url", f"http://127.0.0.1:{frozen.getsockname()[1]}", "models",
                         timeout=60)
        took = time.monotonic() - t0
    finally:
        frozen.close()
    check(rc == 3 and "accepted the connection but did not answer within 30 s" in err,
          f"frozen daemon: must exit 3 saying it did not answer, got {rc}: {err!r}")
    check(took < 40, f"frozen daemon: rlaifctl took {took:.1f} s (read timeout 30 s)")

    sim, sim_port = start_sim(args.bin, pairs, tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    with open(os.path.join(logs, "app.jsonl"), "wb") as f:
        f.write(b"".join(lines[:70]))
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0", "admin_token_env": "RLAIF_TOKEN",
                "admin_tokens": [{"name": "deploy-bot", "token_env": "RLAIF_TOKEN_BOT"}]},
        "sources": [{"path": os.path.join(logs, "*.jsonl"), "format": "simple"}],
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "concurrency": 8},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": 8, "dimensions": [{"name": "harmlessness"}]},
        # 50 of at most 80 labels: one automatic run only (a second one would
        # race the manual train, promote and rollback below).
        "trainer": {"min_new_labels": 50, "model": {"preset": "tiny"},
                    "gate": {"min_accuracy": 0.0, "max_regression": 1.0}},
        # A retention that deletes nothing here: its pass shows in the disk block.
        "store": {"max_age_days": 36500},
    }
    config_path = os.path.join(tmp, "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    env = dict(os.environ, RLAIF_TOKEN=TOKEN, RLAIF_TOKEN_BOT=BOT_TOKEN)
    d, port = start_rlaifd(args.bin, config_path, tmp, env)
    base = f"http://127.0.0.1:{port}"

    first = wait_for(lambda: get_json(base + "/v1/status")["model"]["live_version"], 300,
                     "a first live model", interval=1)
    # Fresh labels for the rates over the last minute below (the first run may
    # have taken longer than that on a loaded machine).
    labels_before = get_json(base + "/v1/status")["counts"]["labels"]
    with open(os.path.join(logs, "app.jsonl"), "ab") as f:
        f.write(b"".join(lines[70:]))
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["labels"] > labels_before, 120,
             "labels of the appended lines", interval=0.5)

    # status: a readable table by default, JSON with --json; URL from RLAIF_URL.
    rc, out, err = run("status", url=base)
    check(rc == 0, f"status -> {rc}: {err}")
    check("state" in out and first in out, f"status table lacks state/live version:\n{out}")
    check(re.search(r"accuracy \d\.\d{3}  ", out), f"status table: accuracy not to 3 decimals:\n{out}")
    check("done/s" in out and "judge" in out, f"status table lacks stage rates:\n{out}")
    check("serving:  batching on" in out and "BLAS openblas (1 threads)" in out,
          f"status table lacks the serving line (batching, BLAS threads):\n{out}")
    check(re.search(r"upstream: generator +calls ok [1-9]\d*  failed \d+  refused \d+  "
                    r"attempts \d+ \(\d+ failed\)  breaker closed", out) and
          re.search(r"^ +judge +calls ok [1-9]", out, re.M),
          f"status table lacks the upstream lines:\n{out}")
    # The first run, or one after it (more labels may have arrived).
    check(re.search(r"^training: \w+  runs [1-9]\d*  last (v\S+|-) (promoted|rejected|failed|skipped)$",
                    out, re.M), f"status table: training line:\n{out}")
    # Disk: free space, the store's and the models' share, both retentions
    # (store retention off by default, checkpoints kept by keep_models 10).
    check(re.search(r"^disk: +free \d+\.\d [kMGTP]B of \d+\.\d [kMGTP]B \(\d+\.\d%\)  "
                    r"store \d+\.\d [kMG]B  models [1-9]\d*(\.\d)? [kMG]?B  backups \d+(\.\d)? [kMG]?B  "
                    r"\(measured 20\d\d-\S+Z\)$",
                    out, re.M),
          f"status table: disk line:\n{out}")
    check(re.search(r"^ +store retention 36500 days  last pass 20\S+Z \(\d+\.\d s\) deleted prompts 0 pairs 0 "
                    r"labels 0 dead 0  next 20\S+Z$", out, re.M) and
          "checkpoints: keeps 10 besides live" in out,
          f"status table: retention lines:\n{out}")
    # A base URL as copied from a browser, with a trailing '/', from RLAIF_URL or --url.
    rc, out, err = run("status", url=base + "/")
    check(rc == 0 and first in out, f"status with RLAIF_URL {base}/ -> {rc}: {err}")
    rc, out, err = run("--url", base + "/", "status")
    check(rc == 0 and first in out, f"status --url {base}/ -> {rc}: {err}")
    rc, _, err = run("status", url=base + "/v1")
    check(rc == 2 and "no path" in err, f"status with RLAIF_URL {base}/v1 must exit 2: {rc} {err}")
    rc, out, _ = run("--json", "status", url=base)
    st = json.loads(out)
    check(rc == 0 and st["model"]["live_version"] == first, "status --json")
    # Rates over the last minute: labels were made in it, and the sim injects no faults.
    judge_q = st["queues"]["judge"]
    check(isinstance(judge_q["done_per_s"], float) and judge_q["done_per_s"] > 0,
          f"judge rate {judge_q}")
    check(judge_q["error_rate"] == 0, f"judge error rate {judge_q}")
    check(st["rates"]["labels_per_s"] > 0, f"rates {st['rates']}")

    # Admin commands need the token: exit 1 with the daemon's message without it.
    rc, _, err = run("train", url=base)
    check(rc == 1 and "401" in err, f"train without a token must exit 1 (401), got {rc}: {err}")
    check("RLAIF_TOKEN is not set" in err, f"a 401 without RLAIF_TOKEN must say so: {err!r}")
    wrong = "ctl-e2e-wrong-token"
    rc, _, err = run("pause", token=wrong, url=base)
    check(rc == 1 and "401" in err and "refused the token" in err and wrong not in err,
          f"a refused RLAIF_TOKEN must be named (not printed), got {rc}: {err!r}")
    runs_before = get_json(base + "/v1/status")["training"]["runs"]
    rc, _, err = run("--reason", "second model for the e2e test", "train", token=BOT_TOKEN, url=base)
    check(rc == 0, f"train -> {rc}: {err}")
    wait_for(lambda: (lambda t: t["runs"] > runs_before and not t["running"])(
        get_json(base + "/v1/status")["training"]), 300, "the requested run to finish", interval=1)
    check(len(get_json(base + "/v1/models")["models"]) == 2,
          f"two models expected: {get_json(base + '/v1/models')['models']}")
    versions = [m["version"] for m in get_json(base + "/v1/models")["models"]]
    second = [v for v in versions if v != first][0]

    rc, out, err = run("models", url=base)
    check(rc == 0 and first in out and second in out, f"models table:\n{out}{err}")
    # The daemon's default model type, recorded per model.
    check("TYPE" in out and "ensemble" in out, f"models table lacks the model type:\n{out}")

    rc, _, err = run("--reason", "canary ok", "promote", second, token=TOKEN, url=base)
    check(rc == 0, f"promote -> {rc}: {err}")
    check(get_json(base + "/v1/models")["live"] == second, "promote did not make it live")
    rc, _, err = run("promote", "v9999-nope", token=TOKEN, url=base)
    check(rc == 1 and "404" in err, f"promoting an unknown version must exit 1 (404): {rc} {err}")
    rc, _, err = run("--reason", "scores drifted", "rollback", token=BOT_TOKEN, url=base)
    check(rc == 0, f"rollback -> {rc}: {err}")
    check(get_json(base + "/v1/models")["live"] == first, "rollback did not restore the first model")

    rc, _, err = run("--reason", "maintenance", "pause", token=TOKEN, url=base)
    check(rc == 0 and get_json(base + "/v1/status")["state"] == "paused", f"pause: {err}")
    # A pause outlives a restart (it guards a rollback against a retrain).
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    d, port = start_rlaifd(args.bin, config_path, tmp, env)
    base = f"http://127.0.0.1:{port}"
    st = get_json(base + "/v1/status")
    check(st["state"] == "paused" and "paused by admin" in st["reasons"][0] and
          "maintenance" in st["reasons"][0], f"after a restart: {st['state']} {st['reasons']}")
    check(get_json(base + "/v1/models")["live"] == first, "the rollback did not survive a restart")
    # A token read from a file ends in a newline: rlaifctl trims it.
    rc, _, err = run("resume", token=TOKEN + "\n", url=base)
    check(rc == 0 and get_json(base + "/v1/status")["state"] != "paused", f"resume: {err}")

    rc, out, err = run("--reason", "judge fixed", "requeue-dead", "judge", "unparseable_verdict",
                       token=TOKEN, url=base)
    check(rc == 0 and "re-queued 0 judge item(s)" in out, f"requeue-dead: {rc} {out} {err}")
    rc, _, err = run("requeue-dead", "ingest", token=TOKEN, url=base)
    check(rc == 1 and "400" in err, f"requeue-dead ingest must exit 1 (400): {rc} {err}")

    # The audit log names who did what and why.
    events = get_json(base + "/v1/events?limit=100")["events"]

    def has(kind, actor, text):
        return any(e["kind"] == kind and e["actor"] == actor and text in e["message"]
                   for e in events)
    check(has("train_requested", "deploy-bot", "second model for the e2e test"), "train event")
    check(has("promote", "admin", "canary ok"), "promote event")
    check(has("rollback", "deploy-bot", second), "rollback event")
    check(has("pause", "admin", "maintenance"), "pause event")
    check(has("requeue", "admin", "judge fixed"), "requeue event")

    # export: JSONL streamed to stdout, one line per stored prompt; it is
    # stored traffic, so it needs the token.
    rc, out, err = run("export", "prompts", url=base)
    check(rc == 1 and "401" in err and not out, f"export without the token -> {rc}: {err} {out[:200]}")
    rc, out, err = run("export", "prompts", url=base, token=TOKEN)
    check(rc == 0, f"export -> {rc}: {err}")
    exported = [json.loads(l) for l in out.splitlines() if l.strip()]
    prompts = get_json(base + "/v1/status")["counts"]["prompts"]
    check(len(exported) == prompts == 80, f"export has {len(exported)} lines, store {prompts}")
    rc, _, err = run("export", "nonsense", url=base, token=TOKEN)
    check(rc == 1, f"a bad export kind must exit 1: {rc} {err}")

    for secret in (TOKEN, BOT_TOKEN):
        for name in ("rlaifd.out", "rlaifd.err"):
            check(secret not in open(os.path.join(tmp, name), errors="replace").read(),
                  f"a token leaked into the daemon's {name}")
    check(d.term(timeout=30) == 0, "rlaifd exit code on SIGTERM")
    sim.term()


if __name__ == "__main__":
    run_main(main)
