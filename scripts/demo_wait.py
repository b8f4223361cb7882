#!/usr/bin/env python3
"""Polls rlaifd's /v1/status, printing progress, until a model is live.
Prints the live version on the last line; exits 1 after the timeout."""
import json
import sys
import time
import urllib.request

url = sys.argv[1]
timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 300
t0 = time.time()
while time.time() - t0 < timeout:
    time.sleep(2)
    try:
        with urllib.request.urlopen(url + "/v1/status", timeout=5) as r:
            s = json.load(r)
    except OSError as e:
        print(f"demo: status unavailable ({e})", flush=True)
        continue
    c, t = s["counts"], s["training"]
    training = (f"running {100 * t['progress']:.0f}%" if t["running"]
                else (t["last"]["outcome"] or "waiting for labels"))
    print(f"demo: {time.time() - t0:5.0f}s  prompts={c['prompts']} pairs={c['pairs']} "
          f"labels={c['labels']}  training: {training}", flush=True)
    if s["model"]["live_version"]:
        print(s["model"]["live_version"])
        sys.exit(0)
print(f"demo: no live model after {timeout:.0f} s", file=sys.stderr)
sys.exit(1)
