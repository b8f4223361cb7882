"""SIGTERM drains, SIGHUP reloads (issue 6, operators).

1. SIGTERM while generation and judge calls are in flight (rlaif-sim answers
   after 1.5 s): rlaifd exits 0 well inside its drain deadline; after a
   restart the abandoned items are redone and every prompt ends up with its
   labels, nothing lost, nothing dead-lettered.
2. SIGTERM while a training run is going: the run is cancelled, rlaifd exits
   0 quickly, no temp checkpoint is left behind, and the labels still count
   toward the next run, which happens after the restart.
3. SIGHUP: a changed log_level and judge.timeout_s are applied (and so is
   changing the level back), a changed api.listen, judge.concurrency and an
   added dimension are named as needing a restart; each is recorded as a
   `reload` audit event; an invalid config changes nothing. Then reloads
   change what the daemon does: sampling.rate 0 keeps no new line (and 1
   again keeps them), the judge's hourly budget and trainer.min_new_labels
   show in /v1/status.
0. (First of all.) A port already in use stops rlaifd with a clear error
   before its pipeline starts: `ingest --once` afterwards still finds every
   line unread, and the audit log has no "start" for the failed attempt.
"""
import json
import os
import socket
import subprocess
import time

from rlaif_e2e import (E2E_TOKEN, check, get_json, http, run_main, start_rlaifd, start_sim,
                       wait_for)


