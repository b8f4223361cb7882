"""A judge whose replies carry no verdict (an on-call finding, session 12):
rlaif-sim --refusal 1 answers every judge call with prose ("Both responses
have merits ... I would rather not pick one."), as a judge model does when
its prompt or model is wrong. Before, every pair was dead-lettered as an
unparseable verdict within seconds, with /v1/status `running`. Now:
- the pairs wait in the judge queue, and nothing is dead-lettered;
- /v1/status says `degraded` and why;
- the judge is probed every 30 s rather than paid for every pair;
- the daemon's log says that work is held, and why.

The judge sim is then restarted on the same port, answering properly. The
backlog drains, every pair gets a label, and the state returns to `running`.
"""
import json
import os
import time

from rlaif_e2e import (Proc, check, get_json, http, run_main, start_rlaifd, start_sim, wait_for,
                       write_prompt_lines)

N = 24


def start_judge_sim(args, pairs, tmp, port, refusal):
    port_file = os.path.join(tmp, "judge-sim.port")
    if os.path.exists(port_file):
        os.remove(port_file)
    sim = Proc(f"judge-sim-{refusal}",
               [os.path.join(args.bin, "rlaif-sim"), "--listen", f"127.0.0.1:{port}", "--pairs",
                pairs, "--seed", "7", "--refusal", str(refusal), "--port-file", port_file], tmp)

    def bound():
        check(sim.alive(), "the judge sim exited: " + sim.stderr_tail())
        txt = open(port_file).read().strip() if os.path.exists(port_file) else ""
        return int(txt.rsplit(":", 1)[-1]) if txt else None
    return sim, wait_for(bound, 60, "the judge sim to listen")


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    gen_sim, gen_port = start_sim(args.bin, pairs, tmp)
    judge_sim, judge_port = start_judge_sim(args, pairs, tmp, 0, 1)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    write_prompt_lines(src, os.path.join(logs, "app.jsonl"), N)

    upstream = {"concurrency": 4, "max_retries": 1, "timeout_s": 10}
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": dict(upstream, base_url=f"http://127.0.0.1:{gen_port}/v1", model="sim-sft"),
        "judge": dict(upstream, base_url=f"http://127.0.0.1:{judge_port}/v1", model="sim-judge",
                      dimensions=[{"name": "harmlessness"}]),
        "trainer": {"min_new_labels": 1000000},
    }
    path = os.path.join(tmp, "config.json")
    json.dump(config, open(path, "w"))
    d, port = start_rlaifd(args.bin, path, tmp)
    base = f"http://127.0.0.1:{port}"

    def held():
        s = get_json(base + "/v1/status")
        why = [r for r in s["reasons"] if "judge replies cannot be parsed" in r]
        return s if s["state"] == "degraded" and why and s["counts"]["pairs"] >= N else None
    s = wait_for(held, 120, "degraded: the judge's replies cannot be parsed, every pair generated")
    print(f"degraded: {s['reasons']}")
    check(s["counts"]["dead"] == 0, f"pairs dead-lettered: {s['counts']}")
    check(s["counts"]["labels"] == 0, f"labels from a judge without verdicts: {s['counts']}")
    check(s["queues"]["judge"]["depth"] >= N, f"the judge queue must hold the pairs: {s['queues']}")

    # Backing off: over 40 s the judge is asked a few times (every 30 s, by
    # each of the 4 workers, both orders, one retry), not about every pair.
    stats = lambda: json.loads(http("GET", f"http://127.0.0.1:{judge_port}/sim/stats")[1])
    before = stats()["calls"]["judge"]
    time.sleep(40)
    s = get_json(base + "/v1/status")
    asked = stats()["calls"]["judge"] - before
    print(f"judge calls in 40 s while held: {asked}")
    check(asked <= 2 * 4 * 2 * 2, f"{asked} judge calls in 40 s: not backing off")
    check(s["counts"]["dead"] == 0 and s["state"] == "degraded", f"after 40 s: {s['counts']}")
    check("work item(s) put back to wait (nothing is dead-lettered)" in d.stdout_text(),
          "the log does not say that work is held")

    # The judge answers again (same port): the backlog drains.
    judge_sim.term()
    start_judge_sim(args, pairs, tmp, judge_port, 0)

    def drained():
        s = get_json(base + "/v1/status")
        c = s["counts"]
        return s if c["labels"] + c["dead"] >= N and s["queues"]["judge"]["depth"] == 0 else None
    t_up = time.time()
    s = wait_for(drained, 180, "the held pairs to drain", interval=1)
    print(f"drained {time.time() - t_up:.1f}s after the judge came back: {s['counts']}")
    check(s["counts"]["dead"] == 0, f"dead letters: {s['counts']}")
    check(s["counts"]["labels"] == N, f"labels {s['counts']}")
    s = wait_for(lambda: (lambda s: s if s["state"] == "running" else None)(
        get_json(base + "/v1/status")), 60, "the state to return to running")
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    gen_sim.term()


if __name__ == "__main__":
    run_main(main)
