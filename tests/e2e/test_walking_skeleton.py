"""The whole loop with the real binaries (issue 2, point 9):

rlaif-sim on the repo's HH dev pairs, rlaifd on a temp data dir with the
issue's config (ports and paths changed), 200 log lines appended while it
runs, a kill -9 and restart in the middle, then: every prompt stored exactly
once, a live model reached by retraining + gate + hot swap, and a finite score.
"""
import json
import math
import os
import time

from rlaif_e2e import (Fail, check, export, get_json, http, run_main, start_rlaifd, start_sim, wait_for)


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    sample = os.path.join(src, "data", "sample-logs", "app.jsonl")
    lines = open(sample, "rb").read().splitlines(keepends=True)[:200]
    check(len(lines) == 200, "sample logs must have at least 200 lines")

    sim, sim_port = start_sim(args.bin, pairs, tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    log_path = os.path.join(logs, "app.jsonl")
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0", "admin_token_env": "RLAIF_TOKEN"},
        "sources": [{"path": os.path.join(logs, "*.jsonl"), "format": "simple",
                     "start_at": "beginning"}],
        "sampling": {"rate": 1.0, "dedupe": True},
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "temperature": 0.9, "max_tokens": 256, "concurrency": 8},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": 8, "both_orders": True,
                  "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"device": "auto", "min_new_labels": 100, "interval_s": 0,
                    "model": {"preset": "tiny"}},
    }
    config_path = os.path.join(tmp, "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    # As a Kubernetes Secret made --from-file has it: with a trailing newline,
    # which the daemon trims (with a warning) so that the token still works.
    env = dict(os.environ, RLAIF_TOKEN="e2e-secret-token\n")

    d, port = start_rlaifd(args.bin, config_path, tmp, env)
    base = f"http://127.0.0.1:{port}"
    check(get_json(base + "/livez")["status"] == "alive", "livez")

    # First 100 lines, written in bursts, with one line split across two writes.
    with open(log_path, "ab") as f:
        for i in range(0, 100, 10):
            chunk = b"".join(lines[i:i + 10])
            if i == 50:
                f.write(chunk[:-40]); f.flush(); time.sleep(0.6)
                f.write(chunk[-40:])
            else:
                f.write(chunk)
            f.flush()
            time.sleep(0.1)

    wait_for(lambda: get_json(base + "/v1/status")["counts"]["prompts"] >= 60, 60,
             "some prompts ingested")
    # kill -9 in the middle of ingest/generation/judging, then restart.
    d.kill9()
    with open(log_path, "ab") as f:  # lines written while the daemon is down
        f.write(b"".join(lines[100:150]))
    d, port = start_rlaifd(args.bin, config_path, tmp, env)
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as f:
        for i in range(150, 200, 10):
            f.write(b"".join(lines[i:i + 10])); f.flush()
            time.sleep(0.1)

    status = wait_for(lambda: (lambda s: s if s["counts"]["prompts"] == 200 else None)(
        get_json(base + "/v1/status")), 60, "200 prompts")
    status_code, body = export(base, "prompts", token="e2e-secret-token")
    check(status_code == 200, f"export prompts -> {status_code}")
    exported = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
    texts = [e["prompt"] for e in exported]
    expected = [json.loads(l)["prompt"] for l in lines]
    check(len(texts) == 200, f"export has {len(texts)} prompts, want 200")
    check(sorted(texts) == sorted(expected), "exported prompts differ from the logged ones")
    check(len(set(e["id"] for e in exported)) == 200, "duplicate prompt ids")

    # A live model: labels >= min_new_labels -> train -> gate -> hot swap.
    def live():
        s = get_json(base + "/v1/status")
        return s if s["model"]["live_version"] else None
    t0 = time.time()
    status = wait_for(live, 300, "a live model", interval=1)
    print(f"live model {status['model']['live_version']} after {time.time() - t0:.1f}s; "
          f"counts {status['counts']}")
    c = status["counts"]
    check(c["pairs"] <= c["prompts"], f"more pairs than prompts: {c}")
    check(c["labels"] <= c["pairs"], f"more labels than pairs: {c}")

    code, body = http("POST", base + "/v1/score",
                      {"prompt": "\n\nHuman: How do I bake bread?\n\nAssistant:",
                       "response": "Mix flour, water, salt and yeast, knead, let it rise, bake."})
    check(code == 200, f"score -> {code}: {body[:300]!r}")
    score = json.loads(body)
    check(isinstance(score["score"], float) and math.isfinite(score["score"]), f"score {score}")
    check(score["model_version"] == status["model"]["live_version"], f"version {score}")

    models = get_json(base + "/v1/models")
    check(models["live"] == status["model"]["live_version"], f"models live {models}")
    live_rec = [m for m in models["models"] if m["version"] == models["live"]][0]
    check(live_rec["state"] == "live", f"state {live_rec}")
    check(0.0 <= live_rec["metrics"]["accuracy"] <= 1.0, f"accuracy {live_rec}")

    code, body = export(base, "trl", token="e2e-secret-token")
    check(code == 200, "export trl")
    trl = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
    check(len(trl) > 0, "no trl lines")
    check(all(set(("prompt", "chosen", "rejected", "dimension")) <= set(t) for t in trl),
          "trl fields")
    check(all(t["chosen"] != t["rejected"] for t in trl), "identical chosen/rejected")

    metrics = http("GET", base + "/metrics")[1].decode()
    check("\nrlaif_ingest_lines_total " in metrics, "no rlaif_ingest_lines_total in /metrics")
    check("# TYPE rlaif_http_request_duration_seconds histogram" in metrics, "no latency histogram")
    check(http("GET", base + "/readyz")[0] == 200, "readyz")

    # Admin routes need the token; the token never shows in status.
    check(http("POST", base + "/v1/pause")[0] == 401, "pause without token must be 401")
    code, _ = http("POST", base + "/v1/pause", headers={"Authorization": "Bearer e2e-secret-token"})
    check(code == 200, f"pause with token -> {code}")
    check(get_json(base + "/v1/status")["state"] == "paused", "state paused")
    # Paused, nothing is read, but the backlog still shows as lag.
    with open(log_path, "ab") as f:
        f.write(b'{"prompt": "written while paused"}\n')

    def lag():
        return sum(x["lag_bytes"] for x in get_json(base + "/v1/status")["sources"]) > 0
    wait_for(lag, 30, "the lag of lines written while paused")
    http("POST", base + "/v1/resume", headers={"Authorization": "Bearer e2e-secret-token"})
    check("e2e-secret-token" not in http("GET", base + "/v1/status")[1].decode(), "token leaked")
    check("environment variable RLAIF_TOKEN has leading or trailing whitespace" in d.stdout_text(),
          "no warning about the token's trailing newline")
    check(http("GET", base + "/")[0] == 200, "status page")

    sim_stats = get_json(f"http://127.0.0.1:{sim_port}/sim/stats")
    print("sim stats:", sim_stats)
    check(sim_stats["calls"]["judge"] >= 2 * c["labels"], "judge asked fewer than 2x labels")

    rc = d.term(timeout=30)
    check(rc == 0, f"rlaifd exit code on SIGTERM: {rc}")
    sim.term()


if __name__ == "__main__":
    run_main(main)
