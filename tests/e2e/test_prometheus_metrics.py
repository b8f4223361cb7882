"""The alert rules use metrics that a running rlaifd really exports (issue 7).

rlaif-sim + rlaifd until a model is live; then GET /metrics, which must pass
`promtool check metrics` (exposition format), and every rlaif_* metric named
in deploy/prometheus/alerts.yml must be present, with the label values the
rules select on (role="judge", state="degraded", a path per source).
Also: every exported family is documented in docs/METRICS.md, counters end
in _total (only the deprecated gauges draw promtool's lint), counters with
known label sets exist at 0, and the upstream counts reconcile (attempts vs
calls, calls by result).

The Grafana dashboard (deploy/grafana/rlaifd.json): a real Prometheus
(Debian's, the one promtool comes with) scrapes the daemon every second, and
each of the dashboard's queries, with Grafana's variables filled in, must
evaluate without error and, except those that are empty by design while
nothing is wrong, return series: so its label names and metrics are the ones
rlaifd really exports.
"""
import json
import os
import re
import subprocess
import sys
import urllib.parse

from rlaif_e2e import (Proc, Skip, check, check_alive, get_json, http, run_main, start_rlaifd,
                       start_sim, wait_for)

# Families whose label values are not known in advance (a route's refusal
# reason, a stage's error reason) or that wait for their first event (the
# first backup): a healthy daemon that has seen none exports no series of
# them, so the dashboard queries on them alone are empty.
FIRST_EVENT = {"rlaif_http_rejected_total", "rlaif_stage_errors_total",
               "rlaif_backup_last_success_timestamp_seconds"}


def dashboard_queries(src):
    """(panel title, expr) of the committed dashboard, walked by its generator."""
    sys.path.insert(0, os.path.join(src, "deploy", "grafana"))
    import make_dashboard  # noqa: E402 (stdlib only)
    with open(os.path.join(src, "deploy", "grafana", "rlaifd.json")) as f:
        return list(make_dashboard.queries(json.load(f)))


