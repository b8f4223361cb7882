#!/usr/bin/env python3
"""Writes deploy/grafana/rlaifd.json, the Grafana dashboard for rlaifd.

The dashboard is generated so that its panels stay short to read and review
here; the JSON is what Grafana imports (Dashboards > New > Import, or file
provisioning). Edit this file, then run it:

    python3 deploy/grafana/make_dashboard.py            # rewrites rlaifd.json
    python3 deploy/grafana/make_dashboard.py --check    # exit 1 if rlaifd.json is stale,
                                                        # or a query does not parse (promtool)

`make test` runs the --check (ctest deploy.grafana), and
tests/e2e/test_prometheus_metrics.py checks that every metric a query names
is one a running rlaifd exports. Only the standard library is used.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "rlaifd.json")
RUNBOOK = "docs/RUNBOOK.md"  # the same anchors as the alerts' runbook_url

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'


def sel(extra=""):
    """The label selector every query carries: the chosen instances, plus extra."""
    return "{" + SEL + ("," + extra if extra else "") + "}"


class Layout:
    """Places panels left to right on Grafana's 24-column grid, rows top down."""

    def __init__(self):
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def row(self, title):
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "id": self._id(), "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1

    def _newline(self):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        panel["datasource"] = DS
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def targets(queries):
    out = []
    for i, (expr, legend) in enumerate(queries):
        out.append({"datasource": DS, "expr": expr, "legendFormat": legend,
                    "refId": chr(ord("A") + i)})
    return out


def timeseries(title, description, queries, unit="short", stack=False, min0=True,
               thresholds=None):
    defaults = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10,
                                         "showPoints": "never", "spanNulls": False,
                                         "stacking": {"mode": "normal" if stack else "none",
                                                      "group": "A"}}}
    if min0:
        defaults["min"] = 0
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": [
            {"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in thresholds]}
        defaults["custom"]["thresholdsStyle"] = {"mode": "dashed"}
    return {"type": "timeseries", "title": title, "description": description,
            "targets": targets(queries),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom",
                                   "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title, description, queries, unit="short", thresholds=None, mappings=None,
         decimals=None):
    defaults = {"unit": unit, "mappings": mappings or [],
                "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}] + [
                    {"color": c, "value": v} for v, c in (thresholds or [])]}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "stat", "title": title, "description": description,
            "targets": targets(queries),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                          "values": False},
                        "colorMode": "background", "graphMode": "none", "textMode": "auto",
                        "justifyMode": "auto", "orientation": "auto"}}


def rate(metric, extra="", by="", window="$__rate_interval"):
    inner = f"rate({metric}{sel(extra)}[{window}])"
    return f"sum by (instance{', ' + by if by else ''}) ({inner})"


def quantile(q, metric, by=""):
    labels = "le, instance" + (", " + by if by else "")
    return (f"histogram_quantile({q}, sum by ({labels}) "
            f"(rate({metric}_bucket{sel()}[$__rate_interval])))")


