"""Issue 7's crash suite, black-box (after RocksDB's crash test): rlaifd is
SIGKILLed at random moments while a writer appends uniquely numbered log lines
(with rename rotations), rlaif-sim answers with latency and 10% mixed faults,
and the trainer retrains, gates and promotes every few dozen labels; it is
restarted after every kill. Afterwards:

- every log line written appears exactly once among the stored prompts;
- every pair has at most one label per dimension, and prompts, pairs, labels
  and dead letters reconcile with nothing left queued;
- the judge was asked again only for work in flight at a kill (sim stats:
  at most kills x judge concurrency x 2 orders repeated requests);
- the registry and the live model agree (one live version, its checkpoint
  exists and scores), and no temp checkpoint is left behind.

RLAIF_CRASH_KILLS (default 12; `make reliability` runs 50) sets the number of
kills; RLAIF_CRASH_SEED the random moments; RLAIF_CRASH_REPORT a path for a
JSON summary of the run.
"""
import json
import os
import random
import threading
import time

from rlaif_e2e import check, export, get_json, http, run_main, start_rlaifd, start_sim, wait_for

KILLS = int(os.environ.get("RLAIF_CRASH_KILLS", "12"))
SEED = int(os.environ.get("RLAIF_CRASH_SEED", "1"))
JUDGE_CONCURRENCY = 4
LINES_PER_S = int(os.environ.get("RLAIF_CRASH_LINES_PER_S", "20"))
ROTATE_EVERY = 250


class Writer(threading.Thread):
    """Appends numbered lines; rotates by rename only while rlaifd is up, so
    that no file is created and rotated away unseen while it is down."""

    def __init__(self, logs, prompts, up):
        super().__init__(daemon=True)
        self.logs, self.prompts, self.up = logs, prompts, up
        self.written = 0
        self.rotations = 0
        self.stop = threading.Event()

    def run(self):
        path = os.path.join(self.logs, "app.jsonl")
        f = open(path, "ab")
        while not self.stop.is_set():
            i = self.written
            prompt = f"{self.prompts[i % len(self.prompts)]} [line {i}]"
            f.write((json.dumps({"prompt": prompt}) + "\n").encode())
            f.flush()
            self.written += 1
            if self.written % ROTATE_EVERY == 0:
                self.up.wait()
                f.close()
                self.rotations += 1
                os.rename(path, os.path.join(self.logs, f"app.{self.rotations}.old"))
                f = open(path, "ab")
            time.sleep(1.0 / LINES_PER_S)
        f.close()


