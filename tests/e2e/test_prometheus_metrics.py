"""The alert rules use metrics that a running rlaifd really exports (issue 7).

rlaif-sim + rlaifd until a model is live; then GET /metrics, which must pass
`promtool check metrics` (exposition format), and every rlaif_* metric named
in deploy/prometheus/alerts.yml must be present, with the label values the
rules select on (role="judge", state="degraded", a path per source).
"""
import json
import os
import re
import subprocess

from rlaif_e2e import check, get_json, http, run_main, start_rlaifd, start_sim, wait_for


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    sim, sim_port = start_sim(args.bin, pairs, tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    with open(os.path.join(src, "data", "sample-logs", "app.jsonl"), "rb") as f:
        lines = f.read().splitlines(keepends=True)[:150]
    with open(os.path.join(logs, "app.jsonl"), "wb") as f:
        f.write(b"".join(lines))
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl"), "format": "simple"}],
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "concurrency": 8},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": 8, "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"device": "cpu", "min_new_labels": 100, "model": {"preset": "tiny"}},
    }
    config_path = os.path.join(tmp, "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    d, port = start_rlaifd(args.bin, config_path, tmp)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get_json(base + "/v1/status")["model"]["live_version"], 300, "a live model",
             interval=1)

    code, body = http("GET", base + "/metrics")
    check(code == 200, f"/metrics -> {code}")
    text = body.decode()
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    # promtool exits 1 for lint advice too (e.g. counters without _total);
    # only format errors ("error while linting") make the text unusable.
    check("error while linting" not in r.stderr + r.stdout, f"promtool check metrics: {r.stderr}")

    rules = open(os.path.join(src, "deploy", "prometheus", "alerts.yml")).read()
    exprs = "\n".join(re.findall(r"expr: (\|\n(?:\s{10,}.*\n)+|.*)", rules))
    used = sorted(set(re.findall(r"\brlaif_[a-z_]+", exprs)))
    check(len(used) >= 6, f"found only {used} in alerts.yml")
    exported = set(re.findall(r"^(rlaif_[a-z_]+)(?:\{|\s)", text, re.M))
    missing = [m for m in used if m not in exported]
    check(not missing, f"alerts.yml uses metrics rlaifd does not export: {missing}")
    for series in ('rlaif_upstream_failures{role="judge"}', 'rlaif_upstream_requests{role="judge"}',
                   'rlaif_state{state="degraded"}', 'rlaif_upstream_budget_exhausted{role="judge"}',
                   'rlaif_upstream_breaker_open{role="generator"}',
                   'rlaif_ingest_lag_bytes{path="' + os.path.join(logs, "app.jsonl") + '"}'):
        check(series + " " in text, f"/metrics has no series {series}")
    m = re.search(r"^rlaif_model_live_promoted_timestamp_seconds (\S+)$", text, re.M)
    check(m and float(m.group(1)) > 1.6e9, "no plausible rlaif_model_live_promoted_timestamp_seconds")
    check(re.search(r"^rlaif_model_live 1$", text, re.M), "rlaif_model_live is not 1")
    m = re.search(r"^rlaif_training_last_tokens_per_second (\S+)$", text, re.M)
    check(m and float(m.group(1)) > 0, "no positive rlaif_training_last_tokens_per_second")
    # A CPU run: which CUDA step ran does not apply, so it is not exported.
    check("rlaif_training_last_cuda_kernels" not in text, "rlaif_training_last_cuda_kernels on the CPU")
    print("alert metrics exported:", ", ".join(used))
    check(d.term(timeout=60) == 0, "rlaifd did not stop cleanly")
    sim.term()


if __name__ == "__main__":
    run_main(main)
