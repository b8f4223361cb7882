"""Disk full (issue 7): the data dir on a small filesystem made by the test.

A size-limited tmpfs (or, where tmpfs cannot be mounted, an ext4 image on a
loop device) holds rlaifd's data_dir. After a first batch of log lines is
stored and labelled, a filler file takes every free byte and a second batch
is logged. Then:

  - /v1/status says "degraded" with a reason naming the store, /readyz is 503,
    the process stays up and keeps serving reads (status, export);
  - everything committed before stays readable;
  - once the filler is removed, rlaifd leaves "degraded" by itself, stores the
    second batch, and generation/judging resume;
  - no work item was failed or dead-lettered because of the disk, every logged
    prompt is stored exactly once, and the store reopens after a restart with
    the same contents (nothing committed lost, nothing corrupted).

Needs root (mount). Skips, saying why, when neither mount works here.
Prints a JSON summary line ("disk_full_summary") for docs/RELIABILITY.md.
"""
import errno
import json
import os
import subprocess
import time

from rlaif_e2e import (Skip, check, check_alive, export, get_json, http, run_main, start_rlaifd,
                       start_sim, wait_for, _PROCS)

# Above 64 MiB: should RocksDB itself ever meet the full disk, it clears the
# error only once a memtable's worth (64 MiB) is free again.
FS_MIB = 128


def mount_small_fs(tmp, mnt):
    """Mounts a FS_MIB filesystem at `mnt`; returns (kind, cleanup) or raises Skip."""
    os.makedirs(mnt)
    why = []
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_MIB}m,mode=0700", "tmpfs", mnt],
                       capture_output=True, text=True)
    if p.returncode == 0:
        return "tmpfs", lambda: subprocess.run(["umount", "-l", mnt], capture_output=True)
    why.append(f"mount -t tmpfs: {p.stderr.strip() or p.returncode}")
    img = os.path.join(tmp, "fs.img")
    with open(img, "wb") as f:
        f.truncate(FS_MIB << 20)
    p = subprocess.run(["mkfs.ext4", "-q", "-F", img], capture_output=True, text=True)
    if p.returncode == 0:
        p = subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True, text=True)
        if p.returncode == 0:
            return "ext4 on a loop device", lambda: subprocess.run(["umount", "-l", mnt],
                                                                   capture_output=True)
    why.append(f"loop device: {p.stderr.strip() or p.returncode}")
    raise Skip("cannot make a small filesystem here (" + "; ".join(why) + ")")


