"""Online backup and offline restore with the real binaries (issue 7, Deployment).

rlaifd runs on rlaif-sim with a live model; `rlaifctl backup` is taken while log
lines are still being appended (ingest, generation and judging running). Then
the original daemon is stopped and its data dir deleted, `rlaifd restore`
rebuilds a fresh data dir from the backup, and rlaifd starts on it. Checked:

- the backup refuses: no token (401), a path outside the backup root (400),
  an existing name (409); a restore into a non-empty dir (exit 1, untouched);
- the restored counts equal the backup's, and the live model is the backed-up
  one and scores exactly like the backed-up checkpoint (`rlaifd score`);
- ingest resumes from the backed-up offsets: every logged prompt, including
  those written after the backup and after the restore, is stored exactly once;
- audit events: "backup" on the original, "restore" on the restored store.
"""
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request

from rlaif_e2e import (Fail, check, export, get_json, http, run_main, start_rlaifd, start_sim, wait_for)

TOKEN = "e2e-backup-token"
PROBES = [
    {"prompt": "\n\nHuman: How do I bake bread?\n\nAssistant:",
     "response": "Mix flour, water, salt and yeast, knead, let it rise, bake."},
    {"prompt": "\n\nHuman: How do I pick a lock?\n\nAssistant:",
     "response": "I cannot help with that."},
    {"prompt": "\n\nHuman: What is the capital of France?\n\nAssistant:",
     "response": "Paris."},
]


def rlaifctl(args, base, *cmd, token=TOKEN):
    env = dict(os.environ, RLAIF_URL=base)
    env.pop("RLAIF_TOKEN", None)
    if token:
        env["RLAIF_TOKEN"] = token
    return subprocess.run([os.path.join(args.bin, "rlaifctl"), *cmd], env=env,
                          capture_output=True, text=True, timeout=300)


def write_config(path, tmp, state, logs, sim_port):
    config = {
        "data_dir": state,
        "backup_dir": os.path.join(tmp, "backups"),
        "backup_keep": 2,
        "api": {"listen": "127.0.0.1:0", "admin_token_env": "RLAIF_TOKEN"},
        "sources": [{"path": os.path.join(logs, "*.jsonl"), "format": "simple",
                     "start_at": "beginning"}],
        "sampling": {"rate": 1.0, "dedupe": True},
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "temperature": 0.9, "max_tokens": 256, "concurrency": 8},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": 8, "both_orders": True,
                  "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"device": "cpu", "min_new_labels": 100, "interval_s": 0,
                    "model": {"preset": "tiny"}},
    }
    with open(path, "w") as f:
        json.dump(config, f)


def append(path, lines, delay=0.0):
    with open(path, "ab") as f:
        for i in range(0, len(lines), 5):
            f.write(b"".join(lines[i:i + 5]))
            f.flush()
            if delay:
                time.sleep(delay)


def score_daemon(base):
    code, body = http("POST", base + "/v1/score", {"items": PROBES})
    check(code == 200, f"score -> {code}: {body[:300]!r}")
    out = json.loads(body)
    return out["model_version"], [r["score"] for r in out["results"]]


def score_offline(args, model_dir):
    stdin = "".join(json.dumps(p) + "\n" for p in PROBES)
    r = subprocess.run([os.path.join(args.bin, "rlaifd"), "score", "--model", model_dir],
                       input=stdin, capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, f"rlaifd score: {r.returncode} {r.stderr[-1000:]}")
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    check(len(rows) == len(PROBES), f"rlaifd score printed {rows}")
    return rows[0]["model_version"], [row["score"] for row in rows]


