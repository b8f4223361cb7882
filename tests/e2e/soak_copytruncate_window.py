"""Measures copytruncate's loss window (run by `make soak-ingest`; not a ctest
test: what it measures is logrotate's, and it takes a while).

A writer keeps one O_APPEND descriptor open (like a program that cannot reopen
its log) and appends numbered lines at a steady rate, one write() per line,
while the real `logrotate` rotates the file in `copytruncate` mode ROTATIONS
times and rlaifd (rate 1.0, dedupe off) tails it. Afterwards every id is
looked up in the export: an id written while no logrotate ran must be there
exactly once (else this fails: that would be rlaifd's loss), and the ids
missing are attributed to the logrotate run during which they were written.
Prints one JSON line: lines written, lost, lost per rotation (mean, max),
the loss window per rotation in ms (lost lines / achieved write rate), and
how long logrotate ran.

Env: RLAIF_CT_ROTATIONS (default 30), RLAIF_CT_RATE lines/s (default 2000),
RLAIF_CT_MODE (default copytruncate; `create`: logrotate renames the file and
creates a new one, the writer reopens its log when the name points at a new
inode, as a program told by a postrotate signal does — then nothing may be
lost at all).
"""
import json
import os
import shutil
import subprocess
import threading
import time

from rlaif_e2e import check, export, http, run_main, start_rlaifd, start_sim, wait_for

ROTATIONS = int(os.environ.get("RLAIF_CT_ROTATIONS", "30"))
RATE = float(os.environ.get("RLAIF_CT_RATE", "2000"))
MODE = os.environ.get("RLAIF_CT_MODE", "copytruncate")


def main(args, tmp):
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    check(os.path.exists(logrotate), "logrotate is not installed (scripts/deps.sh installs it)")
    sim, sim_port = start_sim(args.bin, os.path.join(args.source, "data", "hh-harmless-dev.jsonl"),
                              tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    log = os.path.join(logs, "app.jsonl")
    open(log, "w").close()
    cfg = {
        "data_dir": os.path.join(tmp, "state"),
        "poll_interval_s": 0.1,
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": log, "format": "simple"}],
        "sampling": {"rate": 1.0, "dedupe": False, "redact": False},
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "concurrency": 1},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": 1, "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"min_new_labels": 1000000},
    }
    cfg_path = os.path.join(tmp, "config.json")
    json.dump(cfg, open(cfg_path, "w"))
    conf = os.path.join(tmp, "logrotate.conf")
    with open(conf, "w") as f:
        f.write(f'"{log}" {{\n  rotate 1000\n  {"create" if MODE == "create" else "copytruncate"}\n'
                '  missingok\n  nocompress\n}\n')

    d, port = start_rlaifd(args.bin, cfg_path, tmp)
    written_at = []  # monotonic time of each id's write
    stop = threading.Event()

    def writer():
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        n = 0
        start = time.monotonic()
        while not stop.is_set():
            if MODE == "create":
                try:
                    if os.stat(log).st_ino != os.fstat(fd).st_ino:
                        os.close(fd)
                        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
                except FileNotFoundError:
                    pass  # between logrotate's rename and its create
            due = int((time.monotonic() - start) * RATE)
            while n < due:
                os.write(fd, (json.dumps({"prompt": f"ct-id {n:08d}"}) + "\n").encode())
                written_at.append(time.monotonic())
                n += 1
            time.sleep(0.001)
        os.close(fd)

    runs = []  # (start, end) of each logrotate run
    wt = threading.Thread(target=writer)
    wt.start()
    try:
        time.sleep(1.0)
        for _ in range(ROTATIONS):
            t0 = time.monotonic()
            subprocess.run([logrotate, "-f", "-s", os.path.join(tmp, "lr.state"), conf],
                           check=True, capture_output=True)
            runs.append((t0, time.monotonic()))
            time.sleep(0.7)
        time.sleep(1.0)
    finally:
        stop.set()
        wt.join()
    total = len(written_at)
    rate = total / max(1e-9, written_at[-1] - written_at[0]) if total > 1 else RATE  # achieved
    base = f"http://127.0.0.1:{port}"
    last = [-1, time.monotonic()]

    def settled():  # the export stopped growing for 3 s (what is lost never arrives)
        code, body = export(base, "prompts", timeout=60)
        check(code == 200, f"export -> {code}")
        rows = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
        if len(rows) != last[0]:
            last[0], last[1] = len(rows), time.monotonic()
            return None
        return rows if time.monotonic() - last[1] > 3 else None

    rows = wait_for(settled, 300, "the export to settle", interval=0.5)
    seen = {}
    for r in rows:
        i = int(r["prompt"].split()[1])
        seen[i] = seen.get(i, 0) + 1
    dups = [i for i, c in seen.items() if c > 1]
    missing = [i for i in range(total) if i not in seen]
    per_run = [0] * len(runs)
    outside = []
    for i in missing:
        t = written_at[i]
        k = next((k for k, (a, b) in enumerate(runs) if a <= t <= b), None)
        if k is None:
            outside.append(i)
        else:
            per_run[k] += 1
    run_ms = sorted((b - a) * 1000 for a, b in runs)
    result = {
        "mode": MODE, "rotations": len(runs), "rate_lines_per_s": round(rate), "lines_written": total,
        "lost": len(missing), "duplicated": len(dups), "lost_outside_logrotate": len(outside),
        "lost_per_rotation_mean": round(len(missing) / max(1, len(runs)), 2),
        "lost_per_rotation_max": max(per_run) if per_run else 0,
        "rotations_with_loss": sum(1 for n in per_run if n),
        "window_ms_mean": round(len(missing) / max(1, len(runs)) / rate * 1000, 3),
        "window_ms_max": round((max(per_run) if per_run else 0) / rate * 1000, 3),
        "logrotate_ms_median": round(run_ms[len(run_ms) // 2], 1) if run_ms else 0,
    }
    print(json.dumps(result))
    check(not dups, f"{len(dups)} ids duplicated, first: {dups[:10]}")
    if MODE == "create":
        check(not missing, f"create mode lost {len(missing)} ids, first: {missing[:10]}")
    check(not outside, f"{len(outside)} ids lost outside any logrotate run: {outside[:10]}")
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    sim.term()


if __name__ == "__main__":
    run_main(main)