def main(args, tmp):
    src = args.source
    pairs = os.path.join(src, "data", "hh-harmless-dev.jsonl")
    sample = os.path.join(src, "data", "sample-logs", "app.jsonl")
    lines = open(sample, "rb").read().splitlines(keepends=True)[:60]
    sim, sim_port = start_sim(args.bin, pairs, tmp, extra=("--latency-ms", "1500"))
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    with open(os.path.join(logs, "app.jsonl"), "wb") as f:
        f.write(b"".join(lines))
    state = os.path.join(tmp, "state")
    config = {
        "data_dir": state,
        "log_level": "info",
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "concurrency": 8},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": 8, "dimensions": [{"name": "harmlessness"}]},
        # No training in part 1: the threshold is out of reach.
        "trainer": {"min_new_labels": 1000000, "model": {"preset": "tiny"}},
    }
    config_path = os.path.join(tmp, "config.json")

    def write_config(c):
        with open(config_path, "w") as f:
            json.dump(c, f)

    # 0. A port in use: rlaifd refuses to start and has ingested nothing.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = dict(config, data_dir=os.path.join(tmp, "state-busy"),
                api={"listen": f"127.0.0.1:{blocker.getsockname()[1]}"})
    write_config(busy)
    rlaifd = os.path.join(args.bin, "rlaifd")
    env = dict(os.environ, RLAIF_TOKEN="e2e")
    p = subprocess.run([rlaifd, "run", "--config", config_path], env=env, capture_output=True,
                       text=True, timeout=120)
    out = p.stdout + p.stderr
    check(p.returncode != 0 and "address in use" in out,
          f"rlaifd on a port in use: rc {p.returncode}: {out[-2000:]}")
    blocker.close()
    p = subprocess.run([rlaifd, "ingest", "--config", config_path, "--once"], env=env,
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, f"ingest --once: {p.returncode} {p.stderr[-2000:]}")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    check(summary["lines"] == len(lines),
          f"the failed start read lines it should have left: ingest --once then read "
          f"{summary['lines']} of {len(lines)}")
    # Nor did the pipeline start: the only "start" in the audit log is the
    # next, successful one.
    busy["api"] = {"listen": "127.0.0.1:0"}
    write_config(busy)
    d, port = start_rlaifd(args.bin, config_path, tmp)
    starts = [e for e in get_json(f"http://127.0.0.1:{port}/v1/events?limit=100")["events"]
              if e["kind"] == "start"]
    check(len(starts) == 1, f"the failed start started the pipeline: {starts}")
    check(d.term(timeout=30) == 0, "rlaifd (busy-port data dir) did not stop cleanly")

    write_config(config)

    # 1. SIGTERM with upstream calls in flight.
    d, port = start_rlaifd(args.bin, config_path, tmp)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: (lambda q: q["generate"]["in_flight"] + q["judge"]["in_flight"] > 0)(
        get_json(base + "/v1/status")["queues"]), 60, "upstream calls in flight")
    t0 = time.time()
    rc = d.term(timeout=30)
    took = time.time() - t0
    print(f"SIGTERM with calls in flight: exit {rc} after {took:.2f}s")
    check(rc == 0, f"rlaifd exit code on SIGTERM: {rc}")
    check(took < 10, f"drain took {took:.1f}s; in-flight calls must be abandoned, not awaited")

    d, port = start_rlaifd(args.bin, config_path, tmp)
    base = f"http://127.0.0.1:{port}"

    def all_labelled():
        s = get_json(base + "/v1/status")
        c, q = s["counts"], s["queues"]
        done = (c["prompts"] == 60 and c["pairs"] == 60 and c["labels"] == 60
                and q["generate"]["depth"] == 0 and q["judge"]["depth"] == 0)
        return s if done else None
    s = wait_for(all_labelled, 180, "every prompt generated and judged after the restart",
                 interval=0.5)
    check(s["counts"]["dead"] == 0, f"dead-lettered items after a clean drain: {s['counts']}")

    # 3 (first, while this daemon runs). SIGHUP.
    original = json.loads(json.dumps(config))
    original_level = config.get("log_level")
    config["log_level"] = "debug"
    config["api"]["listen"] = "127.0.0.1:1"  # cannot change without a restart
    config["judge"]["timeout_s"] = 17  # applied (before reloads could, it went unreported)
    config["judge"]["concurrency"] = 3  # needs a restart: the workers start once
    dims = config["judge"].setdefault("dimensions", [{"name": "helpfulness"}])
    added = len(dims)
    dims.append({"name": "conciseness"})  # named with its index, as in the config
    write_config(config)
    log_path = os.path.join(tmp, "rlaifd.out")  # rlaifd logs to stdout
    err_before = len(open(log_path, "rb").read())
    d.p.send_signal(1)  # SIGHUP

    def metric(name):
        text = http("GET", base + "/metrics")[1].decode()
        return sum(float(l.split()[-1]) for l in text.splitlines()
                   if l.startswith(name + " ") or l.startswith(name + "{"))

    def reload_event():
        ev = get_json(base + "/v1/events?limit=20")["events"]
        return [e for e in ev if e["kind"] == "reload"] or None
    ev = wait_for(reload_event, 20, "a reload event")[0]
    check(ev["data"]["applied"] == ["log_level", "judge.timeout_s"], f"reload applied {ev['data']}")
    check("api" in ev["data"]["need_restart"], f"reload must report api: {ev['data']}")
    check("judge.concurrency" in ev["data"]["keys"] and "api.listen" in ev["data"]["keys"]
          and "judge.timeout_s" not in ev["data"]["keys"],
          f"reload must name each changed key that needs a restart: {ev['data']}")
    check(f"judge.dimensions[{added}].name" in ev["data"]["keys"],
          f"reload must name an added dimension by its index: {ev['data']}")
    check(get_json(base + "/livez")["status"] == "alive", "still serving on the old port")
    s = get_json(base + "/v1/status")
    check(any("wait for a restart: api.listen" in w for w in s["warnings"])
          and "judge.concurrency" in s["config"]["last_reload"]["need_restart"],
          f"the status must say what waits for a restart: {s['warnings']} {s['config']}")
    check(metric("rlaif_config_restart_pending_keys") >= 3, "rlaif_config_restart_pending_keys")
    err = open(log_path, "rb").read()[err_before:].decode(errors="replace")
    check("log_level is now debug" in err, f"no log_level message in:\n{err[-2000:]}")
    check("were NOT applied" in err, "no 'not applied' warning")
    # Back to the starting level: applied too (the comparison is with what is
    # in effect, not with the config rlaifd started with).
    if original_level is None:
        del config["log_level"]
    else:
        config["log_level"] = original_level
    write_config(config)
    d.p.send_signal(1)
    wait_for(lambda: len(reload_event()) >= 2, 20, "a reload event for the reverted level")
    check(reload_event()[0]["data"]["applied"] == ["log_level"],
          f"the reverted log_level was not applied: {reload_event()[0]['data']}")
    check("judge.concurrency" in reload_event()[0]["data"]["keys"],
          f"a change that needs a restart is reported until the restart: "
          f"{reload_event()[0]['data']}")
    # The file as it started, with a default written out: nothing needs a
    # restart (it changes nothing in effect).
    unchanged = json.loads(json.dumps(original))
    unchanged["judge"]["both_orders"] = True
    write_config(unchanged)
    d.p.send_signal(1)
    wait_for(lambda: len(reload_event()) >= 3, 20, "a reload event for a default written out")
    ev = reload_event()[0]
    check(ev["data"]["need_restart"] == [] and ev["data"].get("no_effect") == ["judge.both_orders"],
          f"a default written out must need no restart: {ev['data']}")
    with open(config_path, "w") as f:
        f.write("{ not json")
    d.p.send_signal(1)
    wait_for(lambda: len(reload_event()) >= 4, 20, "a fourth reload event")
    check("invalid" in reload_event()[0]["message"], f"invalid config event {reload_event()[0]}")
    check(get_json(base + "/livez")["status"] == "alive", "an invalid config must not stop rlaifd")
    s = get_json(base + "/v1/status")
    check(any("last config reload" in w and "would not start" in w for w in s["warnings"])
          and s["config"]["last_reload"]["error"], f"an invalid file must be said: {s['warnings']}")
    check(metric("rlaif_config_last_reload_successful") == 0,
          "rlaif_config_last_reload_successful after an invalid file")

    # Reloads that change behaviour: no new line is kept at rate 0, the
    # budget and the training threshold are in effect.
    out_before = metric("rlaif_ingest_sampled_out_total")
    tuned = json.loads(json.dumps(original))
    tuned["sampling"] = {"rate": 0}
    tuned["judge"]["hourly_budget_usd"] = 0.5
    tuned["trainer"]["min_new_labels"] = 999
    tuned["generator"]["max_tokens"] = 64
    write_config(tuned)
    d.p.send_signal(1)
    wait_for(lambda: len(reload_event()) >= 5, 20, "a reload event for the tuned config")
    ev = reload_event()[0]
    check(ev["data"]["applied"] == ["sampling.rate", "trainer.min_new_labels",
                                    "generator.max_tokens", "judge.hourly_budget_usd"]
          and ev["data"]["need_restart"] == [], f"tuned reload: {ev['data']}")
    s = get_json(base + "/v1/status")
    check(s["upstream"]["judge"]["budget"]["hourly_usd"] == 0.5, f"budget: {s['upstream']['judge']}")
    check(s["training"]["min_new_labels"] == 999, f"min_new_labels: {s['training']}")
    check(not any("reload" in w or "restart" in w for w in s["warnings"])
          and s["config"]["last_reload"]["error"] is None,
          f"a valid reload with nothing waiting clears the warnings: {s['warnings']}")
    check(metric("rlaif_config_last_reload_successful") == 1
          and metric("rlaif_config_restart_pending_keys") == 0, "reload gauges after a valid file")
    # The ingest loop takes the new sampling at its next poll: lines appended
    # before that poll starts could be read under the old rate.
    def sampling_reloads():
        return open(log_path, "rb").read().decode(errors="replace").count(
            "ingest: sampling reloaded")
    wait_for(lambda: sampling_reloads() >= 1, 20, "the ingest loop to take the rate 0")
    app_log = os.path.join(logs, "app.jsonl")
    with open(app_log, "ab") as f:
        for i in range(20):
            f.write((json.dumps({"prompt": f"a prompt after the reload to rate 0, #{i}"}) + "\n")
                    .encode())
    wait_for(lambda: metric("rlaif_ingest_sampled_out_total") >= out_before + 20, 30,
             "20 lines sampled out at rate 0")
    check(get_json(base + "/v1/status")["counts"]["prompts"] == 60, "a line was kept at rate 0")
    # This one through the API: `rlaifctl reload` waits for it and says what
    # it applied; the event names the token, with the reason.
    tuned["sampling"] = {"rate": 1}
    write_config(tuned)
    ctl_env = dict(os.environ, RLAIF_URL=base, RLAIF_TOKEN=E2E_TOKEN)
    ctl = [os.path.join(args.bin, "rlaifctl"), "--reason", "sampling back to 1", "reload"]
    p = subprocess.run(ctl, env=ctl_env, capture_output=True, text=True, timeout=120)
    check(p.returncode == 0 and "reloaded: applied sampling.rate" in p.stdout,
          f"rlaifctl reload: rc {p.returncode}: {p.stdout} {p.stderr}")
    ev = reload_event()[0]
    check(len(reload_event()) >= 6 and ev["actor"] == "admin"
          and ev["data"].get("reason") == "sampling back to 1", f"the API's reload event: {ev}")
    wait_for(lambda: sampling_reloads() >= 2, 20, "the ingest loop to take the rate 1")
    with open(app_log, "ab") as f:
        for i in range(5):
            f.write((json.dumps({"prompt": f"a prompt after the reload to rate 1, #{i}"}) + "\n")
                    .encode())
    wait_for(lambda: get_json(base + "/v1/status")["counts"]["prompts"] == 65, 30,
             "the 5 lines after the reload to rate 1 kept")
    # An invalid file through the API: exit 1, nothing changed, said why.
    with open(config_path, "w") as f:
        f.write("{ not json")
    p = subprocess.run(ctl[:1] + ["reload"], env=ctl_env, capture_output=True, text=True,
                       timeout=120)
    check(p.returncode == 1 and "invalid" in (p.stdout + p.stderr),
          f"rlaifctl reload of an invalid file: rc {p.returncode}: {p.stdout} {p.stderr}")
    write_config(tuned)
    check(d.term(timeout=30) == 0, "exit code after reloads")

    # 2. SIGTERM during a training run: 60 labels >= 50, a long run (many epochs).
    config["log_level"] = "info"
    config["api"]["listen"] = "127.0.0.1:0"
    config["judge"]["dimensions"].pop()  # the dimension added for the reload
    config["trainer"] = {"min_new_labels": 50, "epochs": 100, "model": {"preset": "tiny"}}
    write_config(config)
    d, port = start_rlaifd(args.bin, config_path, tmp)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get_json(base + "/v1/status")["training"]["running"], 60, "a training run")
    time.sleep(1.0)
    t0 = time.time()
    rc = d.term(timeout=30)
    took = time.time() - t0
    print(f"SIGTERM during training: exit {rc} after {took:.2f}s")
    check(rc == 0, f"exit code on SIGTERM during training: {rc}")
    check(took < 15, f"training was not cancelled promptly ({took:.1f}s)")
    models_dir = os.path.join(state, "models")
    left = os.listdir(models_dir) if os.path.isdir(models_dir) else []
    check(not left, f"a cancelled run left files in models/: {left}")

    # The labels still count: the next start trains (short run) and goes live.
    config["trainer"]["epochs"] = 1
    write_config(config)
    d, port = start_rlaifd(args.bin, config_path, tmp)
    base = f"http://127.0.0.1:{port}"
    s = wait_for(lambda: (lambda s: s if s["model"]["live_version"] else None)(
        get_json(base + "/v1/status")), 300, "a live model after the restart", interval=1)
    check(s["counts"]["labels_since_train"] < 50, f"labels not marked trained: {s['counts']}")
    check(d.term(timeout=30) == 0, "final exit code")
    sim.term()


if __name__ == "__main__":
    run_main(main)
