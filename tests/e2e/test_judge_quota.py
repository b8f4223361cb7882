"""A judge out of quota, then one rate limiting every call (an on-call
finding, session 14): before, both dead-lettered the whole backlog within
seconds (`upstream_unavailable` after 5 attempts) while /v1/status said
`running`. Now:

1. quota (rlaif-sim --fault-kinds quota: OpenAI's 429 insufficient_quota on
   every call): the pairs wait in the judge queue, nothing is dead-lettered,
   /v1/status is `degraded` with "out of quota" and
   rlaif_upstream_configuration_fault{role="judge"} is 1; once the account has
   quota again (a clean judge on the same port) the backlog drains by itself,
   no restart;
2. a 429 on every attempt (--fault-kinds 429): the stage waits ("rate
   limited" in /v1/status, rlaif_stage_rate_limited_total), nothing is
   dead-lettered, and the backlog drains once the limit lifts.

The generator is a separate, healthy rlaif-sim.
"""
import json
import os
import re

from rlaif_e2e import (Proc, check, check_alive, get_json, http, run_main, start_rlaifd, start_sim,
                       wait_for, write_prompt_lines)

N = 20


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    gen_sim, gen_port = start_sim(args.bin, pairs, tmp)
    judge_port = [0]
    judge_sim = [None]

    def start_judge(name, *faults):
        """A judge rlaif-sim, on the same port from the second one on."""
        if judge_sim[0] is not None:
            judge_sim[0].p.terminate()
            judge_sim[0].p.wait(timeout=30)
        port_file = os.path.join(tmp, f"{name}.port")
        judge_sim[0] = Proc(name, [os.path.join(args.bin, "rlaif-sim"), "--listen",
                                   f"127.0.0.1:{judge_port[0]}", "--pairs", pairs, "--seed", "3",
                                   "--port-file", port_file, *faults], tmp)

        def bound():
            check_alive(judge_sim[0], f"{name} exited (its port taken?)")
            txt = open(port_file).read().strip() if os.path.exists(port_file) else ""
            return int(txt.rsplit(":", 1)[-1]) if txt else None
        judge_port[0] = wait_for(bound, 60, f"{name} to listen")

    start_judge("judge-quota", "--fault-rate", "1", "--fault-kinds", "quota")
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    write_prompt_lines(src, os.path.join(logs, "a.jsonl"), N)
    upstream = {"concurrency": 4, "max_retries": 2, "timeout_s": 5, "breaker_failures": 5,
                "breaker_cooldown_s": 2}
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": dict(upstream, base_url=f"http://127.0.0.1:{gen_port}/v1", model="sim-sft"),
        "judge": dict(upstream, base_url=f"http://127.0.0.1:{judge_port[0]}/v1",
                      model="sim-judge", dimensions=[{"name": "harmlessness"}]),
        "trainer": {"min_new_labels": 1000000},
    }
    path = os.path.join(tmp, "config.json")
    with open(path, "w") as f:
        json.dump(config, f)
    d, port = start_rlaifd(args.bin, path, tmp)
    base = f"http://127.0.0.1:{port}"

    def metric(name, labels):
        body = http("GET", base + "/metrics")[1].decode()
        m = re.search(r"^" + re.escape(name + labels) + r" (\S+)$", body, re.M)
        return float(m.group(1)) if m else None

    # 1. Out of quota: held, degraded, nothing dead.
    def out_of_quota():
        s = get_json(base + "/v1/status")
        return s if (s["counts"]["pairs"] == N and s["state"] == "degraded" and
                     any("out of quota" in r for r in s["reasons"])) else None
    s = wait_for(out_of_quota, 120, "the judge held as out of quota", interval=0.5)
    print("out of quota:", [r for r in s["reasons"] if "quota" in r][0][:300])
    check(metric("rlaif_upstream_configuration_fault", '{role="judge"}') == 1,
          "rlaif_upstream_configuration_fault{role=\"judge\"} is not 1")
    # Far longer than 5 attempts x 2 s: before, everything was dead by now.
    wait_for(lambda: get_json(base + "/v1/status")["upstream"]["judge"]["calls"]["error"] >= 15,
             120, "the judge to refuse 15 calls", interval=0.5)
    s = get_json(base + "/v1/status")
    check(s["counts"]["dead"] == 0 and s["queues"]["judge"]["depth"] == N,
          f"out of quota: pairs were dead-lettered or left the queue: {s['counts']} "
          f"{s['queues']['judge']}")

    # Topped up: drains by itself.
    start_judge("judge-ok")

    def labelled(n):
        def pred():
            s = get_json(base + "/v1/status")
            return s if s["counts"]["labels"] == n and s["queues"]["judge"]["depth"] == 0 else None
        return pred
    s = wait_for(labelled(N), 120, f"{N} labels once the quota is back", interval=0.5)
    check(s["counts"]["dead"] == 0 and s["state"] == "running", f"after the top-up: {s}")

    # 2. Rate limited on every attempt: the stage waits, nothing dead.
    start_judge("judge-429", "--fault-rate", "1", "--fault-kinds", "429")
    write_prompt_lines(src, os.path.join(logs, "b.jsonl"), 2 * N)  # N new (numbered on)

    def rate_limited():
        s = get_json(base + "/v1/status")
        return s if any("rate limited" in r for r in s["reasons"]) else None
    s = wait_for(rate_limited, 120, "the judge stage held as rate limited", interval=0.5)
    print("rate limited:", [r for r in s["reasons"] if "rate limited" in r][0][:300])
    check((metric("rlaif_stage_rate_limited_total", '{stage="judge"}') or 0) > 0,
          "rlaif_stage_rate_limited_total{stage=\"judge\"} did not count")
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["pairs"] == 2 * N, 120,
             "the new pairs", interval=0.5)
    s = get_json(base + "/v1/status")
    check(s["counts"]["dead"] == 0, f"rate limited: pairs were dead-lettered: {s['counts']}")

    start_judge("judge-ok-2")
    s = wait_for(labelled(2 * N), 180, f"{2 * N} labels once the limit lifts", interval=1)
    check(s["counts"]["dead"] == 0, f"after the limit lifted: {s['counts']}")
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")


if __name__ == "__main__":
    run_main(main)
