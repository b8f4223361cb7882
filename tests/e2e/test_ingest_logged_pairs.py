"""Logged pairs through the whole pipeline: log lines that carry a human
`rewrite` or two logged responses (`ab`) with a stated preference become
pairs and labels without generation, and the trainer trains on them (a
model is trained and gated from those labels alone). Also: a new log file is
picked up through inotify long before the (deliberately slow) poll interval."""
import json
import os
import time

from rlaif_e2e import check, export, get_json, http, run_main, start_rlaifd, start_sim, wait_for


def main(args, tmp):
    sim, sim_port = start_sim(args.bin, os.path.join(args.source, "data", "hh-harmless-dev.jsonl"),
                              tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    lines = []
    for i in range(40):
        prompt = f"Question {i}: how do I keep my houseplant number {i} alive?"
        good = (f"Water plant {i} when the top soil is dry, give it bright indirect light, "
                f"and feed it monthly in spring and summer.")
        bad = f"idk {i}"
        if i % 2:
            lines.append({"prompt": prompt, "response": bad, "rewrite": good})
        else:
            lines.append({"request": {"model": "m", "messages": [{"role": "user", "content": prompt}]},
                          "ab": {"a": good, "b": bad, "preferred": "a"}})
    # Two files, two formats: simple lines and openai-chat lines.
    with open(os.path.join(logs, "rewrites.jsonl"), "w") as f:
        for l in lines:
            if "rewrite" in l:
                f.write(json.dumps(l) + "\n")
    chat_dir = os.path.join(tmp, "chat")
    os.makedirs(chat_dir)
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "poll_interval_s": 8,
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl"), "format": "simple"},
                    {"path": os.path.join(chat_dir, "*.jsonl"), "format": "openai-chat"}],
        "sampling": {"rate": 0.0},  # logged pairs bypass the rate; nothing is generated
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft"},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "dimensions": [{"name": "overall"}]},
        "trainer": {"device": "cpu", "min_new_labels": 40, "holdout_fraction": 0.25,
                    "gate": {"max_regression": 1.0}, "model": {"preset": "tiny"}},
    }
    cfg_path = os.path.join(tmp, "config.json")
    json.dump(config, open(cfg_path, "w"))
    d, port = start_rlaifd(args.bin, cfg_path, tmp)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["labels"] >= 20, 30,
             "the rewrite labels")
    # The chat file appears after startup: with an 8 s poll interval, only
    # inotify can bring it in within a few seconds.
    time.sleep(1.0)
    t0 = time.monotonic()
    tmp_path = os.path.join(chat_dir, "ab.jsonl.tmp")
    with open(tmp_path, "w") as f:
        for l in lines:
            if "ab" in l:
                f.write(json.dumps(l) + "\n")
    os.rename(tmp_path, os.path.join(chat_dir, "ab.jsonl"))
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["labels"] >= 40, 30, "the ab labels")
    took = time.monotonic() - t0
    print(f"new file picked up after {took:.2f}s (poll interval 8 s)")
    check(took < 6.0, f"the new file took {took:.1f}s: inotify did not wake ingest")

    status = get_json(base + "/v1/status")
    counts, gen = status["counts"], status["queues"]["generate"]
    check(counts["pairs"] == 40 and counts["labels"] == 40, f"counts {counts}")
    check(gen["depth"] == 0 and gen["done"] == 0, f"logged pairs must skip generation: {gen}")
    code, body = export(base, "labels")
    check(code == 200, f"export labels -> {code}")
    labels = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
    check(len(labels) == 40 and all(l["source"] == "log" for l in labels), f"labels {labels[:3]}")
    code, body = export(base, "trl")
    trl = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
    check(len(trl) == 40 and all(r["chosen"].startswith("Water plant") for r in trl),
          f"trl rows {trl[:2]}")

    # The trainer sees them: a run starts from these labels alone and is gated.
    def trained():
        t = get_json(base + "/v1/status")["training"]
        return t if t["runs"] >= 1 and not t["running"] else None
    t = wait_for(trained, 600, "a training run", interval=1)
    print(f"training: {t['last']}")
    check(t["last"]["outcome"] in ("promoted", "rejected"),
          f"training did not use the logged labels: {t['last']}")
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    sim.term()


if __name__ == "__main__":
    run_main(main)
