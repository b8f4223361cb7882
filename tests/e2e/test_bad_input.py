"""Hostile input against the real rlaifd + rlaif-sim (issue 7, "Bad input").

Log side: good lines interleaved with malformed JSON, invalid UTF-8, raw and
escaped NUL bytes, a 50 MiB line, 10,000-deep nesting, huge numbers and wrong
types, in a `simple` and an `openai-chat` source. Every good line (including
the hostile-but-valid ones: huge numbers where a number is allowed) must be
stored exactly once, and every bad line counted under its reason in
rlaif_ingest_rejected_total{reason}. The store keeps the dead letters of the
newest `store.max_rejected_lines` (here half of the bad lines): the export
has exactly that many, and rlaif_ingest_rejected_pruned_total the rest.

API side: invalid/deep/oversized JSON bodies, wrong types, too many items,
bad and missing bearer tokens, path traversal attempts on model import,
promote and export, unknown routes and garbage HTTP methods sent on raw
sockets. Each gets its documented status, an error body where HTTP allows one,
and is counted in rlaif_http_rejected_total{reason}. The daemon stays up
throughout, serves a score at the end, and never logs a token.

Prints a JSON summary line ("bad_input_summary") for docs/RELIABILITY.md.
"""
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

from rlaif_e2e import (check, check_alive, export, get_json, http, run_main, start_rlaifd,
                       start_sim, wait_for)

TOKEN = "bad-input-admin-token-5f2c9a"


