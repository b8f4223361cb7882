#!/usr/bin/env python3
"""Writes data/sample-logs/app.jsonl: `simple`-format log lines built from the
first 400 distinct prompts of data/hh-harmless-dev.jsonl, as a serving stack
would log them (prompt, the response it served, model name, timestamp)."""
import json
import os

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
src = os.path.join(root, "data", "hh-harmless-dev.jsonl")
dst = os.path.join(root, "data", "sample-logs", "app.jsonl")
os.makedirs(os.path.dirname(dst), exist_ok=True)
seen = set()
n = 0
with open(src) as f, open(dst, "w") as out:
    for line in f:
        p = json.loads(line)
        if p["prompt"] in seen:
            continue
        seen.add(p["prompt"])
        out.write(json.dumps({"ts": f"2026-11-27T09:{n // 60:02d}:{n % 60:02d}Z",
                              "model": "prod-chat-v3", "prompt": p["prompt"],
                              "response": p["chosen"]}) + "\n")
        n += 1
        if n >= 400:
            break
print(f"wrote {n} lines to {dst}")
