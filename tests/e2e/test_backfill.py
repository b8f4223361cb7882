"""A dimension added after pairs were judged (docs/RUNBOOK.md, "Adding a
judge dimension"): rlaifd judges 30 pairs on harmlessness, is restarted with
helpfulness added, and `rlaifctl backfill` queues the judged pairs again --
10 (--max), then the other 20 -- so that each gets a helpfulness label and
nothing else: the harmlessness labels are untouched and the judge is asked
exactly as many times as for the first dimension. Backfill is an audited
admin action; an unknown dimension is refused.
"""
import json
import os
import subprocess

from rlaif_e2e import check, export, get_json, run_main, start_rlaifd, start_sim, wait_for

TOKEN = "backfill-e2e-token"
N = 30


def main(args, tmp):
    src = args.source
    sim, sim_port = start_sim(args.bin, os.path.join(src, "data", "hh-harmless-dev.jsonl"), tmp)
    sim_stats = f"http://127.0.0.1:{sim_port}/sim/stats"
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    lines = open(os.path.join(src, "data", "sample-logs", "app.jsonl"), "rb").readlines()[:N]
    with open(os.path.join(logs, "app.jsonl"), "wb") as f:
        f.write(b"".join(lines))
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "concurrency": 4},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": 4, "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"min_new_labels": 1000000},
    }
    path = os.path.join(tmp, "config.json")
    with open(path, "w") as f:
        json.dump(config, f)
    env = dict(os.environ, RLAIF_TOKEN=TOKEN)
    ctl = os.path.join(args.bin, "rlaifctl")

    def run(*argv, token=TOKEN):
        e = {k: v for k, v in env.items() if k != "RLAIF_TOKEN"}
        if token:
            e["RLAIF_TOKEN"] = token
        p = subprocess.run([ctl, "--url", base, *argv], env=e, capture_output=True, timeout=120)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def settled(labels):
        def pred():
            s = get_json(base + "/v1/status")
            c, q = s["counts"], s["queues"]
            done = (c["pairs"] == N and c["labels"] == labels and q["generate"]["depth"] == 0
                    and q["judge"]["depth"] == 0 and q["judge"]["in_flight"] == 0)
            return s if done else None
        return pred

    d, port = start_rlaifd(args.bin, path, tmp, env)
    base = f"http://127.0.0.1:{port}"
    s = wait_for(settled(N), 180, f"{N} pairs judged on harmlessness", interval=0.5)
    check(s["counts"]["dead"] == 0, f"dead letters: {s['counts']}")
    first_labels = {(l["pair_id"], l["dimension"]): l for l in
                    map(json.loads, export(base, "labels", token=TOKEN)[1].decode().splitlines())}
    judge_calls_first = get_json(sim_stats)["calls"]["judge"]
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")

    config["judge"]["dimensions"].append({"name": "helpfulness"})
    with open(path, "w") as f:
        json.dump(config, f)
    d, port = start_rlaifd(args.bin, path, tmp, env)
    base = f"http://127.0.0.1:{port}"

    rc, _, err = run("backfill", token=None)
    check(rc == 1 and "401" in err, f"backfill without the token: {rc} {err}")
    rc, _, err = run("backfill", "nosuchdimension")
    check(rc == 1 and "400" in err and "not configured" in err,
          f"backfill of an unknown dimension: {rc} {err}")
    rc, out, err = run("--reason", "helpfulness added", "backfill", "helpfulness", "--max", "10")
    check(rc == 0 and "queued 10 judged pair(s)" in out and "helpfulness 10" in out and
          "run backfill again" in out, f"backfill --max 10: {rc} {out} {err}")
    rc, out, err = run("--json", "backfill")
    check(rc == 0, f"backfill: {rc} {err}")
    rest = json.loads(out)
    # The first 10 are queued still, or judged (then they lack nothing).
    check(rest["queued"] == N - 10 and rest["missing"] == {"helpfulness": N - 10} and
          not rest["more"] and rest["already_queued"] <= 10, f"second backfill: {rest}")

    wait_for(settled(2 * N), 180, f"{N} pairs judged on helpfulness too", interval=0.5)
    labels = [json.loads(l) for l in export(base, "labels", token=TOKEN)[1].decode().splitlines()]
    by_key = {(l["pair_id"], l["dimension"]): l for l in labels}
    check(len(by_key) == len(labels) == 2 * N, f"{len(labels)} labels, {len(by_key)} distinct")
    check(all(by_key[k] == v for k, v in first_labels.items()),
          "a harmlessness label changed: pairs were judged again on it")
    check(sorted(p for p, dim in by_key if dim == "helpfulness") ==
          sorted(p for p, _ in first_labels), "not every judged pair got a helpfulness label")
    judge_calls_backfill = get_json(sim_stats)["calls"]["judge"] - judge_calls_first
    check(judge_calls_backfill == judge_calls_first,
          f"the backfill asked the judge {judge_calls_backfill} times, the first dimension "
          f"{judge_calls_first}: only the missing dimension is to be asked")
    rc, out, _ = run("backfill")
    check(rc == 0 and "queued 0" in out, f"a third backfill found work: {out}")

    events = get_json(base + "/v1/events?limit=100")["events"]
    backfills = [e for e in events if e["kind"] == "backfill"]
    check(len(backfills) == 3 and all(e["actor"] == "admin" for e in backfills) and
          any("helpfulness added" in e["message"] for e in backfills),
          f"backfill audit events: {backfills}")
    print(f"backfill: {N} pairs judged on helpfulness after the fact with "
          f"{judge_calls_backfill} judge calls (first dimension: {judge_calls_first})")
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")


if __name__ == "__main__":
    run_main(main)