def main(args, tmp):
    rng = random.Random(SEED)
    src = args.source
    sim, sim_port = start_sim(
        args.bin, os.path.join(src, "data", "hh-harmless-dev.jsonl"), tmp,
        extra=("--latency-ms", "20", "--latency-jitter-ms", "40", "--fault-rate", "0.1",
               "--fault-kinds", "429,500,503,malformed,truncated"))
    sample = os.path.join(src, "data", "sample-logs", "app.jsonl")
    prompts = [json.loads(l)["prompt"] for l in open(sample, encoding="utf-8")]
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    state = os.path.join(tmp, "state")
    config = {
        "data_dir": state,
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "sampling": {"rate": 1.0, "dedupe": True},
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "concurrency": 8, "max_retries": 8, "timeout_s": 10},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": JUDGE_CONCURRENCY, "max_retries": 8, "timeout_s": 10,
                  "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"min_new_labels": 100, "model": {"preset": "tiny"},
                    "gate": {"min_accuracy": 0.0, "max_regression": 1.0}},
    }
    path = os.path.join(tmp, "config.json")
    json.dump(config, open(path, "w"))

    up = threading.Event()
    d, port = start_rlaifd(args.bin, path, tmp)
    up.set()
    writer = Writer(logs, prompts, up)
    writer.start()
    moments = {"training": 0, "promotion_window": 0, "judging": 0, "generating": 0, "idle": 0}
    t_start = time.time()
    for k in range(KILLS):
        time.sleep(rng.uniform(0.3, 2.5))
        base = f"http://127.0.0.1:{port}"
        try:
            s = get_json(base + "/v1/status", timeout=5)
            if s["training"]["running"]:
                moments["promotion_window" if s["training"]["progress"] >= 0.99 else "training"] += 1
            elif s["queues"]["judge"]["in_flight"] > 0:
                moments["judging"] += 1
            elif s["queues"]["generate"]["in_flight"] > 0:
                moments["generating"] += 1
            else:
                moments["idle"] += 1
        except Exception:  # noqa: BLE001 - the moment is only for the report
            moments["idle"] += 1
        up.clear()
        d.kill9()
        time.sleep(rng.uniform(0.0, 0.5))  # lines keep arriving while it is down
        d, port = start_rlaifd(args.bin, path, tmp)
        up.set()
    writer.stop.set()
    writer.join()
    written = writer.written
    base = f"http://127.0.0.1:{port}"
    print(f"{KILLS} kills in {time.time() - t_start:.0f}s at moments {moments}; "
          f"{written} lines written, {writer.rotations} rotations")

    def settled():
        s = get_json(base + "/v1/status")
        c, q = s["counts"], s["queues"]
        return s if (c["prompts"] == written and q["generate"]["depth"] == 0 and
                     q["judge"]["depth"] == 0) else None
    wait_for(settled, 600, f"{written} prompts stored and every queue drained", interval=1)
    # A training run may be going: SIGTERM cancels it cleanly. The checks run
    # on a restarted daemon that does not train (an operator's verification run).
    check(d.term(timeout=60) == 0, "rlaifd did not stop cleanly after the kills")
    config["trainer"]["min_new_labels"] = 1000000000
    json.dump(config, open(path, "w"))
    # A run the SIGTERM cancelled resumes at the start whatever min_new_labels
    # says: let it finish before checking the registry.
    resumes = os.path.isdir(os.path.join(state, "training-state"))
    d, port = start_rlaifd(args.bin, path, tmp)
    base = f"http://127.0.0.1:{port}"
    if resumes:
        runs = get_json(base + "/v1/status")["training"]["runs"]
        wait_for(lambda: (lambda t: t["runs"] > runs and not t["running"])(
            get_json(base + "/v1/status")["training"]), 600, "the resumed training run", interval=1)
    s = get_json(base + "/v1/status")
    c = s["counts"]

    # Every line exactly once.
    code, body = export(base, "prompts", timeout=120)
    check(code == 200, f"export prompts -> {code}")
    stored = [json.loads(l)["prompt"] for l in body.decode().splitlines() if l.strip()]
    ids = [int(p.rsplit("[line ", 1)[1].rstrip("]")) for p in stored]
    dupes = len(ids) - len(set(ids))
    missing = sorted(set(range(written)) - set(ids))
    check(dupes == 0, f"{dupes} lines stored twice")
    check(not missing, f"{len(missing)} lines lost, e.g. {missing[:10]}")

    # Every pair labeled at most once per dimension; everything reconciles.
    code, body = export(base, "labels", timeout=120)
    labels = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
    keys = [(l["pair_id"], l["dimension"]) for l in labels]
    check(len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} duplicate labels")
    check(len(labels) == c["labels"], f"label export {len(labels)} != count {c['labels']}")
    dead_pairs = c["pairs"] - c["labels"]
    check(c["pairs"] + (c["dead"] - dead_pairs) == written,
          f"prompts/pairs/labels/dead do not reconcile: {c}")
    stats = get_json(f"http://127.0.0.1:{sim_port}/sim/stats")
    repeats, bound = stats["judge_repeats"], (KILLS + 1) * JUDGE_CONCURRENCY * 2
    check(repeats <= bound, f"{repeats} judge requests repeated, bound {bound}")

    # Registry and live model agree; no temp checkpoints.
    models = get_json(base + "/v1/models?limit=1000")
    live = models["live"]
    live_recs = [m for m in models["models"] if m["state"] == "live"]
    check(live is not None and [m["version"] for m in live_recs] == [live],
          f"registry live {live} vs states {[(m['version'], m['state']) for m in models['models']]}")
    check(os.path.isdir(os.path.join(state, "models", live)), f"live checkpoint {live} missing")
    temps = [n for n in os.listdir(os.path.join(state, "models")) if ".tmp-" in n]
    check(not temps, f"temp checkpoints left behind: {temps}")
    code, body = http("POST", base + "/v1/score", {"prompt": "hi", "response": "hello"})
    check(code == 200 and json.loads(body)["model_version"] == live, f"score -> {code} {body[:200]!r}")
    promotions = sum(1 for e in get_json(base + "/v1/events?limit=1000")["events"]
                     if e["kind"] == "promote")

    summary = {"kills": KILLS, "seed": SEED, "moments": moments, "lines_written": written,
               "rotations": writer.rotations, "prompts": c["prompts"], "pairs": c["pairs"],
               "labels": c["labels"], "dead": c["dead"], "lost_lines": len(missing),
               "duplicate_lines": dupes, "duplicate_labels": len(keys) - len(set(keys)),
               "judge_repeats": repeats, "judge_repeat_bound": bound,
               "faults": stats.get("faults_by_kind", stats.get("faults")),
               "models": len(models["models"]), "promotions": promotions, "live": live}
    print("summary:", json.dumps(summary))
    report = os.environ.get("RLAIF_CRASH_REPORT")
    if report:
        with open(report, "w") as f:
            json.dump(summary, f, indent=1)
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    sim.term()


if __name__ == "__main__":
    run_main(main)
