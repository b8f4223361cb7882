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

First, a judge that refuses only some pairs (`--refusal 0.1`, the same
answer on every retry): those pairs are dead-lettered after their 5 tries as
`unparseable_verdict`, the others are labelled, and the state ends
`running`. A few bad pairs must not look like a broken judge.
"""
import json
import os
import time

from rlaif_e2e import (Proc, check, check_alive, export, get_json, http, run_main, start_rlaifd,
                       start_sim, wait_for, write_prompt_lines)

N = 24


def start_judge_sim(args, pairs, tmp, port, refusal):
    port_file = os.path.join(tmp, "judge-sim.port")
    if os.path.exists(port_file):
        os.remove(port_file)
    sim = Proc(f"judge-sim-{refusal}",
               [os.path.join(args.bin, "rlaif-sim"), "--listen", f"127.0.0.1:{port}", "--pairs",
                pairs, "--seed", "7", "--refusal", str(refusal), "--port-file", port_file], tmp)

    def bound():
        check_alive(sim, "the judge sim exited")
        txt = open(port_file).read().strip() if os.path.exists(port_file) else ""
        return int(txt.rsplit(":", 1)[-1]) if txt else None
    return sim, wait_for(bound, 60, "the judge sim to listen")


def start_daemon(args, tmp, name, gen_port, judge_port):
    """rlaifd on its own data dir, N prompt lines to ingest."""
    src = args.source
    logs = os.path.join(tmp, name, "logs")
    os.makedirs(logs)
    write_prompt_lines(src, os.path.join(logs, "app.jsonl"), N)
    upstream = {"concurrency": 4, "max_retries": 1, "timeout_s": 10}
    config = {
        "data_dir": os.path.join(tmp, name, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": dict(upstream, base_url=f"http://127.0.0.1:{gen_port}/v1", model="sim-sft"),
        "judge": dict(upstream, base_url=f"http://127.0.0.1:{judge_port}/v1", model="sim-judge",
                      dimensions=[{"name": "harmlessness"}]),
        "trainer": {"min_new_labels": 1000000},
    }
    path = os.path.join(tmp, name, "config.json")
    json.dump(config, open(path, "w"))
    d, port = start_rlaifd(args.bin, path, tmp)
    return d, f"http://127.0.0.1:{port}"


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    gen_sim, gen_port = start_sim(args.bin, pairs, tmp)

    # A judge that refuses a few pairs: those are dead-lettered, not held.
    judge_sim, judge_port = start_judge_sim(args, pairs, tmp, 0, 0.1)
    d, base = start_daemon(args, tmp, "some", gen_port, judge_port)
    held_seen = []

    def settled():
        s = get_json(base + "/v1/status")
        held_seen.extend(r for r in s["reasons"] if "cannot be parsed" in r)
        c = s["counts"]
        return s if c["pairs"] >= N and c["labels"] + c["dead"] >= N else None
    s = wait_for(settled, 180, "every pair labelled or dead-lettered", interval=0.5)
    print(f"a judge refusing some pairs: {s['counts']}, held reasons seen: {len(held_seen)}")
    dead = [json.loads(l) for l in export(base, "dead")[1].decode().splitlines()
            if l.strip()]
    check(0 < len(dead) < N // 2 and all(x["reason"] == "unparseable_verdict" for x in dead),
          f"dead letters: {dead}")
    check(s["state"] == "running", f"state {s['state']} {s['reasons']}")
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    judge_sim.term()

    # A judge that refuses everything: the pairs wait.
    judge_sim, judge_port = start_judge_sim(args, pairs, tmp, judge_port, 1)
    d, base = start_daemon(args, tmp, "all", gen_port, judge_port)

    def held():
        s = get_json(base + "/v1/status")
        why = [r for r in s["reasons"] if "judge replies cannot be parsed" in r]
        return s if s["state"] == "degraded" and why and s["counts"]["pairs"] >= N else None
    s = wait_for(held, 120, "degraded: the judge's replies cannot be parsed, every pair generated")
    print(f"degraded: {s['reasons']}")
    check(s["counts"]["dead"] == 0, f"pairs dead-lettered: {s['counts']}")
    check(s["counts"]["labels"] == 0, f"labels from a judge without verdicts: {s['counts']}")
    check(s["queues"]["judge"]["depth"] >= N, f"the judge queue must hold the pairs: {s['queues']}")

    # Backing off: over 40 s the judge is asked about one pair every 30 s
    # (2 calls: the judge re-asks an unparseable reply once), plus what was
    # in flight when the reason appeared (up to 8 pairs), not about every pair.
    stats = lambda: json.loads(http("GET", f"http://127.0.0.1:{judge_port}/sim/stats")[1])
    before = stats()["calls"]["judge"]
    time.sleep(40)
    s = get_json(base + "/v1/status")
    asked = stats()["calls"]["judge"] - before
    print(f"judge calls in 40 s while held: {asked}")
    check(asked <= 2 * 2 + 8 * 2, f"{asked} judge calls in 40 s: not backing off")
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
