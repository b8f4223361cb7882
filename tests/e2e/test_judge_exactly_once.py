"""Issue 4's exactly-once proof with the real binaries: rlaif-sim with latency,
position bias, noise and 20% mixed faults; rlaifd is killed with SIGKILL
mid-judging three times and restarted. Afterwards every prompt is labeled or
dead-lettered with a reason (counts reconcile, nothing pending), and the only
judge requests asked twice are those that were in flight at a kill: at most
kills x judge concurrency x 2 orders (committed labels are checked before the
call and never asked again)."""
import json
import os
import time

from rlaif_e2e import check, export, get_json, http, run_main, start_rlaifd, start_sim, wait_for

KILLS = 3
JUDGE_CONCURRENCY = 4


def main(args, tmp):
    src = args.source
    sim, sim_port = start_sim(args.bin, os.path.join(src, "data", "hh-harmless-dev.jsonl"), tmp,
                              extra=("--latency-ms", "40", "--position-bias", "0.3", "--noise", "0.1",
                                     "--fault-rate", "0.2", "--fault-kinds", "429,500,503,malformed,truncated"))
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    n = 300
    lines = open(os.path.join(src, "data", "sample-logs", "app.jsonl"), "rb").readlines()[:n]
    with open(os.path.join(logs, "app.jsonl"), "wb") as f:
        f.write(b"".join(lines))
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "concurrency": 8, "max_retries": 6, "timeout_s": 10},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": JUDGE_CONCURRENCY, "max_retries": 6, "timeout_s": 10,
                  "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"min_new_labels": 1000000},
    }
    path = os.path.join(tmp, "config.json")
    json.dump(config, open(path, "w"))
    d, port = start_rlaifd(args.bin, path, tmp)
    for k in range(KILLS):
        base = f"http://127.0.0.1:{port}"
        target = (k + 1) * n // (KILLS + 2)
        wait_for(lambda: get_json(base + "/v1/status")["counts"]["labels"] >= target, 180,
                 f"{target} labels before kill {k + 1}")
        d.kill9()
        d, port = start_rlaifd(args.bin, path, tmp)
    base = f"http://127.0.0.1:{port}"

    def settled():
        s = get_json(base + "/v1/status")
        c, q = s["counts"], s["queues"]
        done = (q["generate"]["depth"] == 0 and q["judge"]["depth"] == 0 and
                c["prompts"] == n)
        return s if done else None

    s = wait_for(settled, 300, "every prompt labeled or dead-lettered", interval=1)
    c = s["counts"]
    code, body = export(base, "labels")
    labels = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
    dead_pairs = c["pairs"] - len(labels)
    # Every prompt became a pair or a dead letter; every pair a label or a dead letter.
    check(c["pairs"] + (c["dead"] - dead_pairs) == n,
          f"prompts do not reconcile: {c}, labels {len(labels)}")
    check(len(labels) == c["labels"], f"label export {len(labels)} != count {c['labels']}")
    check(len({(l["pair_id"], l["dimension"]) for l in labels}) == len(labels), "duplicate labels")
    stats = get_json(f"http://127.0.0.1:{sim_port}/sim/stats")
    repeats = stats["judge_repeats"]
    bound = KILLS * JUDGE_CONCURRENCY * 2
    print(f"prompts {n}, pairs {c['pairs']}, labels {c['labels']}, dead {c['dead']}, "
          f"faults {stats['faults']} {stats.get('faults_by_kind')}, judge calls "
          f"{stats['calls']['judge']}, repeats {repeats} (bound {bound})")
    check(c["labels"] >= 0.95 * n, f"too few labels: {c}")
    check(repeats <= bound, f"{repeats} judge requests asked twice, more than {bound} in flight")
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    sim.term()


if __name__ == "__main__":
    run_main(main)