def check_dashboard(src, bin_dir, tmp, port):
    """Prometheus scrapes rlaifd; every dashboard query evaluates and has data."""
    if not os.path.exists("/usr/bin/prometheus"):
        raise Skip("no /usr/bin/prometheus (scripts/deps.sh installs the prometheus package)")
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: rlaifd\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{port}']\n")
    # Port 0: prometheus logs the port it got ("Listening on" address=...).
    prom = Proc("prometheus", ["/usr/bin/prometheus", f"--config.file={cfg}",
                               f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
                               "--web.listen-address=127.0.0.1:0"], tmp)

    def listening():
        check_alive(prom, "prometheus exited")
        m = re.search(r'msg="Listening on" address=127\.0\.0\.1:(\d+)', prom.stderr_tail(100000))
        return int(m.group(1)) if m else None
    prom_port = wait_for(listening, 60, "prometheus to listen")
    api = f"http://127.0.0.1:{prom_port}/api/v1/query?query="

    def query(expr):
        code, body = http("GET", api + urllib.parse.quote(expr), timeout=10)
        out = json.loads(body)
        check(code == 200 and out.get("status") == "success", f"{expr}: {code} {out}")
        return out["data"]["result"]

    def scraped():
        check_alive(prom, "prometheus exited")
        return query('count_over_time(up{job="rlaifd"}[1m]) >= 12')
    wait_for(scraped, 90, "12 scrapes of rlaifd by prometheus", interval=1)
    empty = []
    n = 0
    for title, expr in dashboard_queries(src):
        e = expr.replace("$__rate_interval", "10s").replace("$instance", ".+")
        result = query(e)
        n += 1
        # A swap annotation has data only around a swap.
        if not result and "changes(" not in e and not set(re.findall(r"\brlaif_[a-z_]+", e)) & FIRST_EVENT:
            empty.append((title, e))
    check(not empty, f"dashboard queries without data: {empty}")
    print(f"dashboard: {n} queries evaluated by prometheus, all with data where expected")
    prom.term()


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
        # A retention that deletes nothing here: its metrics are exported
        # (RlaifdRetentionFailing's among them) only with one.
        "store": {"max_age_days": 36500},
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
    # One-line expressions, and block scalars (|, >-, ...) with their indented lines.
    exprs = "\n".join(re.findall(r"expr: ([|>][-+]?\n(?:\s{10,}.*\n)+|.*)", rules))
    used = sorted(set(re.findall(r"\brlaif_[a-z_]+", exprs)))
    check(len(used) >= 6, f"found only {used} in alerts.yml")
    exported = set(re.findall(r"^(rlaif_[a-z_]+)(?:\{|\s)", text, re.M))
    missing = [m for m in used if m not in exported]
    check(not missing, f"alerts.yml uses metrics rlaifd does not export: {missing}")
    for series in ('rlaif_upstream_calls_total{role="judge",result="error"}',
                   'rlaif_upstream_calls_total{role="judge",result="ok"}',
                   'rlaif_state{state="degraded"}', 'rlaif_upstream_budget_exhausted{role="judge"}',
                   'rlaif_upstream_breaker_open{role="generator"}',
                   'rlaif_ingest_lag_bytes{path="' + os.path.join(logs, "app.jsonl") + '"}'):
        check(series + " " in text, f"/metrics has no series {series}")

    # Lint: promtool's only advice may be about the deprecated gauges kept
    # for one release (docs/METRICS.md, "Renamed").
    deprecated = {"rlaif_upstream_requests", "rlaif_upstream_failures", "rlaif_upstream_cost_usd",
                  "rlaif_score_batches", "rlaif_score_batched_items"}
    advice = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith("rlaif_")]
    bad_advice = [l for l in advice if l.split()[0] not in deprecated]
    check(not bad_advice, f"promtool check metrics advice: {bad_advice}")
    types = dict(re.findall(r"^# TYPE (rlaif_[a-z_]+) (\w+)$", text, re.M))
    for name, kind in types.items():
        check((kind == "counter") == name.endswith("_total"), f"{name} is a {kind}")
        check(kind != "gauge" or name not in deprecated or "DEPRECATED" in text.split(
            f"# HELP {name} ", 1)[1].split("\n", 1)[0], f"{name}'s help does not say DEPRECATED")

    # Every exported family is documented.
    doc = open(os.path.join(src, "docs", "METRICS.md")).read()
    undocumented = sorted(n for n in types if f"`{n}`" not in doc and f"`{n}{{" not in doc)
    check(not undocumented, f"docs/METRICS.md does not list {undocumented}")

    # Counters with known label sets exist before their first event.
    for series in ('rlaif_ingest_rejected_total{reason="bad_json"}',
                   'rlaif_ingest_rejected_total{reason="line_too_long"}',
                   'rlaif_training_runs_total{outcome="failed"}',
                   'rlaif_judge_labels_total{dimension="harmlessness",outcome="tie"}',
                   'rlaif_upstream_calls_total{role="generator",result="cancelled"}',
                   'rlaif_backups_total{outcome="failed"}', 'rlaif_store_write_errors_total'):
        check(re.search("^" + re.escape(series) + r" \d", text, re.M), f"/metrics has no {series}")

    # The upstream counts reconcile.
    def value(series):
        m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
        check(m, f"/metrics has no {series}")
        return float(m.group(1))
    for role in ("generator", "judge"):
        requests = value(f'rlaif_upstream_requests_total{{role="{role}"}}')
        errors = value(f'rlaif_upstream_request_errors_total{{role="{role}"}}')
        ok = value(f'rlaif_upstream_calls_total{{role="{role}",result="ok"}}')
        check(ok > 0 and ok <= requests, f"{role}: {ok} ok calls vs {requests} attempts")
        # Exact when idle; the pipeline still runs here, and each of its
        # `concurrency` (8) callers may be between two of the client's
        # increments when the scrape reads them.
        check(abs(errors - (requests - ok)) <= 8,
              f"{role}: {errors} failed attempts, but {requests} attempts - {ok} ok calls")
        print(f"{role}: {requests:.0f} attempts, {errors:.0f} failed, {ok:.0f} ok calls")
        # Two reads of the same count in one scrape, the pipeline running.
        check(abs(value(f'rlaif_upstream_requests{{role="{role}"}}') - requests) <= 8,
              f"{role}: the deprecated gauge disagrees with rlaif_upstream_requests_total")
    m = re.search(r"^rlaif_model_live_promoted_timestamp_seconds (\S+)$", text, re.M)
    check(m and float(m.group(1)) > 1.6e9, "no plausible rlaif_model_live_promoted_timestamp_seconds")
    check(re.search(r"^rlaif_model_live 1$", text, re.M), "rlaif_model_live is not 1")
    m = re.search(r"^rlaif_training_last_tokens_per_second (\S+)$", text, re.M)
    check(m and float(m.group(1)) > 0, "no positive rlaif_training_last_tokens_per_second")
    # A CPU run: which CUDA step ran does not apply, so it is not exported.
    check("rlaif_training_last_cuda_kernels" not in text, "rlaif_training_last_cuda_kernels on the CPU")
    print("alert metrics exported:", ", ".join(used))

    board = subprocess.run(["python3", os.path.join(src, "deploy", "grafana", "make_dashboard.py"),
                            "--metrics"], capture_output=True, text=True, check=True).stdout.split()
    check(len(board) >= 30, f"found only {board} in the dashboard")
    families = set(types) | {re.sub(r"_(bucket|sum|count)$", "", m) for m in exported}
    missing = [m for m in board if m not in families and m not in FIRST_EVENT]
    check(not missing, f"deploy/grafana/rlaifd.json uses metrics rlaifd does not export: {missing}")
    check_dashboard(src, args.bin, tmp, port)
    check(d.term(timeout=60) == 0, "rlaifd did not stop cleanly")
    sim.term()


if __name__ == "__main__":
    run_main(main)
