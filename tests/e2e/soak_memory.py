"""Memory and descriptors over a soak with frequent retraining (make soak-memory).

rlaif-sim on the repo's HH dev pairs; rlaifd (tiny ensemble, a retrain every
40 labels, trainer.keep_models 2) reading a log that a writer thread appends
to at RLAIF_SOAK_RATE lines/s (default 2, distinct prompts from the sample
logs); RLAIF_SOAK_CLIENTS threads (default 4) scoring through /v1/score,
/v1/compare and /get_reward. Every 30 s it samples the process (/proc: RSS,
fds, threads) and the training runs, for RLAIF_SOAK_MINUTES (default 15).

Prints one line per sample and a summary: RSS at start, its median over the
last third of the run, its maximum, runs finished, fds/threads at the end,
and the slowest scoring request. Fails on a scoring request that errs (5xx
other than 503 no_model, a timeout, a reset), on fewer than one training
run per 2 minutes or any failed run (else a soak without training would
pass), if a descriptor or thread count grows by more than 32 from the
first sample with a model, if checkpoint directories exceed what keep_models
allows, or if the median RSS of the last third exceeds RLAIF_SOAK_MAX_RSS_MB
(default 700: before malloc_trim after each run, 2026-11-29, the same setup
reached ~800 MB within 13 minutes and kept climbing).
"""
import json
import os
import random
import statistics
import threading
import time

from rlaif_e2e import (check, get_json, http, run_main, start_rlaifd, start_sim, wait_for)


def proc_sample(pid):
    rss_kb = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kb / 1024.0, fds, threads


def main(args, tmp):
    src = args.source
    minutes = float(os.environ.get("RLAIF_SOAK_MINUTES", "15"))
    rate = float(os.environ.get("RLAIF_SOAK_RATE", "2"))
    clients = int(os.environ.get("RLAIF_SOAK_CLIENTS", "4"))
    max_rss_mb = float(os.environ.get("RLAIF_SOAK_MAX_RSS_MB", "700"))
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    sim, sim_port = start_sim(args.bin, pairs, tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    log_path = os.path.join(logs, "app.jsonl")
    open(log_path, "w").close()
    data_dir = os.path.join(tmp, "state")
    config = {
        "data_dir": data_dir,
        "api": {"listen": "127.0.0.1:0", "threads": 32},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "concurrency": 4},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": 4, "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"device": "cpu", "min_new_labels": 40, "keep_models": 2,
                    "checkpoint_interval_s": 20, "model": {"preset": "tiny"}},
    }
    config_path = os.path.join(tmp, "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    d, port = start_rlaifd(args.bin, config_path, tmp)
    base = f"http://127.0.0.1:{port}"
    prompts = [json.loads(l)["prompt"] for l in
               open(os.path.join(src, "data", "sample-logs", "app.jsonl"), encoding="utf-8")]
    stop = threading.Event()

    def writer():
        i = 0
        with open(log_path, "a") as f:
            while not stop.is_set():
                f.write(json.dumps({"prompt": prompts[i % len(prompts)] + f" [{i}]"}) + "\n")
                f.flush()
                i += 1
                stop.wait(1.0 / rate)

    errors = []
    slowest = [0.0]

    def client(seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            p = rnd.choice(prompts)
            k = rnd.random()
            if k < 0.5:
                path, body = "/v1/score", {"prompt": p, "response": "I can help. " * rnd.randint(1, 20)}
            elif k < 0.75:
                path, body = "/v1/compare", {"prompt": p, "a": "No.", "b": "Here is how. " * 5}
            else:
                path, body = "/get_reward", {"query": [p + " answer " * rnd.randint(1, 9)],
                                             "prompts": [p]}
            t = time.time()
            try:
                code, _ = http("POST", base + path, body, timeout=60)
            except Exception as e:  # a timeout or reset: the thread goes on, it is counted
                errors.append((path, repr(e)))
                continue
            slowest[0] = max(slowest[0], time.time() - t)
            if code >= 500 and code != 503:  # 503: no model yet
                errors.append((path, code))
            stop.wait(0.05)

    threads = [threading.Thread(target=writer, daemon=True)]
    threads += [threading.Thread(target=client, args=(s,), daemon=True) for s in range(clients)]
    for t in threads:
        t.start()
    wait_for(lambda: get_json(base + "/v1/status")["model"]["live_version"], 600, "a live model",
             interval=2)
    samples = []  # (t, rss_mb, fds, threads, runs)
    t0 = time.time()
    while time.time() - t0 < minutes * 60:
        rss, fds, nthreads = proc_sample(d.p.pid)
        runs = get_json(base + "/v1/status")["training"].get("runs", 0)
        samples.append((time.time() - t0, rss, fds, nthreads, runs))
        print(f"t={samples[-1][0]:6.0f}s rss={rss:7.1f} MB fds={fds:3d} threads={nthreads:3d} "
              f"runs={runs}", flush=True)
        time.sleep(30)
    stop.set()
    metrics = http("GET", base + "/metrics")[1].decode()
    failed_runs = sum(float(l.split()[-1]) for l in metrics.splitlines()
                      if l.startswith('rlaif_training_runs_total{outcome="failed"}'))
    models_dir = os.path.join(data_dir, "models")
    dirs = [n for n in os.listdir(models_dir) if not n.startswith(".")]
    last_third = [s[1] for s in samples[len(samples) * 2 // 3:]]
    median_rss = statistics.median(last_third)
    print(f"summary: rss start {samples[0][1]:.0f} MB, median of the last third "
          f"{median_rss:.0f} MB, max {max(s[1] for s in samples):.0f} MB; runs "
          f"{samples[-1][4]}; fds {samples[0][2]} -> {samples[-1][2]}; threads "
          f"{samples[0][3]} -> {samples[-1][3]}; checkpoint dirs {len(dirs)}; "
          f"scoring errors {len(errors)}, slowest request {slowest[0]:.2f} s")
    check(not errors, f"errors while scoring: {errors[:5]}")
    runs = samples[-1][4] - samples[0][4]
    check(runs >= minutes / 2, f"only {runs} training runs in {minutes} minutes")
    check(failed_runs == 0, f"{failed_runs:.0f} training runs failed")
    check(samples[-1][2] - samples[0][2] <= 32, "open descriptors grew by more than 32")
    check(samples[-1][3] - samples[0][3] <= 32, "threads grew by more than 32")
    # live + rollback target + kept loaded + 2 others, + one run's candidate
    check(len(dirs) <= 6, f"{len(dirs)} checkpoint directories with keep_models 2: {dirs}")
    check(median_rss <= max_rss_mb,
          f"median RSS over the last third {median_rss:.0f} MB > {max_rss_mb:.0f} MB")


if __name__ == "__main__":
    run_main(main)
