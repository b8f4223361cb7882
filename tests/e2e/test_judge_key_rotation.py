"""Rotating the judge's API key without a restart: the key is in a file
(judge.api_key_file, as a Kubernetes Secret volume or Vault agent writes
it), the judge refuses it (rlaif-sim --api-key wants another one), so the
pairs wait and /v1/status is degraded. The new key is written to the file
(an atomic rename, as kubelet does) and rlaifd is sent SIGHUP: the reload
event names judge.api_key_file as applied and the backlog drains, every
pair labeled, nothing dead-lettered, no restart. Then the file is
rewritten without a signal (as kubelet updates a mounted Secret): rlaifd
reads it within 10 s (a `key_rotated` event), first a revoked key (new
pairs wait), then the right one (they drain). Then the file goes away
and another SIGHUP: the key in use is kept (new prompts are still judged),
a status warning and rlaif_api_key_file_unreadable say so until the file is
back, and no key (nor its path) appears in any log, status or event.
"""
import json
import os
import subprocess
import time

from rlaif_e2e import (E2E_TOKEN, check, get_json, http, run_main, start_rlaifd, start_sim,
                       wait_for, write_prompt_lines)

RIGHT = "sk-rlaif-e2e-rotated-key-0123456789"
WRONG = "sk-rlaif-e2e-revoked-key-9876543210"
N = 20