def fill(path):
    """Writes `path` until the filesystem is full; returns the bytes written."""
    n = 0
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[:len(chunk) // 16] or b"\0"
    return n


def main(args, tmp):
    src = args.source
    mnt = os.path.join(tmp, "small-fs")
    kind, unmount = mount_small_fs(tmp, mnt)
    try:
        run(args, tmp, mnt, kind)
    finally:
        for proc in _PROCS:  # the mount stays busy while they live
            if proc.alive():
                proc.p.kill()
                proc.p.wait(timeout=30)
        unmount()


def run(args, tmp, mnt, kind):
    src = args.source
    lines = [l for l in open(os.path.join(src, "data", "sample-logs", "app.jsonl"), "rb")
             .read().splitlines(keepends=True) if l.strip()]
    prompts = [json.loads(l)["prompt"] for l in lines]
    check(len(set(prompts[:300])) == 300, "sample logs need 300 distinct prompts")
    batch_a, batch_b = lines[:100], lines[100:300]

    sim, sim_port = start_sim(args.bin, os.path.join(src, "data", "hh-harmless-dev.jsonl"), tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    log_path = os.path.join(logs, "app.jsonl")
    config = {
        "data_dir": os.path.join(mnt, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl"), "format": "simple"}],
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "concurrency": 4},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": 4, "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"min_new_labels": 1000000, "interval_s": 0},
    }
    config_path = os.path.join(tmp, "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    d, port = start_rlaifd(args.bin, config_path, tmp)
    base = f"http://127.0.0.1:{port}"

    def status():
        return get_json(base + "/v1/status")

    with open(log_path, "ab") as f:
        f.write(b"".join(batch_a))
    wait_for(lambda: status()["counts"]["prompts"] == 100, 60, "batch A stored")
    wait_for(lambda: status()["counts"]["labels"] >= 20, 120, "some labels before the disk fills")
    before = status()["counts"]
    print(f"before: {before}")

    # Disk full: a filler takes every free byte, then more lines arrive.
    filler = os.path.join(mnt, "filler")
    filled = fill(filler)
    print(f"{kind} of {FS_MIB} MiB filled with {filled / 2**20:.1f} MiB")
    t_full = time.time()
    with open(log_path, "ab") as f:
        f.write(b"".join(batch_b))

    def degraded():
        s = status()
        return s if s["state"] == "degraded" and any("store" in r for r in s["reasons"]) else None
    s = wait_for(degraded, 60, "state degraded because of the store")
    t_degraded = time.time() - t_full
    print(f"degraded after {t_degraded:.1f} s: {s['reasons']}")
    code, body = http("GET", base + "/readyz")
    check(code == 503 and json.loads(body)["error"]["type"] == "degraded",
          f"/readyz while the disk is full -> {code} {body[:200]!r}")
    # Degraded stays degraded (no flapping) while the disk is full, reads keep working.
    for _ in range(6):
        time.sleep(1)
        check_alive(d, "rlaifd died with the disk full")
        s = status()
        check(s["state"] == "degraded", f"state went to {s['state']} with the disk still full")
    during = s["counts"]
    check(during["prompts"] >= 100 and during["labels"] >= before["labels"],
          f"committed data went missing while degraded: {during} vs {before}")
    code, body = export(base, "prompts")
    check(code == 200, f"export while degraded -> {code}")
    exported = {json.loads(l)["prompt"] for l in body.decode().splitlines() if l.strip()}
    check(set(prompts[:100]) <= exported, "batch A is not fully readable while degraded")

    # Space returns: rlaifd resumes by itself.
    os.remove(filler)
    t_free = time.time()
    wait_for(lambda: status()["state"] == "running", 90, "state back to running")
    t_resume = time.time() - t_free
    wait_for(lambda: status()["counts"]["prompts"] == 300, 90, "batch B stored after recovery")
    after = status()["counts"]
    wait_for(lambda: status()["counts"]["labels"] > max(after["labels"], during["labels"]), 120,
             "labels growing again after recovery")
    print(f"resumed {t_resume:.1f} s after space returned; counts {status()['counts']}")

    metrics = http("GET", base + "/metrics")[1].decode()
    check("rlaif_store_write_errors_total" in metrics, "no store write error was counted")
    write_errors = [float(l.split()[-1]) for l in metrics.splitlines()
                    if l.startswith("rlaif_store_write_errors_total")]
    # Exported at 0 from the start; it must still be 0.
    store_errors = [float(l.split()[-1]) for l in metrics.splitlines()
                    if l.startswith("rlaif_stage_errors_total{") and 'reason="store_error"' in l]
    check(store_errors and not any(store_errors),
          f"work items failed with store_error (the disk's state was charged to items): "
          f"{store_errors}")
    check(status()["counts"]["dead"] == 0, f"dead letters after disk full: {status()['counts']}")

    def export_ids():
        code, body = export(base, "prompts")
        check(code == 200, f"export -> {code}")
        rows = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
        return rows
    rows = export_ids()
    check(len(rows) == 300 and len({r["id"] for r in rows}) == 300,
          f"{len(rows)} prompts exported, want 300 distinct")
    # Every logged line is stored once: by its file offset (texts may be redacted).
    starts, pos = [], 0
    for l in batch_a + batch_b:
        starts.append(pos)
        pos += len(l)
    got = sorted(r["offset"] for r in rows)
    check(got == starts, f"stored line offsets differ from the logged lines: missing "
          f"{sorted(set(starts) - set(got))[:5]}, unexpected {sorted(set(got) - set(starts))[:5]}")
    pairs_before_restart = status()["counts"]

    # The store reopens with everything in it.
    check(d.term() == 0, "rlaifd did not exit cleanly on SIGTERM")
    d, port = start_rlaifd(args.bin, config_path, tmp)
    base = f"http://127.0.0.1:{port}"
    c = status()["counts"]
    check(c["prompts"] == 300 and c["pairs"] >= pairs_before_restart["pairs"] and
          c["labels"] >= pairs_before_restart["labels"],
          f"after restart {c} vs before {pairs_before_restart}")
    rows2 = export_ids()
    check(sorted(r["id"] for r in rows2) == sorted(r["id"] for r in rows),
          "prompt ids changed across the restart")
    print("disk_full_summary " + json.dumps({
        "filesystem": f"{kind}, {FS_MIB} MiB", "filler_mib": round(filled / 2**20, 1),
        "lines_before": 100, "lines_while_full": 200, "prompts_stored": 300,
        "degraded_after_s": round(t_degraded, 1), "resumed_after_s": round(t_resume, 1),
        "store_write_errors": sum(write_errors), "lost": 300 - c["prompts"], "dead_letters": 0}))


if __name__ == "__main__":
    run_main(main)
