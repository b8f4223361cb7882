"""Store retention (store.max_age_days) with the real binaries.

rlaif-sim + rlaifd without a retention take 120 logged prompts through
generation and judging; rlaifd stops; a few seconds later it starts again
with a retention of 2 seconds. Checked:
- the first pass (right after the start) deletes every old prompt, pair and
  label, counts them (rlaif_store_purged_total) and records a `purge` event;
- /v1/status `disk.store_retention.last_pass` says so, and the disk sample
  is taken again after the pass (the space itself: StorePurgeSpaceTest;
  these few records live in the WAL);
- `rlaifctl status` shows the pass in its disk block;
- a human label for a purged pair is refused (404), not stored as an orphan;
- lines logged after the restart are processed as usual.
"""
import json
import os
import re
import subprocess
import time

from rlaif_e2e import (E2E_TOKEN, check, get_json, http, run_main, start_rlaifd, start_sim,
                       wait_for, write_prompt_lines)


def metric(base, name, labels):
    _, body = http("GET", base + "/metrics")
    for line in body.decode().splitlines():
        if not line.startswith(name + ("{" if labels else " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def main(args, tmp):
    sim, sim_port = start_sim(args.bin, os.path.join(args.source, "data", "hh-harmless-dev.jsonl"),
                              tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    write_prompt_lines(args.source, os.path.join(logs, "a.jsonl"), 120)
    state = os.path.join(tmp, "state")

    def write_config(max_age_days):
        config = {
            "data_dir": state,
            "api": {"listen": "127.0.0.1:0"},
            "sources": [{"path": os.path.join(logs, "*.jsonl"), "format": "simple",
                         "start_at": "beginning"}],
            "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                          "concurrency": 8},
            "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                      "concurrency": 8, "dimensions": [{"name": "harmlessness"}]},
            "trainer": {"min_new_labels": 100000, "model": {"preset": "tiny"}},
            "store": {"max_age_days": max_age_days},
        }
        path = os.path.join(tmp, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        return path

    # 1. Without a retention: every prompt generated and judged.
    d, port = start_rlaifd(args.bin, write_config(0), tmp)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["labels"] == 120, 240,
             "120 labels", interval=0.5)
    status = get_json(base + "/v1/status")
    check(status["disk"]["store_retention"]["max_age_days"] is None,
          f"retention off: {status['disk']}")
    code, body = http("GET", base + "/v1/export?kind=pairs",
                      headers={"Authorization": f"Bearer {E2E_TOKEN}"})
    check(code == 200, f"export pairs -> {code}")
    old_pair = json.loads(body.decode().splitlines()[0])["id"]
    check(d.term(timeout=60) == 0, "rlaifd did not stop cleanly")

    # 2. Two seconds of age, and older records: the pass right after the start.
    time.sleep(3)
    d, port = start_rlaifd(args.bin, write_config(2 / 86400), tmp)
    base = f"http://127.0.0.1:{port}"
    last = wait_for(lambda: get_json(base + "/v1/status")["disk"]["store_retention"]["last_pass"],
                    120, "the first retention pass", interval=0.2)
    check(last["deleted"] == {"prompts": 120, "pairs": 120, "labels": 120, "dead": 0},
          f"deleted: {last}")
    check(last["error"] is None and not last["cancelled"], f"pass: {last}")
    counts = get_json(base + "/v1/status")["counts"]
    check(counts["prompts"] == 0 and counts["pairs"] == 0 and counts["labels"] == 0,
          f"counts after the pass: {counts}")
    for kind in ("prompts", "pairs", "labels"):
        n = metric(base, "rlaif_store_purged_total", {"kind": kind})
        check(n == 120, f"rlaif_store_purged_total{{kind={kind}}} = {n}")
    failing = metric(base, "rlaif_store_retention_failing", {})
    check(failing == 0, f"rlaif_store_retention_failing = {failing}")
    events = get_json(base + "/v1/events")["events"]
    purge = [e for e in events if e["kind"] == "purge"]
    check(purge and purge[0]["data"]["prompts"] == 120, f"purge event: {purge[:1]}")
    disk = get_json(base + "/v1/status")["disk"]
    check(disk["sampled_at"] >= last["at"], f"disk sample {disk['sampled_at']} before the pass "
          f"{last['at']}")
    env = dict(os.environ, RLAIF_URL=base)
    out = subprocess.run([os.path.join(args.bin, "rlaifctl"), "status"], env=env,
                         capture_output=True, text=True, timeout=60).stdout
    check(re.search(r"store retention 2\.3\d*e-05 days  last pass \S+ \(\d+\.\d s\) deleted prompts 120 "
                    r"pairs 120 labels 120 dead 0  next \S+", out),
          f"rlaifctl status disk block:\n{out}")

    # 3. A human label for a purged pair: refused, not an orphan.
    code, body = http("POST", base + "/v1/labels",
                      {"pair_id": old_pair, "dimension": "harmlessness", "winner": "a"},
                      headers={"Authorization": f"Bearer {E2E_TOKEN}"})
    check(code == 404 and b"not_found" in body, f"label for a purged pair -> {code} {body!r}")

    # 4. New lines go through as usual (and are young: kept).
    with open(os.path.join(logs, "a.jsonl"), "ab") as f:
        f.write(b'{"prompt": "a prompt logged after the purge, about tides"}\n')
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["labels"] == 1, 120,
             "the new line's label", interval=0.5)
    check(d.term(timeout=60) == 0, "rlaifd did not stop cleanly")
    sim.term()


if __name__ == "__main__":
    run_main(main)