def build():
    L = Layout()

    # --- What the on-call engineer looks at first.
    L.row("Health")
    L.add(stat("State", "rlaif_state: running, paused or degraded. Degraded: `rlaifctl status` "
               f"lists the reasons. Runbook: {RUNBOOK}#state-degraded",
               [("sum by (instance) (rlaif_state" + sel('state="degraded"') + ") * 2 + "
                 "sum by (instance) (rlaif_state" + sel('state="paused"') + ")", "{{instance}}")],
               unit="none", thresholds=[(1, "blue"), (2, "red")],
               mappings=[{"type": "value", "options": {
                   "0": {"text": "running", "index": 0}, "1": {"text": "paused", "index": 1},
                   "2": {"text": "degraded", "index": 2}}}]), 4, 4)
    L.add(stat("Up", "Prometheus can scrape /metrics (RlaifdDown fires after 2 minutes at 0). "
               f"Runbook: {RUNBOOK}#rlaifd-is-down",
               [("up" + sel('job="rlaifd"'), "{{instance}}")], unit="none",
               thresholds=[(0, "red"), (1, "green")],
               mappings=[{"type": "value", "options": {"0": {"text": "DOWN"},
                                                       "1": {"text": "up"}}}]), 3, 4)
    L.add(stat("Live model accuracy", "Held-out accuracy of the serving model "
               "(ties count as wrong). No value: no live model (RlaifdNoLiveModel).",
               [(f"rlaif_model_live_accuracy{sel()} and on (instance) "
                 f"rlaif_model_live{sel()} == 1", "{{instance}}")],
               unit="percentunit", decimals=3, thresholds=[(0, "red"), (0.6, "green")]), 4, 4)
    L.add(stat("Model age", "Time since the live model was promoted. RlaifdNoPromotion fires "
               f"past 24 h. Runbook: {RUNBOOK}#no-new-model",
               [(f"time() - rlaif_model_live_promoted_timestamp_seconds{sel()}",
                 "{{instance}}")],
               unit="s", thresholds=[(0, "green"), (24 * 3600, "orange")]), 3, 4)
    L.add(stat("Queue", "Pending work items per stage.",
               [(f"sum by (instance, stage) (rlaif_queue_depth{sel()})", "{{stage}}")]), 4, 4)
    L.add(stat("Breakers / budget", "Upstreams held: circuit breaker open or half-open, "
               "hourly budget spent, or the endpoint refusing the configuration "
               f"(401/403/404, TLS). Runbook: {RUNBOOK}#judge-errors",
               [(f"sum by (instance, role) (rlaif_upstream_breaker_open{sel()}) + "
                 f"sum by (instance, role) (rlaif_upstream_budget_exhausted{sel()}) + "
                 f"sum by (instance, role) (rlaif_upstream_configuration_fault{sel()})",
                 "{{role}}")], thresholds=[(0, "green"), (1, "red")]), 6, 4)

    L.row("Ingest")
    L.add(timeseries("Lines", "Log lines read, prompts stored, duplicates, sampled out and "
                     "filtered, per second.",
                     [(rate("rlaif_ingest_lines_total"), "read {{instance}}"),
                      (rate("rlaif_ingest_stored_total"), "stored {{instance}}"),
                      (rate("rlaif_ingest_duplicates_total"), "duplicate {{instance}}"),
                      (rate("rlaif_ingest_sampled_out_total"), "sampled out {{instance}}"),
                      (rate("rlaif_ingest_filtered_total", by="reason"),
                       "filtered: {{reason}} {{instance}}")], unit="ops"), 8, 8)
    L.add(timeseries("Rejected lines", "Lines that did not parse, by reason; each is a dead "
                     "letter (`RLAIF_TOKEN=... rlaifctl export dead`, the newest store.max_rejected_lines). "
                     "Also files and directories that could not be read, compressed files skipped.",
                     [(rate("rlaif_ingest_rejected_total", by="reason"), "{{reason}}"),
                      (rate("rlaif_ingest_errors_total"), "file errors {{instance}}"),
                      (rate("rlaif_ingest_backpressure_total", by="policy"),
                       "backpressure: {{policy}}")], unit="ops"), 8, 8)
    L.add(timeseries("Lag", "Bytes not yet read per source file. RlaifdIngestLag fires above "
                     f"256 MiB for 10 minutes. Runbook: {RUNBOOK}#ingest-lag",
                     [(f"max by (instance, path) (rlaif_ingest_lag_bytes{sel()})",
                       "{{path}}")], unit="bytes",
                     thresholds=[(256 * 1024 * 1024, "red")]), 8, 8)
    L.add(stat("Files per source", "Regular files each configured source glob matched at the "
               "last poll. 0: nothing is read from that source (RlaifdSourceHasNoFiles; after "
               f"5 minutes a degraded reason). Runbook: {RUNBOOK}#ingest-lag",
               [(f"max by (instance, source) (rlaif_ingest_source_files{sel()})",
                 "{{source}}")], unit="none", thresholds=[(0, "red"), (1, "green")]), 24, 4)

    L.row("Generation and judging")
    L.add(timeseries("Throughput", "Pairs generated and labels committed per second.",
                     [(rate("rlaif_pairs_generated_total"), "pairs {{instance}}"),
                      (rate("rlaif_judge_labels_total", by="dimension"),
                       "labels: {{dimension}}")], unit="ops"), 8, 8)
    L.add(timeseries("Stage errors, held and dead letters", "Failed work items (retried, then "
                     "dead-lettered), items put back while an upstream is held, stages held "
                     "30 s after HTTP 429 on every attempt (RlaifdUpstreamRateLimited), and dead "
                     f"letters. Runbook: {RUNBOOK}#dead-letters",
                     [(rate("rlaif_stage_errors_total", by="stage, reason"),
                       "error {{stage}}: {{reason}}"),
                      (rate("rlaif_stage_held_total", by="stage"), "held {{stage}}"),
                      (rate("rlaif_stage_rate_limited_total", by="stage"),
                       "rate limited (held 30 s) {{stage}}"),
                      (rate("rlaif_stage_dead_lettered_total", by="stage"),
                       "dead {{stage}}")], unit="ops"), 8, 8)
    L.add(timeseries("Latency", "Time to generate one pair, and to judge one pair on one "
                     "dimension (both orders): median and p95.",
                     [(quantile(0.5, "rlaif_generate_duration_seconds"),
                       "generate p50 {{instance}}"),
                      (quantile(0.95, "rlaif_generate_duration_seconds"),
                       "generate p95 {{instance}}"),
                      (quantile(0.5, "rlaif_judge_duration_seconds"),
                       "judge p50 {{instance}}"),
                      (quantile(0.95, "rlaif_judge_duration_seconds"),
                       "judge p95 {{instance}}")], unit="s"), 8, 8)
    L.add(timeseries("Label outcomes", "Share of labels by outcome per dimension: a tie rate "
                     "that climbs, or one answer dominating, is a judge problem.",
                     [(f"sum by (instance, dimension, outcome) "
                       f"(rate(rlaif_judge_labels_total{sel()}[$__rate_interval])) / "
                       f"ignoring (outcome) group_left sum by (instance, dimension) "
                       f"(rate(rlaif_judge_labels_total{sel()}[$__rate_interval]))",
                       "{{dimension}}: {{outcome}}")], unit="percentunit", stack=True), 8, 8)
    L.add(timeseries("Judge health", "Over the rolling window: agreement of the two orders "
                     "(position_consistency), first-position and longer-wins rates, ties and "
                     "replies without a verdict.",
                     [(f"max by (instance, signal) (rlaif_judge_health{sel()})",
                       "{{signal}}")], unit="percentunit"), 8, 8)

    L.add(timeseries("Generated responses", "Responses from the generator endpoint by kind, "
                     "per second: truncated = cut off at generator.max_tokens (kept unless "
                     "drop_truncated; RlaifdResponsesTruncated), empty and identical are asked "
                     f"again. Runbook: {RUNBOOK}#dead-letters",
                     [(rate("rlaif_generate_responses_total", by="kind"), "{{kind}}")],
                     unit="ops", stack=True), 8, 8)

    L.row("Upstream endpoints")
    L.add(timeseries("Calls by result", "Completions asked for, by result: ok, error (after "
                     "retries), rejected (breaker open or budget spent, before any request), "
                     "cancelled (shutdown).",
                     [(rate("rlaif_upstream_calls_total", by="role, result"),
                       "{{role}} {{result}}")], unit="ops", stack=True), 8, 8)
    L.add(timeseries("Error rate", "Calls that failed after their retries over calls that "
                     "reached the upstream. RlaifdJudgeErrorRate fires above 20% for 10 "
                     f"minutes. Runbook: {RUNBOOK}#judge-errors",
                     [(rate("rlaif_upstream_calls_total", 'result="error"', "role") + " / " +
                       rate("rlaif_upstream_calls_total", 'result=~"ok|error"', "role"),
                       "{{role}} calls"),
                      (rate("rlaif_upstream_request_errors_total", by="role") + " / " +
                       rate("rlaif_upstream_requests_total", by="role"),
                       "{{role}} attempts")], unit="percentunit",
                     thresholds=[(0.2, "red")]), 8, 8)
    L.add(timeseries("Attempts and retries", "HTTP attempts sent and retried, and time spent "
                     "waiting for the client's own rate limits (seconds per second).",
                     [(rate("rlaif_upstream_requests_total", by="role"), "{{role}} attempts"),
                      (rate("rlaif_upstream_retries_total", by="role"), "{{role}} retries"),
                      (rate("rlaif_upstream_throttled_wait_seconds_total", by="role"),
                       "{{role}} throttled s/s")], unit="short"), 8, 8)
    L.add(timeseries("Cost", "Spend per hour at the configured prices. RlaifdBudgetExhausted "
                     f"fires after 5 minutes with the hourly budget spent. Runbook: {RUNBOOK}#budget-exhausted",
                     [("3600 * " + rate("rlaif_upstream_cost_usd_total", by="role"),
                       "{{role}} $/h")], unit="currencyUSD"), 12, 8)
    L.add(timeseries("Tokens", "Tokens the upstreams reported, per second.",
                     [(rate("rlaif_upstream_tokens_total", by="role, kind"),
                       "{{role}} {{kind}}")], unit="short", stack=True), 12, 8)

    L.row("Training and the live model")
    L.add(timeseries("Training runs", "Finished runs by outcome (promoted, rejected by the "
                     "gate, failed, skipped), per hour.",
                     [(f"sum by (instance, outcome) "
                       f"(increase(rlaif_training_runs_total{sel()}[1h]))", "{{outcome}}")],
                     unit="short", stack=True), 8, 8)
    L.add(timeseries("Labels since the last run", "New labels waiting for the next training "
                     "run (it starts at trainer.min_new_labels).",
                     [(f"max by (instance) (rlaif_labels_since_train{sel()})",
                       "{{instance}}")]), 8, 8)
    L.add(timeseries("Live model", "Held-out accuracy of the live model, and swaps "
                     "(promotions and rollbacks) in the window.",
                     [(f"max by (instance) (rlaif_model_live_accuracy{sel()})",
                       "accuracy {{instance}}"),
                      (f"sum by (instance) (increase(rlaif_model_swaps_total{sel()}[1h]))",
                       "swaps per hour {{instance}}")], unit="short"), 8, 8)

    L.row("Serving and API")
    L.add(timeseries("Scoring", "Responses scored through /v1/score per second, and the mean "
                     "batch the model ran.",
                     [(rate("rlaif_scored_total"), "scored/s {{instance}}"),
                      (rate("rlaif_score_batched_items_total") + " / " +
                       rate("rlaif_score_batches_total"), "mean batch {{instance}}")]),
          8, 8)
    L.add(timeseries("HTTP latency p99", "99th percentile of request latency by route.",
                     [(quantile(0.99, "rlaif_http_request_duration_seconds", by="route"),
                       "{{route}}")], unit="s"), 8, 8)
    L.add(timeseries("HTTP requests", "Requests by status code, refused requests by reason, "
                     "and admin requests without a valid token.",
                     [(rate("rlaif_http_requests_total", by="code"), "{{code}}"),
                      (rate("rlaif_http_rejected_total", by="route, reason"),
                       "refused {{route}}: {{reason}}"),
                      (rate("rlaif_http_unauthorized_total"), "unauthorized {{instance}}")],
                     unit="reqps"), 8, 8)

    L.row("Store and backups")
    L.add(timeseries("Records", "Records in the store by kind.",
                     [(f"max by (instance, kind) (rlaif_store_records{sel()})",
                       "{{kind}}")]), 8, 8)
    L.add(timeseries("Disk", "Free space on the data volume, and what rlaifd keeps on it: the "
                     "store, the checkpoints and the backups (what deleting them would free). RlaifdDiskFillingUp fires when the free space "
                     f"would run out within 3 days. Runbook: {RUNBOOK}#disk-filling-up",
                     [(f"max by (instance) (rlaif_data_dir_free_bytes{sel()})",
                       "free {{instance}}"),
                      (f"max by (instance) (rlaif_store_disk_bytes{sel()})",
                       "store {{instance}}"),
                      (f"max by (instance) (rlaif_models_disk_bytes{sel()})",
                       "checkpoints {{instance}}"),
                      (f"max by (instance) (rlaif_backups_disk_bytes{sel()})",
                       "backups {{instance}}")], unit="bytes"), 8, 8)
    L.add(timeseries("Store write errors", "Failed store writes (disk full, I/O); the daemon "
                     f"degrades until a write succeeds. Runbook: {RUNBOOK}#state-degraded",
                     [(f"sum by (instance) (increase(rlaif_store_write_errors_total{sel()}"
                       f"[$__rate_interval]))", "{{instance}}")],
                     thresholds=[(1, "red")]), 8, 8)
    L.add(timeseries("Store retention", "Records deleted by store.max_age_days, by kind, and "
                     "1 while its last pass failed (RlaifdRetentionFailing). Empty without a "
                     f"retention. Runbook: {RUNBOOK}#disk-filling-up",
                     [(f"sum by (instance, kind) (increase(rlaif_store_purged_total{sel()}"
                       f"[$__rate_interval]))", "{{kind}} {{instance}}"),
                      (f"max by (instance) (rlaif_store_retention_failing{sel()})",
                       "failing {{instance}}")]), 8, 8)
    L.add(stat("Last backup", "Time since the last successful online backup (from the audit "
               "trail, also after a restart; none yet: no value), and failed backups since start. "
               "Runbook: "
               f"{RUNBOOK}#backup-and-restore",
               [(f"time() - rlaif_backup_last_success_timestamp_seconds{sel()} > 0 < 1e9",
                 "age {{instance}}"),
                ("sum by (instance) (rlaif_backups_total" + sel('outcome="failed"') + ")",
                 "failed {{instance}}")], unit="short"), 8, 8)

    return {
        "title": "rlaifd",
        "uid": "rlaifd-overview",
        "description": "rlaifd: ingest, generation, judging, training, serving. "
                       "Metrics: docs/METRICS.md; alerts: deploy/prometheus/alerts.yml; "
                       "what to do: docs/RUNBOOK.md. Generated by "
                       "deploy/grafana/make_dashboard.py.",
        "tags": ["rlaifd"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "hide": 0, "refresh": 1, "regex": ""},
            {"name": "instance", "label": "Instance", "type": "query", "datasource": DS,
             "query": {"query": "label_values(rlaif_build_info, instance)",
                       "refId": "instances"},
             "definition": "label_values(rlaif_build_info, instance)",
             "includeAll": True, "multi": True, "allValue": ".+",
             "refresh": 2, "sort": 1, "hide": 0, "regex": ""},
        ]},
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
             "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
             "name": "Annotations & Alerts", "type": "dashboard"},
            {"name": "Model swaps", "datasource": DS, "enable": True, "hide": False,
             "iconColor": "purple",
             "target": {"refId": "swaps", "expr": f"changes(rlaif_model_swaps_total{sel()}[2m]) > 0",
                        "interval": "60s", "titleFormat": "model swap on {{instance}}"}},
        ]},
        "panels": L.panels,
    }