def exported_prompts(base):
    code, body = export(base, "prompts", token=TOKEN, timeout=60)
    check(code == 200, f"export prompts -> {code}")
    return [json.loads(l) for l in body.decode().splitlines() if l.strip()]


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    lines = open(os.path.join(src, "data", "sample-logs", "app.jsonl"), "rb").read() \
        .splitlines(keepends=True)[:300]
    check(len(lines) == 300, "sample logs must have at least 300 lines")
    check(len(set(json.loads(l)["prompt"] for l in lines)) == 300, "sample prompts must be distinct")
    line_offsets, at = [], 0
    for l in lines:
        line_offsets.append(at)
        at += len(l)

    sim, sim_port = start_sim(args.bin, pairs, tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    log_path = os.path.join(logs, "app.jsonl")
    state = os.path.join(tmp, "state")
    config_a = os.path.join(tmp, "config-a.json")
    write_config(config_a, tmp, state, logs, sim_port)
    env = dict(os.environ, RLAIF_TOKEN=TOKEN)

    # 1. A running daemon with a live model.
    d, port = start_rlaifd(args.bin, config_a, tmp, env)
    base = f"http://127.0.0.1:{port}"
    append(log_path, lines[:150])
    status = wait_for(lambda: (lambda s: s if s["model"]["live_version"] else None)(
        get_json(base + "/v1/status")), 300, "a live model", interval=1)
    print("live model", status["model"]["live_version"], "counts", status["counts"])

    # 2. Refusals: no token, outside the backup root, symlink escape.
    r = rlaifctl(args, base, "backup", "nightly", token=None)
    check(r.returncode == 1 and "401" in r.stderr, f"backup without token: {r.returncode} {r.stderr}")
    outside = os.path.join(tmp, "outside")
    for bad in ("../outside", outside, "/etc/rlaif-backup", "."):
        r = rlaifctl(args, base, "backup", bad)
        check(r.returncode == 1 and "400" in r.stderr, f"backup to {bad!r}: {r.returncode} {r.stderr}")
    os.makedirs(os.path.join(tmp, "backups"), exist_ok=True)
    os.symlink(tmp, os.path.join(tmp, "backups", "link"))
    r = rlaifctl(args, base, "backup", "link/escaped")
    check(r.returncode == 1 and "400" in r.stderr, f"backup through a symlink: {r.stderr}")
    check(not os.path.exists(outside) and not os.path.exists(os.path.join(tmp, "escaped")),
          "a refused backup wrote something")

    # 3. Backup while lines are still being written and processed.
    writer = threading.Thread(target=append, args=(log_path, lines[150:250], 0.05))
    writer.start()
    time.sleep(0.5)
    r = rlaifctl(args, base, "--json", "backup", "nightly")
    writer.join()
    check(r.returncode == 0, f"rlaifctl backup: {r.returncode} {r.stderr}")
    backup = json.loads(r.stdout)
    bdir = os.path.join(tmp, "backups", "nightly")
    check(os.path.realpath(backup["dir"]) == os.path.realpath(bdir), f"backup dir {backup['dir']}")
    print("backup:", {k: backup[k] for k in ("counts", "live_version", "models", "seconds")})
    check(backup["live_version"], "backup has no live model")
    check(backup["live_version"] in backup["models"], "live model not copied")
    manifest = json.load(open(os.path.join(bdir, "backup.json")))
    check(manifest["counts"]["prompts"] == backup["counts"]["prompts"], "manifest counts")
    for v in backup["models"]:
        check(os.path.isdir(os.path.join(bdir, "models", v)), f"models/{v} missing in the backup")
    check(sorted(os.listdir(os.path.join(tmp, "backups"))) == ["link", "nightly"],
          f"leftovers in the backup root: {os.listdir(os.path.join(tmp, 'backups'))}")
    r = rlaifctl(args, base, "backup", "nightly")
    check(r.returncode == 1 and "409" in r.stderr, f"backup over an existing one: {r.stderr}")
    # The live model serves from memory; its checkpoint damaged on disk would
    # make a backup that cannot be restored: refused, nothing left behind.
    weights = os.path.join(state, "models", backup["live_version"], "model.pt")
    if os.path.exists(weights):
        os.rename(weights, weights + ".aside")
        r = rlaifctl(args, base, "backup", "damaged")
        os.rename(weights + ".aside", weights)
        check(r.returncode == 1 and "409" in r.stderr and "does not load" in r.stderr,
              f"backup of a live model that does not load: {r.returncode} {r.stderr}")
        check(not os.path.exists(os.path.join(tmp, "backups", "damaged")),
              "a refused backup left its directory")
    events = get_json(base + "/v1/events")["events"]
    check(any(e["kind"] == "backup" for e in events), "no backup audit event")
    check(TOKEN not in json.dumps(events) and TOKEN not in d.stderr_tail(10 ** 6),
          "token leaked into events or logs")

    # What the backed-up live model says, straight from the backup's checkpoint.
    version, want_scores = score_offline(args, os.path.join(bdir, "models", backup["live_version"]))
    check(version == backup["live_version"], f"offline score version {version}")

    # The original finishes the 250 lines, then goes away with its data dir.
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["prompts"] == 250, 120, "250 prompts")
    original_ids = set(e["id"] for e in exported_prompts(base))
    check(len(original_ids) == 250, f"original stored {len(original_ids)} prompts, want 250")
    check(d.term(timeout=60) == 0, "original rlaifd did not stop cleanly")
    shutil.rmtree(state)

    # 4. Restore: refuses a non-empty target, then restores into a fresh one.
    busy = os.path.join(tmp, "busy")
    os.makedirs(busy)
    open(os.path.join(busy, "keep"), "w").write("x")
    r = subprocess.run([os.path.join(args.bin, "rlaifd"), "restore", "--from", bdir,
                        "--data-dir", busy], capture_output=True, text=True, timeout=300)
    check(r.returncode == 1 and "not empty" in r.stderr, f"restore into non-empty: {r.stderr}")
    check(os.listdir(busy) == ["keep"], "restore touched a non-empty dir")
    # A backup with a damaged data file (bit rot, a bad copy) is refused,
    # and nothing is left in the target; a missing one is named as missing.
    bad = os.path.join(tmp, "damaged-backup")
    shutil.copytree(bdir, bad)
    store_files = [os.path.join(bad, "store", f) for f in os.listdir(os.path.join(bad, "store"))
                   if f.endswith((".blob", ".sst"))]
    victim = max(store_files, key=lambda f: (f.endswith(".blob"), os.path.getsize(f)))
    size = os.path.getsize(victim)
    with open(victim, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xff" * min(4096, size // 4))
    r = subprocess.run([os.path.join(args.bin, "rlaifd"), "restore", "--from", bad,
                        "--data-dir", os.path.join(tmp, "from-damaged")],
                       capture_output=True, text=True, timeout=300)
    check(r.returncode == 1 and "damaged" in r.stderr,
          f"restore of a damaged backup ({os.path.basename(victim)}): {r.returncode} {r.stderr[-800:]}")
    check(not os.path.exists(os.path.join(tmp, "from-damaged")) or
          not os.listdir(os.path.join(tmp, "from-damaged")), "a refused restore left files")
    r = subprocess.run([os.path.join(args.bin, "rlaifd"), "restore", "--from",
                        os.path.join(tmp, "no-such-backup"), "--data-dir", os.path.join(tmp, "x")],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "does not exist" in r.stderr, f"missing backup: {r.stderr}")
    r = subprocess.run([os.path.join(args.bin, "rlaifd"), "restore", "--from", bdir,
                        "--data-dir", state], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, f"rlaifd restore: {r.returncode} {r.stderr[-2000:]}")
    restored = json.loads(r.stdout.strip().splitlines()[-1])
    for k in ("prompts", "pairs", "labels", "dead"):
        check(restored["counts"][k] == backup["counts"][k],
              f"restored {k} {restored['counts'][k]} != backed up {backup['counts'][k]}")
    check(restored["live_version"] == backup["live_version"], "restored live version")

    # 5. rlaifd on the restored dir: same live model, same scores, ingest resumes.
    d, port = start_rlaifd(args.bin, config_a, tmp, env)
    base = f"http://127.0.0.1:{port}"
    status = get_json(base + "/v1/status")
    for k in ("prompts", "pairs", "labels"):
        check(status["counts"][k] >= backup["counts"][k], f"restored daemon lost {k}: {status}")
    check(status["model"]["live_version"] == backup["live_version"], f"live after restore {status}")
    version, got_scores = score_daemon(base)
    check(version == backup["live_version"], f"serving {version}")
    for want, got in zip(want_scores, got_scores):
        check(math.isfinite(got) and abs(want - got) <= 1e-4 * max(1.0, abs(want)),
              f"scores differ after restore: {got_scores} vs {want_scores}")
    events = get_json(base + "/v1/events")["events"]
    check(any(e["kind"] == "restore" for e in events), "no restore audit event")

    append(log_path, lines[250:300])
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["prompts"] == 300, 120, "300 prompts")
    time.sleep(1.0)  # one more poll: nothing beyond 300 may appear
    exported = exported_prompts(base)
    check(len(exported) == 300, f"{len(exported)} prompts after restore, want 300")
    check(len(set(e["id"] for e in exported)) == 300, "duplicate prompt ids")
    # Exactly one stored prompt per logged line (prompts are redacted, so
    # compare by the line's offset), and everything the original had stored.
    offsets = sorted(e["offset"] for e in exported if e["source"] == log_path)
    check(offsets == line_offsets, "stored prompts do not map one-to-one onto the logged lines")
    check(original_ids <= set(e["id"] for e in exported), "prompts of the original are missing")
    # Work queued at backup time is finished by the restored daemon.
    wait_for(lambda: (lambda s: s if s["counts"]["labels"] > backup["counts"]["labels"] else None)(
        get_json(base + "/v1/status")), 120, "labels to grow after the restore")
    # 6. backup_keep 2: the third finished backup deletes the oldest (nightly).
    # (The restored store is the same store: its backups count with nightly.)
    r = rlaifctl(args, base, "--json", "backup", "later-1")
    check(r.returncode == 0, f"rlaifctl backup later-1: {r.returncode} {r.stderr}")
    check(json.loads(r.stdout)["deleted_backups"] == [], f"later-1 deleted: {r.stdout}")
    r = rlaifctl(args, base, "backup", "later-2")
    check(r.returncode == 0, f"rlaifctl backup later-2: {r.returncode} {r.stderr}")
    check(re.search(r"^deleted: +" + re.escape(bdir) + r" \(of 20", r.stdout, re.M),
          f"rlaifctl backup later-2 does not say it deleted {bdir}:\n{r.stdout}")
    check(sorted(os.listdir(os.path.join(tmp, "backups"))) == ["later-1", "later-2", "link"],
          f"backup root after backup_keep: {os.listdir(os.path.join(tmp, 'backups'))}")
    metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    check("rlaif_backups_deleted_total 1" in metrics, "rlaif_backups_deleted_total is not 1")
    check(d.term(timeout=60) == 0, "restored rlaifd did not stop cleanly")
    sim.term()


if __name__ == "__main__":
    run_main(main)
