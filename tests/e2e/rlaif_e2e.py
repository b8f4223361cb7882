"""Helpers for the end-to-end tests: start the real binaries, talk HTTP."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--source", required=True)
    return ap.parse_args()


class Fail(Exception):
    pass


class Gone(Fail):
    """A process the test needs has exited: wait_for gives up at once."""


class Skip(Exception):
    """Raised when the test cannot run here (says why); exits 77, which ctest reports as skipped."""


SKIP_EXIT_CODE = 77


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def check_alive(proc, msg):
    """Fails at once, also inside a wait_for predicate, if `proc` has exited."""
    if not proc.alive():
        raise Gone(msg + ": " + proc.stderr_tail())


def http(method, url, body=None, headers=None, timeout=30):
    """Returns (status, body bytes)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# The admin token every rlaifd started by start_rlaifd has, unless the test's
# own env sets RLAIF_TOKEN.
E2E_TOKEN = "e2e-admin-token-3b9f"


def export(base, kind, token=E2E_TOKEN, timeout=60):
    """GET /v1/export?kind=KIND, an admin route: (status, body bytes)."""
    return http("GET", f"{base}/v1/export?kind={kind}",
                headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


def get_json(url, timeout=30):
    status, body = http("GET", url, timeout=timeout)
    check(status == 200, f"GET {url} -> {status}: {body[:300]!r}")
    return json.loads(body)


def wait_for(pred, timeout, what, interval=0.25):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Gone:
            raise
        except (OSError, Fail, ValueError) as e:  # not up yet
            last = e
        time.sleep(interval)
    raise Fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


_PROCS = []  # every child started, killed at the end of run_main so none outlives the test


class Proc:
    """A child process whose stdout/stderr go to files in `logdir`."""

    def __init__(self, name, argv, logdir, env=None):
        self.name = name
        self.out_path = os.path.join(logdir, f"{name}.out")
        self.err_path = os.path.join(logdir, f"{name}.err")
        self.out = open(self.out_path, "ab")
        self.err = open(self.err_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
                                  env=env)
        _PROCS.append(self)

    def alive(self):
        return self.p.poll() is None

    def kill9(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=30)

    def term(self, timeout=30):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout=timeout)

    def stdout_text(self):
        self.out.flush()
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stderr_tail(self, n=4000):
        self.err.flush()
        with open(self.err_path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")


def write_prompt_lines(src, path, n, numbered=True):
    """Writes `n` simple-format log lines to `path`, prompts from the sample
    logs (numbered " [i]" so that repeats are distinct prompts)."""
    prompts = [json.loads(l)["prompt"] for l in
               open(os.path.join(src, "data", "sample-logs", "app.jsonl"), encoding="utf-8")]
    with open(path, "wb") as f:
        for i in range(n):
            p = prompts[i % len(prompts)] + (f" [{i}]" if numbered else "")
            f.write((json.dumps({"prompt": p}) + "\n").encode())


def start_sim(bin_dir, pairs, tmp, extra=()):
    port_file = os.path.join(tmp, "sim.port")
    if os.path.exists(port_file):
        os.remove(port_file)
    sim = Proc("rlaif-sim", [os.path.join(bin_dir, "rlaif-sim"), "--listen", "127.0.0.1:0",
                             "--pairs", pairs, "--seed", "7", "--port-file", port_file, *extra], tmp)

    def port():
        check_alive(sim, "rlaif-sim exited")
        if os.path.exists(port_file):
            txt = open(port_file).read().strip()
            if txt:
                return int(txt.rsplit(":", 1)[-1])
        return None

    p = wait_for(port, 60, "rlaif-sim to listen")
    return sim, p


def start_rlaifd(bin_dir, config_path, tmp, env=None):
    env = dict(os.environ if env is None else env)
    env.setdefault("RLAIF_TOKEN", E2E_TOKEN)
    # Where this start's output begins (rlaifd.out is appended to by every
    # start), taken before the process exists: it may print at once.
    out_path = os.path.join(tmp, "rlaifd.out")
    start = os.path.getsize(out_path) if os.path.exists(out_path) else 0
    d = Proc("rlaifd", [os.path.join(bin_dir, "rlaifd"), "run", "--config", config_path], tmp,
             env=env)

    def port():
        check_alive(d, "rlaifd exited")
        d.out.flush()
        with open(out_path, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            if line.startswith("rlaifd ready on port "):
                return int(line.split()[-1])
        return None

    p = wait_for(port, 60, "rlaifd to listen")
    return d, p


def run_main(fn):
    args = parse_args()
    tmp = tempfile.mkdtemp(prefix="rlaif-e2e-")
    ok = False
    skipped = None
    try:
        fn(args, tmp)
        ok = True
    except Fail as e:
        print(f"FAIL: {e}", file=sys.stderr)
    except Skip as e:
        ok = True
        skipped = str(e)
    finally:
        for proc in _PROCS:
            if proc.alive():
                proc.p.kill()
                proc.p.wait(timeout=30)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"(logs kept in {tmp})", file=sys.stderr)
            for name in ("rlaifd.err", "rlaif-sim.err"):
                path = os.path.join(tmp, name)
                if os.path.exists(path):
                    print(f"--- tail of {name} ---", file=sys.stderr)
                    print(open(path, "rb").read()[-3000:].decode(errors="replace"), file=sys.stderr)
    if skipped is not None:
        print(f"SKIPPED: {skipped}")
        sys.exit(SKIP_EXIT_CODE)
    print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
    sys.exit(0 if ok else 1)