def metric_values(text, name):
    """{label string: value} for every sample of the metric `name`."""
    out = {}
    for line in text.splitlines():
        m = re.match(re.escape(name) + r"(\{.*\})?\s+(\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def by_label(values, label):
    """Sums samples by the value of one label."""
    out = {}
    for labels, v in values.items():
        m = re.search(label + r'="([^"]*)"', labels)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + v
    return out


def raw_request(port, data, timeout=10):
    """Sends raw bytes, returns the status code of the reply (0 when the
    server closed the connection without one)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may answer and close before reading it all
        reply = b""
        try:
            while b"\r\n" not in reply:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            pass
        m = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
        return int(m.group(1)) if m else 0
    finally:
        s.close()


def log_corpus():
    """(good prompts, [(line bytes, reason or None)]) for the `simple` source."""
    good, lines = [], []

    def ok(obj, prompt):
        good.append(prompt)
        lines.append((json.dumps(obj).encode(), None))

    def bad(raw, reason):
        lines.append((raw, reason))

    n = 0

    def g():
        nonlocal n
        n += 1
        p = f"bad-input e2e good line {n}: how do I keep a sourdough starter alive?"
        ok({"prompt": p, "response": "feed it daily"}, p)

    g()
    bad(b'{"prompt": "unterminated', "bad_json")
    bad(b"this is not json at all", "bad_json")
    bad(b'{"prompt": "x",}', "bad_json")
    g()
    bad(b'{"prompt": "invalid \xff\xfe utf-8"}', "invalid_utf8")
    bad(b'{"prompt": "overlong \xc0\xaf slash"}', "invalid_utf8")
    bad(b'{"prompt": "surrogate \xed\xa0\x80 in utf-8"}', "invalid_utf8")
    bad(b'{"prompt": "truncated \xe6\x97"}', "invalid_utf8")
    g()
    bad(b'{"prompt": "raw nul \x00 byte"}', "nul_byte")
    bad(b'{"prompt": "escaped nul \\u0000 byte"}', "nul_byte")
    bad(b'{"prompt": "lone surrogate escape \\ud800"}', "bad_json")
    g()
    # 50 MiB in one line, valid JSON: over max_line_bytes (1 MiB).
    bad(b'{"prompt": "' + b"A" * (50 << 20) + b'"}', "line_too_long")
    g()
    deep = b"[" * 10000 + b"]" * 10000
    bad(b'{"prompt": "deep", "x": ' + deep + b"}", "too_deep")
    bad(deep, "too_deep")
    bad(b'{"a":' * 10000 + b"1" + b"}" * 10000, "too_deep")
    g()
    # Numbers beyond a double's range are not JSON a parser can represent:
    # the whole line is bad_json ("number overflow"), wherever they are.
    bad(b'{"prompt": 1e999999}', "bad_json")
    bad(b'{"prompt": "x", "metadata": {"n": -1e999999}}', "bad_json")
    bad(b'{"prompt": 123456789012345678901234567890123456789}', "bad_prompt_type")
    # Huge but representable numbers where a number is allowed are fine.
    p = "bad-input e2e huge numbers in metadata and timestamp"
    ok({"prompt": p}, p)
    lines[-1] = (b'{"prompt": "' + p.encode() +
                 b'", "timestamp": 1.7e308, "metadata": {"n": -1e300, '
                 b'"big": 123456789012345678901234567890, "neg": -9223372036854775809}}', None)
    g()
    bad(b'{"prompt": ["a", "list"]}', "bad_prompt_type")
    bad(b'{"prompt": {"an": "object"}}', "bad_prompt_type")
    bad(b'{"prompt": null}', "bad_prompt_type")
    bad(b'{"prompt": "x", "response": 5}', "bad_response_type")
    bad(b'{"prompt": "x", "model": {"name": "m"}}', "bad_model_type")
    bad(b'{"response": "no prompt"}', "missing_prompt")
    bad(b'{"prompt": "   \\t  "}', "empty_prompt")
    bad(b'[{"prompt": "an array"}]', "not_object")
    bad(b'"just a string"', "not_object")
    bad(b"12345", "not_object")
    g()
    # Unicode that is valid must survive untouched.
    p = "bad-input e2e unicode: \u65e5\u672c\u8a9e \U0001f642 \u00fc\u00df"
    ok({"prompt": p}, p)
    g()
    return good, lines


def chat_corpus():
    good, lines = [], []
    for i in range(3):
        p = f"bad-input e2e chat good {i}: what is a B-tree?"
        good.append(p)
        lines.append((json.dumps({"request": {"model": "m", "messages": [
            {"role": "user", "content": p}]}, "response": {"choices": [
                {"message": {"content": "a balanced tree"}}]}}).encode(), None))
        if i == 0:
            lines.append((b'{"request": {"messages": "not a list"}}', "bad_messages"))
            lines.append((b'{"request": {"messages": [{"role": "assistant", "content": "hi"}]}}',
                          "no_user_turn"))
            lines.append((b'{"request": {"messages": [{"content": "no role"}]}}', "bad_messages"))
        if i == 1:
            lines.append((b'{"request": "a string"}', "bad_prompt_type"))
            lines.append((b'{"request": {"messages": [{"role": "user", "content": "q"}]}, '
                          b'"response": {"choices": "x"}}', "bad_response_type"))
            lines.append((b'{"no_request": 1}', "missing_prompt"))
    return good, lines


def train_model(bin_dir, src, tmp, out_dir):
    pairs = os.path.join(tmp, "pairs.jsonl")
    with open(os.path.join(src, "data", "hh-harmless-dev.jsonl")) as f, open(pairs, "w") as o:
        for _, line in zip(range(120), f):
            o.write(line)
    p = subprocess.run([os.path.join(bin_dir, "rlaifd"), "train", "--pairs", pairs, "--out",
                        out_dir, "--device", "cpu", "--model-type", "linear", "--seed", "1"],
                       capture_output=True, timeout=600)
    check(p.returncode == 0, f"offline training failed: {p.stderr[-2000:]!r}")


def main(args, tmp):
    src = args.source
    sim, sim_port = start_sim(args.bin, os.path.join(src, "data", "hh-harmless-dev.jsonl"), tmp)
    logs = os.path.join(tmp, "logs")
    os.makedirs(os.path.join(logs, "chat"))
    state = os.path.join(tmp, "state")
    # A checkpoint trained offline, imported and promoted below, so that the
    # scoring routes validate their bodies (without a model they answer 503 first).
    train_model(args.bin, src, tmp, os.path.join(state, "models", "vbad1"))
    good, lines = log_corpus()
    chat_good, chat_lines = chat_corpus()
    n_bad = sum(1 for _, reason in lines + chat_lines if reason)
    keep = n_bad // 2
    config = {
        "store": {"max_rejected_lines": keep},
        "data_dir": state,
        "api": {"listen": "127.0.0.1:0", "admin_token_env": "RLAIF_TOKEN",
                "max_body_bytes": 1 << 20},
        "sources": [{"path": os.path.join(logs, "*.jsonl"), "format": "simple"},
                    {"path": os.path.join(logs, "chat", "*.jsonl"), "format": "openai-chat"}],
        "generator": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-sft",
                      "concurrency": 2},
        "judge": {"base_url": f"http://127.0.0.1:{sim_port}/v1", "model": "sim-judge",
                  "concurrency": 2, "dimensions": [{"name": "harmlessness"}]},
        "trainer": {"min_new_labels": 1000000, "interval_s": 0},
    }
    config_path = os.path.join(tmp, "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    env = dict(os.environ, RLAIF_TOKEN=TOKEN)
    d, port = start_rlaifd(args.bin, config_path, tmp, env)
    base = f"http://127.0.0.1:{port}"

    # ---- hostile log lines -------------------------------------------------
    with open(os.path.join(logs, "app.jsonl"), "wb") as f:
        for raw, _ in lines:
            f.write(raw + b"\n")
        f.write(b"\n   \n")  # blank lines are skipped, not rejected
    with open(os.path.join(logs, "chat", "chat.jsonl"), "wb") as f:
        for raw, _ in chat_lines:
            f.write(raw + b"\n")
    expected = {}
    for _, reason in lines + chat_lines:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    check(n_bad == sum(expected.values()), "bad lines miscounted")
    all_good = good + chat_good

    def ingested():
        s = get_json(base + "/v1/status")
        return s if all(src["lag_bytes"] == 0 for src in s["sources"]) and \
            len(s["sources"]) == 2 and s["counts"]["prompts"] >= len(all_good) else None
    status = wait_for(ingested, 120, "every log line consumed")  # (last status in the error)
    check_alive(d, "rlaifd died on hostile log lines")
    code, body = export(base, "prompts", token=TOKEN)
    check(code == 200, f"export -> {code}")
    stored = [json.loads(l)["prompt"] for l in body.decode().splitlines() if l.strip()]
    check(sorted(stored) == sorted(all_good),
          f"stored prompts differ from the good lines: missing "
          f"{sorted(set(all_good) - set(stored))[:5]}, extra {sorted(set(stored) - set(all_good))[:5]}, "
          f"{len(stored)} stored vs {len(all_good)} good")
    metrics = http("GET", base + "/metrics")[1].decode()
    rejected = by_label(metric_values(metrics, "rlaif_ingest_rejected_total"), "reason")
    # Every reason is exported from the start; those no line hit stay at 0.
    check({k: v for k, v in rejected.items() if v} == {k: float(v) for k, v in expected.items()},
          f"rlaif_ingest_rejected_total by reason {rejected} != expected {expected}")
    check(set(expected) <= set(rejected) and "bad_pair" in rejected,
          f"rlaif_ingest_rejected_total lacks reasons at 0: {sorted(rejected)}")
    code, body = export(base, "dead", token=TOKEN)
    check(code == 200, f"export dead -> {code}")
    kept = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
    kept = [d for d in kept if d["stage"] == "ingest"]
    pruned = sum(metric_values(metrics, "rlaif_ingest_rejected_pruned_total").values())
    check(len(kept) == keep and pruned == n_bad - keep,
          f"{len(kept)} rejected lines kept (bound {keep}) and {pruned} pruned, of {n_bad}")
    check(d.stdout_text().count("the store keeps the newest store.max_rejected_lines") == 1,
          "the first prune of rejected lines is not logged once")
    print(f"log lines: {len(all_good)} good stored, {n_bad} bad rejected by reason {expected}; "
          f"{len(kept)} kept as dead letters, {pruned:.0f} pruned (store.max_rejected_lines)")

    # ---- hostile API requests ----------------------------------------------
    auth = {"Authorization": f"Bearer {TOKEN}"}
    code, body = http("POST", base + "/v1/models/import", {"version": "vbad1"}, auth)
    check(code == 201, f"import vbad1 -> {code} {body[:300]!r}")
    code, body = http("POST", base + "/v1/models/vbad1/promote", {}, auth)
    check(code == 200, f"promote vbad1 -> {code} {body[:300]!r}")

    api_expected = {}
    tried = 0

    def expect(method, path, body, want_code, want_type, headers=None):
        nonlocal tried
        tried += 1
        code, resp = http(method, base + path, body, headers)
        check(code == want_code, f"{method} {path} -> {code} (want {want_code}): {resp[:300]!r}")
        err = json.loads(resp)["error"]
        check(err["type"] == want_type and err["code"] == want_code and err["message"],
              f"{method} {path}: error body {err}")
        api_expected[want_type] = api_expected.get(want_type, 0) + 1

    deep_body = b'{"prompt": "p", "response": ' + b"[" * 10000 + b"]" * 10000 + b"}"
    expect("POST", "/v1/score", b"{not json", 400, "invalid_json")
    expect("POST", "/v1/score", b'{"prompt": "\xff\xfe", "response": "r"}', 400, "invalid_json")
    expect("POST", "/v1/score", b'{"prompt": "nul \x00", "response": "r"}', 400, "invalid_json")
    expect("POST", "/v1/score", b"", 400, "invalid_json")
    expect("POST", "/v1/score", b"[1, 2, 3]", 400, "invalid_request")
    expect("POST", "/v1/score", b"1e999999", 400, "invalid_json")  # number overflow
    expect("POST", "/v1/score", b"12345", 400, "invalid_request")
    expect("POST", "/v1/score", deep_body, 400, "too_deep")
    expect("POST", "/get_reward", b'{"query": ' + b"[" * 10000 + b"]" * 10000 + b"}", 400,
           "too_deep")
    expect("POST", "/v1/score", {"prompt": 5, "response": "r"}, 400, "invalid_request")
    expect("POST", "/v1/score", {"prompt": "p", "response": None}, 400, "invalid_request")
    expect("POST", "/v1/score", {"items": "x"}, 400, "invalid_request")
    expect("POST", "/v1/score", {"items": [1]}, 400, "invalid_request")
    expect("POST", "/v1/score", {"items": [{"prompt": "p", "response": "r"}] * 257}, 413,
           "too_large")
    expect("POST", "/v1/score", {"prompt": "p" * (300 << 10), "response": "r"}, 413, "too_large")
    expect("POST", "/v1/compare", {"prompt": "p", "a": 1, "b": "x"}, 400, "invalid_request")
    expect("POST", "/get_reward", {"query": "x"}, 400, "invalid_request")
    expect("POST", "/get_reward", {"query": ["a"], "prompts": ["a", "b"]}, 400, "invalid_request")
    expect("POST", "/get_reward", {"query": [1e308, None]}, 400, "invalid_request")
    expect("GET", "/v1/events?limit=99999999999999999999", None, 400, "invalid_request")
    expect("GET", "/v1/models?offset=-1", None, 400, "invalid_request")
    expect("GET", "/v1/export?kind=../../../etc/passwd", None, 400, "invalid_request", auth)
    expect("GET", "/v1/export?kind=prompts", None, 401, "unauthorized")  # stored traffic: admin only
    # Authentication: missing, wrong, other schemes, a prefix of the token, the token + 1 byte.
    for h in ({}, {"Authorization": "Bearer wrong-token-1234"}, {"Authorization": "Basic dXNlcjpw"},
              {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"Bearer {TOKEN}x"},
              {"Authorization": "Bearer "}, {"Authorization": TOKEN}):
        expect("POST", "/v1/pause", {}, 401, "unauthorized", h)
    expect("POST", "/v1/models/import", {"version": "vbad1"}, 401, "unauthorized")
    # Path traversal on model import/promote: nothing outside data_dir/models.
    for v in ("../../../../etc", "..", "vbad1/../../x", "/etc/passwd", "..%2F..%2Fetc",
              "v\u0000x", "C:\\\\x", "." * 200):
        expect("POST", "/v1/models/import", {"version": v}, 400, "invalid_argument", auth)
    expect("POST", "/v1/models/import", {"version": ["vbad1"]}, 400, "invalid_request", auth)
    expect("POST", "/v1/models/../promote", {}, 404, "not_found", auth)
    expect("POST", "/v1/models/%2e%2e%2f%2e%2e%2fetc/promote", {}, 404, "not_found", auth)
    expect("POST", "/v1/labels", {"pair_id": 1, "dimension": "harmlessness", "winner": "a"}, 400,
           "invalid_request", auth)
    expect("POST", "/v1/labels", {"pair_id": "x", "dimension": "harmlessness", "winner": "maybe"},
           400, "invalid_request", auth)
    expect("GET", "/../../../../etc/passwd", None, 404, "not_found")
    expect("GET", "/v1/nope", None, 404, "not_found")
    # httplib refuses these before any handler: a body over api.max_body_bytes ...
    raw_codes = {}

    def raw(data, want, reason):
        nonlocal tried
        tried += 1
        code = raw_request(port, data)
        check(code == want, f"raw request {data[:60]!r} -> {code} (want {want})")
        if reason:
            api_expected[reason] = api_expected.get(reason, 0) + 1
        raw_codes[reason or "closed"] = raw_codes.get(reason or "closed", 0) + 1

    big = 2 << 20
    raw(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(big).encode() + b"\r\n\r\n" + b"{" + b" " * (big - 1), 413,
        "body_too_large")
    # ... garbage methods, request lines and headers.
    raw(b"FOO /v1/status HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_http_request")
    raw(b"GET\r\n\r\n", 400, "bad_http_request")
    raw(b"\x00\x01\x02\x03 garbage \xff\xfe\r\n\r\n", 400, "bad_http_request")
    raw(b"GET /v1/status HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_http_request")
    raw(b"DELETE /v1/status HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found")
    raw(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long")
    raw(b"GET /livez HTTP/1.1\r\n" + b"X-Junk: " + b"j" * 10000 + b"\r\n\r\n", 400,
        "bad_http_request")  # a header line over httplib's 8 KiB
    # `curl -X POST` without -d: no body, no length. httplib waits for one
    # until its 30 s read timeout, then the error says what was missing.
    s = socket.create_connection(("127.0.0.1", port), timeout=45)
    try:
        s.sendall(b"POST /v1/pause HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while not reply.rstrip().endswith(b"}}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    finally:
        s.close()
    tried += 1
    api_expected["bad_http_request"] = api_expected.get("bad_http_request", 0) + 1
    check(reply.startswith(b"HTTP/1.1 400") and b"Content-Length" in reply.split(b"\r\n\r\n", 1)[-1],
          f"a bodiless POST must say what is missing: {reply[:400]!r}")

    # A JSON body over 8 KiB sent as a form (curl -d's default content type,
    # urllib's too): httplib's form limit, not api.max_body_bytes; the error
    # says which header to send.
    form_body = json.dumps({"prompt": "p", "response": "word " * 2000}).encode()
    code, reply = 0, b""
    try:
        with urllib.request.urlopen(urllib.request.Request(
                base + "/v1/score", data=form_body, method="POST",
                headers={"Content-Type": "application/x-www-form-urlencoded"}), timeout=30) as r:
            code, reply = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, reply = e.code, e.read()
    tried += 1
    api_expected["body_too_large"] = api_expected.get("body_too_large", 0) + 1
    check(code == 413 and b"Content-Type: application/json" in reply,
          f"a 10 KB form body must be told to send JSON: {code} {reply[:400]!r}")

    check_alive(d, "rlaifd died on hostile API requests")
    metrics = http("GET", base + "/metrics")[1].decode()
    http_rejected = by_label(metric_values(metrics, "rlaif_http_rejected_total"), "reason")
    for reason, n in api_expected.items():
        check(http_rejected.get(reason, 0) == n,
              f"rlaif_http_rejected_total{{reason={reason!r}}} = {http_rejected.get(reason)}, "
              f"want {n} (all: {metric_values(metrics, 'rlaif_http_rejected_total')})")
    print(f"API requests: {tried} hostile, counted by reason {http_rejected}")

    # Still healthy: scores, pauses with the right token, nothing secret logged.
    code, body = http("POST", base + "/v1/score", {"prompt": "hi", "response": "hello"})
    check(code == 200 and json.loads(body)["model_version"] == "vbad1", f"score -> {code} {body!r}")
    code, _ = http("POST", base + "/v1/pause", {}, auth)
    check(code == 200, f"pause with the token -> {code}")
    check(get_json(base + "/livez")["status"] == "alive", "livez")
    # Exit status 0: a clean stop, and, with the sanitized binaries
    # (scripts/sanitize.sh asan), no leak or other report at exit.
    rc = d.term(timeout=60)
    check(rc == 0, f"rlaifd exited with {rc} on SIGTERM: " + d.stderr_tail())
    logs_text = d.stderr_tail(10 << 20) + d.stdout_text()
    for secret in (TOKEN, "wrong-token-1234", "dXNlcjpw"):
        check(secret not in logs_text, f"a bearer token appears in rlaifd's logs: {secret}")
    print("bad_input_summary " + json.dumps({
        "log_lines_good": len(all_good), "log_lines_bad": n_bad, "log_rejected_by_reason": expected,
        "api_requests_hostile": tried, "api_rejected_by_reason": api_expected}))


if __name__ == "__main__":
    run_main(main)
