"""Upstream faults (issue 7): generator and judge at 20% mixed faults, then a
full outage (rlaif-sim stopped) for RLAIF_OUTAGE_S seconds (default 12;
`make reliability` runs 60) while log lines keep arriving. During the outage
the breakers open, the stages hold their queues and /v1/status says
`degraded` with the reason; when the sim is back on the same port, the
breakers close and the backlog drains: every prompt labeled, nothing
dead-lettered, nothing lost.
"""
import json
import os
import time

from rlaif_e2e import (Proc, check, check_alive, get_json, http, run_main, start_rlaifd, start_sim,
                       wait_for)

OUTAGE_S = float(os.environ.get("RLAIF_OUTAGE_S", "12"))
FAULTS = ("--fault-rate", "0.2", "--fault-kinds", "429,500,503,malformed,truncated,hang",
          "--hang-ms", "3000", "--latency-ms", "10")


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    sim, sim_port = start_sim(args.bin, pairs, tmp, extra=FAULTS)
    prompts = [json.loads(l)["prompt"]
               for l in open(os.path.join(src, "data", "sample-logs", "app.jsonl"), encoding="utf-8")]
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    log = os.path.join(logs, "app.jsonl")

    def append(lo, hi):
        with open(log, "ab") as f:
            for i in range(lo, hi):
                f.write((json.dumps({"prompt": f"{prompts[i % len(prompts)]} [{i}]"}) + "\n").encode())

    upstream = {"concurrency": 4, "max_retries": 4, "timeout_s": 2,
                "breaker_failures": 5, "breaker_cooldown_s": 2}
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": dict(upstream, base_url=f"http://127.0.0.1:{sim_port}/v1", model="sim-sft"),
        "judge": dict(upstream, base_url=f"http://127.0.0.1:{sim_port}/v1", model="sim-judge",
                      dimensions=[{"name": "harmlessness"}]),
        "trainer": {"min_new_labels": 1000000},
    }
    path = os.path.join(tmp, "config.json")
    json.dump(config, open(path, "w"))
    d, port = start_rlaifd(args.bin, path, tmp)
    base = f"http://127.0.0.1:{port}"

    append(0, 100)
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["labels"] >= 40, 180,
             "labels under 20% faults")

    # Full outage: the sim goes away; lines keep coming.
    sim.p.kill()
    sim.p.wait()
    t_down = time.time()
    append(100, 200)

    def open_roles(s):
        return [r for r in ("generator", "judge") if s["upstream"][r]["breaker"] == "open"]

    def degraded():
        s = get_json(base + "/v1/status")
        return s if s["state"] == "degraded" and open_roles(s) else None
    s = wait_for(degraded, 60, "degraded with an open breaker")
    print(f"degraded after {time.time() - t_down:.1f}s: {s['reasons']}")
    check(any("circuit" in r or "breaker" in r for r in s["reasons"]), f"reasons {s['reasons']}")
    metrics = http("GET", base + "/metrics")[1].decode()
    check('rlaif_upstream_breaker_open{role="generator"} 1' in metrics or
          'rlaif_upstream_breaker_open{role="judge"} 1' in metrics, "breaker gauge not 1")
    # Attempts and calls reconcile (docs/METRICS.md): the open breaker's
    # upstream has failed attempts; calls by result add up to the failures.
    for role in open_roles(s):
        u = s["upstream"][role]
        calls = u["calls"]
        check(0 < u["request_errors"] <= u["requests"], f"{role}: {u}")
        # Separate reads while 4 callers run: equal up to those in between.
        check(abs(calls["error"] + calls["rejected"] + calls["cancelled"] - u["failures"]) <= 4,
              f"{role}: {u}")
        check(f'rlaif_upstream_request_errors_total{{role="{role}"}} ' in metrics, "no request_errors")
    dead_during = 0
    while time.time() - t_down < OUTAGE_S:
        dead_during = get_json(base + "/v1/status")["counts"]["dead"]
        time.sleep(1)
    check(get_json(base + "/livez")["status"] == "alive", "rlaifd died during the outage")

    # Back on the same port, still with faults.
    sim2 = Proc("rlaif-sim-2", [os.path.join(args.bin, "rlaif-sim"), "--listen",
                                f"127.0.0.1:{sim_port}", "--pairs", pairs, "--seed", "8", *FAULTS],
                tmp)
    t_up = time.time()

    def drained():
        check_alive(sim2, "the sim did not come back on its port")
        s = get_json(base + "/v1/status")
        c, q = s["counts"], s["queues"]
        done = c["prompts"] == 200 and c["labels"] + c["dead"] >= 200 and \
            q["generate"]["depth"] == 0 and q["judge"]["depth"] == 0
        return s if done else None
    s = wait_for(drained, 300, "the backlog to drain after the outage", interval=1)
    print(f"drained {time.time() - t_up:.1f}s after the sim came back; counts {s['counts']}, "
          f"breaker opens {s['upstream']['generator']['breaker_opens']}/"
          f"{s['upstream']['judge']['breaker_opens']}")
    check(s["counts"]["dead"] == 0, f"items dead-lettered (during the outage: {dead_during}): {s['counts']}")
    check(s["counts"]["labels"] == 200, f"labels {s['counts']}")
    check(s["state"] == "running", f"state after recovery {s['state']} {s['reasons']}")
    check(s["upstream"]["generator"]["breaker"] == "closed" and
          s["upstream"]["judge"]["breaker"] == "closed", "breakers did not close")
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")


if __name__ == "__main__":
    run_main(main)