def queries(dashboard):
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            yield p["title"], t["expr"]
    for a in dashboard["annotations"]["list"]:
        if "target" in a:
            yield a["name"], a["target"]["expr"]
    for v in dashboard["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            m = re.fullmatch(r"label_values\((\w+), *\w+\)", q["query"])
            if m:
                yield v["name"], m.group(1)


def metric_names(dashboard):
    """Every rlaif_* metric family the dashboard's queries name (_bucket stripped)."""
    names = set()
    for _, expr in queries(dashboard):
        for m in re.findall(r"\brlaif_[a-z_]+", expr):
            names.add(re.sub(r"_bucket$", "", m))
    return sorted(names)


def check_promql(dashboard):
    """Each query must parse: promtool checks it as a recording rule, with
    Grafana's variables replaced by values of the same kind."""
    promtool = shutil.which("promtool")
    if not promtool:
        print("promtool not found (scripts/deps.sh installs it)", file=sys.stderr)
        return False
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (title, expr) in enumerate(queries(dashboard)):
        e = expr.replace("$__rate_interval", "1m").replace("$instance", ".+")
        lines.append(f"      - record: dashboard:query_{i}")
        lines.append(f"        expr: {json.dumps(e)}")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    finally:
        os.unlink(path)
    if r.returncode != 0:
        print(r.stdout + r.stderr, file=sys.stderr)
    return r.returncode == 0


def check_layout(dashboard):
    ok = True
    ids = [p["id"] for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        print("panel ids repeat", file=sys.stderr)
        ok = False
    cells = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            print(f"panel {p['title']!r} is wider than the grid", file=sys.stderr)
            ok = False
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    print(f"panel {p['title']!r} overlaps another", file=sys.stderr)
                    return False
                cells.add((x, y))
        if p["type"] != "row" and not p.get("description"):
            print(f"panel {p['title']!r} has no description", file=sys.stderr)
            ok = False
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if rlaifd.json differs or a query is invalid")
    ap.add_argument("--metrics", action="store_true",
                    help="print the metric families the queries use, one a line")
    args = ap.parse_args()
    dashboard = build()
    text = json.dumps(dashboard, indent=2, sort_keys=True) + "\n"
    if args.metrics:
        print("\n".join(metric_names(dashboard)))
        return 0
    if not args.check:
        with open(OUT, "w") as f:
            f.write(text)
        print(f"wrote {OUT}: {len(dashboard['panels'])} panels")
        return 0
    ok = check_layout(dashboard) and check_promql(dashboard)
    with open(OUT) as f:
        if f.read() != text:
            print(f"{OUT} is stale: run python3 {os.path.relpath(__file__)}", file=sys.stderr)
            ok = False
    documented = open(os.path.join(HERE, "..", "..", "docs", "METRICS.md")).read()
    undocumented = [m for m in metric_names(dashboard) if f"`{m}`" not in documented]
    if undocumented:
        print(f"queries use metrics docs/METRICS.md does not list: {undocumented}",
              file=sys.stderr)
        ok = False
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
