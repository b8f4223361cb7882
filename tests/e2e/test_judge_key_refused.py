"""A judge that refuses the API key (an on-call finding, session 11): the
judge answers 401 to every call (rlaif-sim --api-key, with the daemon given
the wrong key). Before, every generated pair was dead-lettered on its first
attempt while /v1/status said `running`. Now the pairs wait in the judge
queue, nothing is dead-lettered, /v1/status says `degraded` and why (the
credentials were refused, fix and restart), the key appears in no log or
status; restarted with the right key, the backlog drains, every pair
labeled.
"""
import json
import os

from rlaif_e2e import (check, get_json, http, run_main, start_rlaifd, start_sim, wait_for,
                       write_prompt_lines)

RIGHT = "sk-rlaif-e2e-right-key-0123456789"
WRONG = "sk-rlaif-e2e-wrong-key-9876543210"
N = 30


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    sim, sim_port = start_sim(args.bin, pairs, tmp, extra=("--api-key", RIGHT))
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    write_prompt_lines(src, os.path.join(logs, "app.jsonl"), N)

    upstream = {"concurrency": 4, "max_retries": 2, "timeout_s": 5,
                "breaker_failures": 5, "breaker_cooldown_s": 2}
    base_url = f"http://127.0.0.1:{sim_port}/v1"
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": dict(upstream, base_url=base_url, model="sim-sft", api_key_env="GEN_KEY"),
        "judge": dict(upstream, base_url=base_url, model="sim-judge", api_key_env="JUDGE_KEY",
                      dimensions=[{"name": "harmlessness"}]),
        "trainer": {"min_new_labels": 1000000},
    }
    path = os.path.join(tmp, "config.json")
    json.dump(config, open(path, "w"))
    env = dict(os.environ, GEN_KEY=RIGHT, JUDGE_KEY=WRONG)
    d, port = start_rlaifd(args.bin, path, tmp, env=env)
    base = f"http://127.0.0.1:{port}"

    # Every prompt becomes a pair; no pair gets a label or a dead letter.
    def refused():
        s = get_json(base + "/v1/status")
        held = s["state"] == "degraded" and any("refused the credentials" in r for r in s["reasons"])
        return s if held and s["counts"]["pairs"] >= N else None
    s = wait_for(refused, 120, "degraded, the judge's credentials refused, every pair generated")
    print(f"degraded: {s['reasons']}")
    check(s["counts"]["dead"] == 0, f"pairs dead-lettered: {s['counts']}")
    check(s["counts"]["labels"] == 0, f"labels with a refused key: {s['counts']}")
    check(s["queues"]["judge"]["depth"] >= N, f"the judge queue must hold the pairs: {s['queues']}")
    check(s["upstream"]["judge"]["last_error"], "upstream.judge.last_error is empty")
    metrics = http("GET", base + "/metrics")[1].decode()
    check('rlaif_upstream_configuration_fault{role="judge"} 1' in metrics and
          'rlaif_upstream_configuration_fault{role="generator"} 0' in metrics,
          "rlaif_upstream_configuration_fault gauges")
    sim_stats = json.loads(http("GET", f"http://127.0.0.1:{sim_port}/sim/stats")[1])
    check(sim_stats["unauthorized"] > 0, f"the sim refused nothing: {sim_stats}")
    status_text = http("GET", base + "/v1/status")[1].decode()
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    for name, text in (("stdout", d.stdout_text()), ("stderr", d.stderr_tail(10 ** 7)),
                       ("/v1/status", status_text)):
        # Neither key, nor the sim's masked echo of the wrong one.
        for secret in (RIGHT, WRONG, WRONG[-4:] + "."):
            check(secret not in text, f"{secret!r} appears in rlaifd's {name}")

    # The right key, a restart: the held pairs drain, every one labeled.
    env["JUDGE_KEY"] = RIGHT
    d, port = start_rlaifd(args.bin, path, tmp, env=env)
    base = f"http://127.0.0.1:{port}"

    def drained():
        s = get_json(base + "/v1/status")
        c = s["counts"]
        return s if c["labels"] + c["dead"] >= N and s["queues"]["judge"]["depth"] == 0 else None
    s = wait_for(drained, 180, "the held pairs to drain with the right key", interval=1)
    print(f"after the restart: counts {s['counts']}, state {s['state']}")
    check(s["counts"]["dead"] == 0, f"dead letters: {s['counts']}")
    check(s["counts"]["labels"] == N, f"labels {s['counts']}")
    check(s["state"] == "running", f"state {s['state']} {s['reasons']}")
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    sim.term()


if __name__ == "__main__":
    run_main(main)
