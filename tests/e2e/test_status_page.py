"""The status page (GET /) rendered by headless Chromium shows live numbers:
the daemon's state, the pipeline counts of /v1/status, and the live model in
the model history."""
import json
import os
import re
import shutil
import subprocess
import time

from rlaif_e2e import check, get_json, run_main, start_rlaifd, start_sim, wait_for


def render(url, tmp):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    check(chromium, "chromium is not installed (scripts/deps.sh installs it)")
    profile = os.path.join(tmp, "chromium-profile")
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=6000",
            "--dump-dom", url]
    p = subprocess.run(argv, capture_output=True, timeout=120)
    check(p.returncode == 0, f"chromium failed: {p.stderr.decode(errors='replace')[-2000:]}")
    return p.stdout.decode(errors="replace")


def main(args, tmp):
    src = args.source
    sim, sim_port = start_sim(args.bin, os.path.join(src, "data", "hh-harmless-dev.jsonl"), tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs)
    config = {
        "data_dir": os.path.join(tmp, "state"),
        "api": {"listen": "127.0.0.1:0"},
        "sources": [{"path": os.path.join(logs, "*.jsonl")}],
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft"},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"min_new_labels": 60, "model": {"preset": "tiny"}},
    }
    path = os.path.join(tmp, "config.json")
    json.dump(config, open(path, "w"))
    d, port = start_rlaifd(args.bin, path, tmp)
    base = f"http://127.0.0.1:{port}"
    lines = open(os.path.join(src, "data", "sample-logs", "app.jsonl"), "rb").readlines()[:80]
    with open(os.path.join(logs, "app.jsonl"), "wb") as f:
        f.write(b"".join(lines))
    status = wait_for(lambda: (lambda s: s if s["model"]["live_version"] and
                               s["counts"]["labels"] == 80 else None)(get_json(base + "/v1/status")),
                      240, "a live model and 80 labels", interval=1)
    live = status["model"]["live_version"]
    check(status["model"]["type"] == "ensemble", f"live model type: {status['model']}")

    dom = render(base + "/", tmp)
    check("<title>rlaifd</title>" in dom, "not the status page")
    m = re.search(r'id="state" class="pill (\w+)">(\w+)<', dom)
    check(m and m.group(1) == "running" and m.group(2) == "running",
          f"state pill not rendered as running: {m and m.group(0)}")
    m = re.search(r'id="n-prompts">(\d+)<', dom)
    check(m and int(m.group(1)) == 80, f"prompt count not rendered: {m and m.group(0)}")
    m = re.search(r'id="n-labels">(\d+)<', dom)
    check(m and int(m.group(1)) == 80, f"label count not rendered: {m and m.group(0)}")
    check(live in dom, f"live version {live} not on the page")
    check("<rect" in dom, "no bar in the model history chart")
    # The disk section, filled from /v1/status's "disk".
    m = re.search(r'<table id="disk">(.*?)</table>', dom, re.S)
    check(m and re.search(r"<th>free</th><td>\d+\.\d\d GB of \d+\.\d\d GB</td>", m.group(1)) and
          "off (keeps every record)" in m.group(1),
          f"disk section not rendered: {m and m.group(1)}")
    check("http://" not in dom.split("<body>", 1)[-1].replace(base, ""),
          "page references an external asset")
    check(d.term(timeout=30) == 0, "rlaifd did not stop cleanly")
    sim.term()


if __name__ == "__main__":
    run_main(main)