def write_key(path, key):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(key + "\n")  # as `kubectl create secret --from-file` keeps it
    os.replace(tmp, path)


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    sim, sim_port = start_sim(args.bin, pairs, tmp, extra=("--api-key", RIGHT))
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    write_prompt_lines(src, os.path.join(logs, "app.jsonl"), N)
    keys = os.path.join(tmp, "secrets")
    os.makedirs(keys)
    gen_key, judge_key = os.path.join(keys, "generator"), os.path.join(keys, "judge")
    write_key(gen_key, RIGHT)
    write_key(judge_key, WRONG)

    upstream = {"concurrency": 4, "max_retries": 1, "timeout_s": 5,
                "breaker_failures": 5, "breaker_cooldown_s": 2}
    base_url = f"http://127.0.0.1:{sim_port}/v1"
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": dict(upstream, base_url=base_url, model="sim-sft", api_key_file=gen_key),
        "judge": dict(upstream, base_url=base_url, model="sim-judge", api_key_file=judge_key,
                      dimensions=[{"name": "harmlessness"}]),
        "trainer": {"min_new_labels": 1000000},
    }
    path = os.path.join(tmp, "config.json")
    json.dump(config, open(path, "w"))
    d, port = start_rlaifd(args.bin, path, tmp)
    base = f"http://127.0.0.1:{port}"

    def refused():
        s = get_json(base + "/v1/status")
        held = s["state"] == "degraded" and any("refused the credentials" in r for r in s["reasons"])
        return s if held and s["counts"]["pairs"] >= N else None
    s = wait_for(refused, 120, "degraded, the judge's key refused, every pair generated")
    check(s["counts"]["labels"] == 0 and s["counts"]["dead"] == 0, f"counts {s['counts']}")
    check(any("api_key_file needs no restart" in r for r in s["reasons"]),
          f"the reason must say a key file needs no restart: {s['reasons']}")

    # The rotation: the new key in the file, SIGHUP.
    write_key(judge_key, RIGHT)
    t0 = time.time()
    d.p.send_signal(1)

    def reload_events():
        return [e for e in get_json(base + "/v1/events?limit=50")["events"]
                if e["kind"] == "reload"]
    ev = wait_for(lambda: reload_events() or None, 20, "a reload event")[0]
    # (Or the 10 s check read the file between the write and the signal.)
    by_check = [e for e in get_json(base + "/v1/events?limit=50")["events"]
                if e["kind"] == "key_rotated"]
    check((ev["data"]["applied"] == ["judge.api_key_file"] or
           (ev["data"]["applied"] == [] and by_check)) and ev["data"]["need_restart"] == [],
          f"the rotated key must be applied, nothing else: {ev['data']}")

    def drained():
        s = get_json(base + "/v1/status")
        c = s["counts"]
        return s if c["labels"] >= N and s["queues"]["judge"]["depth"] == 0 else None
    s = wait_for(drained, 120, "the held pairs to drain with the rotated key", interval=1)
    took = time.time() - t0
    print(f"drained {took:.1f} s after the rotation: {s['counts']}, {s['state']}")
    # Held work is retried at once (the breaker closes too), not after its
    # 30 s hold.
    check(took < 20, f"the held pairs waited out their holds: drained after {took:.1f} s")
    check(s["counts"]["dead"] == 0 and s["counts"]["labels"] == N, f"counts {s['counts']}")
    wait_for(lambda: get_json(base + "/v1/status")["state"] == "running", 30, "state running")
    check(d.p.poll() is None, "rlaifd must not have restarted")

    # Rewritten without a signal: read within the 10 s check.
    def rotations():
        return [e for e in get_json(base + "/v1/events?limit=50")["events"]
                if e["kind"] == "key_rotated"]
    app_log = os.path.join(logs, "app.jsonl")
    write_key(judge_key, WRONG)
    n_rot = len(rotations())
    ev = wait_for(lambda: rotations()[0] if len(rotations()) > n_rot else None, 30,
                  "a key_rotated event (revoked key)")
    check(ev["data"] == {"endpoint": "judge"}, f"key_rotated: {ev}")
    with open(app_log, "a") as f:
        for i in range(3):
            f.write(json.dumps({"prompt": f"judged after the second rotation, #{i}"}) + "\n")
    def refused_again():
        s = get_json(base + "/v1/status")
        return s if s["counts"]["pairs"] >= N + 3 and s["state"] == "degraded" else None
    wait_for(refused_again, 120, "the revoked key refused again")
    check(get_json(base + "/v1/status")["counts"]["labels"] == N, "labelled with a revoked key")
    write_key(judge_key, RIGHT)
    wait_for(lambda: len(rotations()) >= n_rot + 2 or None, 30, "a key_rotated event (right key)")
    t0 = time.time()
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["labels"] >= N + 3, 60,
             "the pairs held by the revoked key judged with the right one", interval=1)
    check(time.time() - t0 < 20, f"held pairs waited out their holds: {time.time() - t0:.1f} s")
    check(len(reload_events()) == 1, "rotations by the file must not be reloads")

    # The key file goes away: the key in use is kept, and that is said.
    os.remove(judge_key)
    d.p.send_signal(1)
    wait_for(lambda: len(reload_events()) >= 2 or None, 20, "a second reload event")
    ev = reload_events()[0]
    check(ev["data"].get("key_errors") and "kept" in ev["data"]["key_errors"][0],
          f"an unreadable key file must be said: {ev['data']}")
    s = get_json(base + "/v1/status")
    check(any(w.startswith("judge.api_key_file: cannot open the file") and "kept" in w
              for w in s["warnings"]), f"status warnings: {s['warnings']}")
    # rlaifctl reload says so, and does not call it a success.
    p = subprocess.run([os.path.join(args.bin, "rlaifctl"), "reload"],
                       env=dict(os.environ, RLAIF_URL=base, RLAIF_TOKEN=E2E_TOKEN),
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 1 and "key file: judge.api_key_file: cannot open the file" in p.stdout,
          f"rlaifctl reload with an unreadable key file: rc {p.returncode}: {p.stdout} {p.stderr}")
    metrics = http("GET", base + "/metrics")[1].decode()
    check('rlaif_api_key_file_unreadable{endpoint="judge"} 1' in metrics and
          'rlaif_api_key_file_unreadable{endpoint="generator"} 0' in metrics,
          "rlaif_api_key_file_unreadable")
    with open(app_log, "a") as f:
        for i in range(3):
            f.write(json.dumps({"prompt": f"judged with the kept key, #{i}"}) + "\n")
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["labels"] >= N + 6, 120,
             "new prompts judged with the kept key", interval=1)
    # Back: the 10 s check clears the warning and the gauge.
    write_key(judge_key, RIGHT)
    wait_for(lambda: not any("api_key_file" in w for w in
                             get_json(base + "/v1/status")["warnings"]), 30,
             "the key file warning to clear")
    check('rlaif_api_key_file_unreadable{endpoint="judge"} 0' in
          http("GET", base + "/metrics")[1].decode(), "the gauge back at 0")

    status_text = http("GET", base + "/v1/status")[1].decode()
    events_text = http("GET", base + "/v1/events?limit=200")[1].decode()
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    for name, text in (("stdout", d.stdout_text()), ("stderr", d.stderr_tail(10 ** 7)),
                       ("/v1/status", status_text), ("/v1/events", events_text)):
        for secret in (RIGHT, WRONG, WRONG[-4:] + ".", judge_key, gen_key):
            check(secret not in text, f"{secret!r} appears in rlaifd's {name}")
    sim.term()


if __name__ == "__main__":
    run_main(main)
