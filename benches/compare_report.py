#!/usr/bin/env python3
"""Helper of benches/compare.sh (standard library only).

Subcommands:
  ports N                  print N free TCP ports on 127.0.0.1
  procstat PID...          print "TICKS PSS_KIB RSS_KIB NPROC" summed over
                           the PIDs and all their descendants (CPU ticks are
                           utime+stime from /proc/PID/stat, USER_HZ; PSS from
                           /proc/PID/smaps_rollup, RSS = VmRSS)
  tree PID...              print the PIDs and all their descendants
  record FILE [--bench F] key=value...
                           append one measurement (a JSON line) to FILE,
                           with temporal-loadgen's JSON report F embedded as "bench"
  meta FILE key=value...   merge strings into the JSON object in FILE
  bench-ok F [N]           exit 0 when temporal-loadgen's report F has no error
                           (and, with N, exactly N ok calls); else print why
  field F PATH             print one field of a JSON file (PATH a.b.c)
  median-calls FILE SECTION TARGET THREADS
                           median calls/s of recorded runs (empty if none)
  report DIR               aggregate DIR/measurements.jsonl (medians over
                           runs) into markdown tables: stdout and DIR/results.md
"""

import json
import os
import socket
import statistics
import sys

# --------------------------------------------------------------------------
# /proc


def _children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        kids.setdefault(int(rest[1]), []).append(int(name))
    return kids


def tree(pids):
    kids = _children_map()
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _ticks(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        stat = f.read()
    rest = stat[stat.rfind(")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(rest[11]) + int(rest[12])


def _kib(path, key):
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def procstat(pids):
    ticks = pss = rss = n = 0
    for pid in tree(pids):
        try:
            ticks += _ticks(pid)
            pss += _kib(f"/proc/{pid}/smaps_rollup", "Pss")
            rss += _kib(f"/proc/{pid}/status", "VmRSS")
            n += 1
        except OSError:
            pass
    return ticks, pss, rss, n


# --------------------------------------------------------------------------
# Records


def _value(text):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def record(argv):
    path, bench, fields = argv[0], None, {}
    rest = argv[1:]
    while rest:
        arg = rest.pop(0)
        if arg == "--bench":
            bench = rest.pop(0)
        else:
            key, _, val = arg.partition("=")
            fields[key] = _value(val)
    if bench:
        try:
            with open(bench, encoding="utf-8") as f:
                fields["bench"] = json.load(f)
        except (OSError, ValueError) as e:
            fields["bench"] = None
            fields["bench_error"] = str(e)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(fields, sort_keys=True) + "\n")


def meta_merge(argv):
    """Merge key=value pairs (strings) into the JSON object in argv[0]."""
    path = argv[0]
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {}
    for arg in argv[1:]:
        key, _, val = arg.partition("=")
        data[key] = val
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)


def load_bench(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def bench_errors(b):
    """Error count of a temporal-loadgen report, and a short description."""
    if not b:
        return None, "no report"
    errs = b.get("errors") or {}
    g = errs.get("grpc_status") or {}
    t = errs.get("transport") or {}
    n = sum(g.values()) + sum(t.values())
    parts = [f"grpc-status {k}: {v}" for k, v in g.items()]
    parts += [f"{k}: {v}" for k, v in t.items()]
    return n, ", ".join(parts)


def bench_ok(argv):
    b = load_bench(argv[0])
    n, why = bench_errors(b)
    if n is None:
        print(why)
        return 1
    if n:
        print(f"{n} errors ({why})")
        return 1
    if len(argv) > 1 and b.get("ok") != int(argv[1]):
        print(f"{b.get('ok')} ok calls, expected {argv[1]}")
        return 1
    return 0


def field(argv):
    b = load_bench(argv[0])
    for k in argv[1].split("."):
        b = b.get(k) if isinstance(b, dict) else None
    print("" if b is None else b)


def read_records(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    except OSError:
        pass
    return out


def median_calls(argv):
    path, section, target, threads = argv
    vals = [
        r["bench"]["calls_per_sec"]
        for r in read_records(path)
        if r.get("section") == section
        and r.get("target") == target
        and str(r.get("threads")) == threads
        and r.get("bench")
        and not bench_errors(r["bench"])[0]
    ]
    print(statistics.median(vals) if vals else "")


# --------------------------------------------------------------------------
# Report

TARGET_ORDER = ["h2c", "direct-tls", "tmp", "tmp-token", "nginx", "haproxy"]
TARGET_NAME = {
    "h2c": "direct h2c (floor)",
    "direct-tls": "direct mTLS to fake",
    "tmp": "temporal-mtls-proxy",
    "tmp-token": "temporal-mtls-proxy, bearer token on every call",
    "nginx": "nginx",
    "haproxy": "HAProxy",
}


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


class Agg:
    """Medians over the runs of one (section, target, threads, n, kind)."""

    def __init__(self, recs):
        self.recs = recs
        self.runs = len(recs)

    def b(self, *path):
        vals = []
        for r in self.recs:
            v = r.get("bench")
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            if isinstance(v, (int, float)):
                vals.append(v)
        return med(vals)

    def f(self, key):
        return med([r.get(key) for r in self.recs if isinstance(r.get(key), (int, float))])

    def errors(self):
        total, whys = 0, []
        for r in self.recs:
            if "bench" not in r:
                continue  # a measurement without a temporal-loadgen report
            n, why = bench_errors(r.get("bench"))
            if n is None:
                total += 1
                whys.append(r.get("bench_error", why))
            elif n:
                total += n
                whys.append(why)
        for r in self.recs:
            if r.get("note"):
                whys.append(str(r["note"]).replace("_", " "))
        return total, "; ".join(sorted(set(whys)))

    def proxy_cpu_us(self):
        # Proxy CPU per call: ticks over the measured run / calls.
        vals = []
        for r in self.recs:
            b = r.get("bench") or {}
            calls = b.get("calls") or 0
            if calls and isinstance(r.get("proxy_ticks"), (int, float)) and r.get("proxy"):
                vals.append(r["proxy_ticks"] / r["hz"] * 1e6 / calls)
        return med(vals)

    def proxy_busy(self):
        vals = []
        for r in self.recs:
            b = r.get("bench") or {}
            if r.get("wall_ns") and isinstance(r.get("proxy_ticks"), (int, float)) and r.get("proxy"):
                vals.append(r["proxy_ticks"] / r["hz"] / (r["wall_ns"] / 1e9))
        return med(vals)

    def upstream_cpu_us(self):
        vals = []
        for r in self.recs:
            b = r.get("bench") or {}
            calls = b.get("calls") or 0
            if calls and isinstance(r.get("fake_ticks"), (int, float)):
                vals.append(r["fake_ticks"] / r["hz"] * 1e6 / calls)
        return med(vals)


def group(recs, section):
    out = {}
    for r in recs:
        if r.get("section") != section:
            continue
        key = (r.get("target"), r.get("threads"), r.get("n"), r.get("kind"))
        out.setdefault(key, []).append(r)
    return {k: Agg(v) for k, v in out.items()}


def targets_in(groups):
    seen = {k[0] for k in groups}
    return [t for t in TARGET_ORDER if t in seen]


def err_cell(agg):
    n, why = agg.errors()
    if not n and not why:
        return "0"
    return f"{n} ({why})" if why else str(n)


def header_md(meta):
    lines = ["# temporal-mtls-proxy vs nginx vs HAProxy (benches/compare.sh)", ""]
    for k, label in (
        ("date", "Date"),
        ("cpu", "CPU"),
        ("kernel", "Kernel"),
        ("proxy_version", "temporal-mtls-proxy"),
        ("nginx_version", "nginx"),
        ("haproxy_version", "HAProxy"),
        ("placement", "Placement"),
        ("durations", "Durations"),
        ("runs", "Runs"),
        ("nofile", "Open files limit"),
        ("notes", "Notes"),
    ):
        if meta.get(k):
            lines.append(f"- {label}: {meta[k]}")
    return "\n".join(lines)


def report(argv):
    outdir = argv[0]
    recs = read_records(os.path.join(outdir, "measurements.jsonl"))
    try:
        with open(os.path.join(outdir, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = {}
    parts = [header_md(meta)]
    ratios = []  # (metric, ours/nginx, ours/haproxy, ours/direct-tls)

    # --- throughput
    g = group(recs, "throughput")
    if g:
        parts.append(
            "## Throughput: unary GetSystemInfo, closed loop\n\n"
            f"{meta.get('throughput_shape', '')}. Medians over runs, each column on its own "
            "(calls/s, p50 and p99 are medians of the runs' values, not of one run). "
            "Proxy CPU = utime+stime of the proxy's processes (nginx: master + workers) over "
            "the run / calls; for the direct rows it is the fake frontend's own CPU (the TLS "
            "or h2c server), in parentheses. Fake CPU = the upstream fake frontend's CPU per "
            "call. Gen CPU = temporal-loadgen's own CPU per call (when gen + fake fill their CPUs, "
            "the generator is the bottleneck). PSS = sum of Pss (smaps_rollup) of the proxy's "
            "processes after the run."
        )
        for threads in sorted({k[1] for k in g}):
            rows, by = [], {}
            for t in targets_in(g):
                a = g.get((t, threads, None, None))
                if not a:
                    continue
                by[t] = a
                direct = t in ("h2c", "direct-tls")
                pcpu = a.upstream_cpu_us() if direct else a.proxy_cpu_us()
                pcpu_s = f"({fmt(pcpu, 1)})" if direct else fmt(pcpu, 1)
                rows.append(
                    [
                        TARGET_NAME[t],
                        fmt(a.b("calls_per_sec")),
                        fmt(a.b("latency_us", "p50")),
                        fmt(a.b("latency_us", "p99")),
                        pcpu_s,
                        "–" if direct else fmt(a.proxy_busy(), 2),
                        "–" if direct else fmt(a.upstream_cpu_us(), 1),
                        fmt(a.b("cpu", "us_per_call"), 1),
                        "–" if direct else fmt((a.f("pss_kib") or 0) / 1024, 1),
                        err_cell(a),
                    ]
                )
            place = meta.get(f"placement_T{threads}", "")
            parts.append(
                f"### {threads} proxy thread(s){': ' + place if place else ''}\n\n"
                + table(
                    [
                        "target",
                        "calls/s",
                        "p50 µs",
                        "p99 µs",
                        "proxy CPU µs/call",
                        "proxy cores busy",
                        "fake CPU µs/call",
                        "gen CPU µs/call",
                        "PSS MiB",
                        "errors",
                    ],
                    rows,
                )
            )
            tok = by.get("tmp-token")
            if tok and by.get("tmp"):
                base = by["tmp"]
                c0, c1 = base.proxy_cpu_us(), tok.proxy_cpu_us()
                parts.append(
                    "Bearer token on every call vs certificate only: calls/s "
                    f"{ratio(tok.b('calls_per_sec'), base.b('calls_per_sec'))}x, proxy CPU "
                    f"{fmt(c1 - c0 if c0 is not None and c1 is not None else None, 1)} µs/call more, "
                    f"p99 {ratio(tok.b('latency_us', 'p99'), base.b('latency_us', 'p99'))}x "
                    "(one token, so after its first call it comes from the proxy's token cache)."
                )
            o = by.get("tmp")
            if o:
                ox = lambda t, fn: ratio(fn(o), fn(by[t])) if t in by else "–"  # noqa: E731
                cps = lambda a: a.b("calls_per_sec")  # noqa: E731
                ratios.append(
                    (
                        f"calls/s, {threads} thread(s)",
                        ox("nginx", cps),
                        ox("haproxy", cps),
                        ox("direct-tls", cps),
                    )
                )
                cpu = lambda a: a.proxy_cpu_us()  # noqa: E731
                ratios.append(
                    (
                        f"proxy CPU µs/call, {threads} thread(s) (vs direct: fake TLS server's CPU/call)",
                        ox("nginx", cpu),
                        ox("haproxy", cpu),
                        ratio(o.proxy_cpu_us(), by["direct-tls"].upstream_cpu_us()) if "direct-tls" in by else "–",
                    )
                )
                p99 = lambda a: a.b("latency_us", "p99")  # noqa: E731
                ratios.append(
                    (
                        f"p99 latency, {threads} thread(s)",
                        ox("nginx", p99),
                        ox("haproxy", p99),
                        ox("direct-tls", p99),
                    )
                )

    # --- latency
    g = group(recs, "latency")
    if g:
        rate = med([r.get("rate") for r in recs if r.get("section") == "latency"])
        direct = g.get(("direct-tls", 1, None, None))
        d50 = direct.b("latency_us", "p50") if direct else None
        d99 = direct.b("latency_us", "p99") if direct else None
        rows, by = [], {}
        for t in targets_in(g):
            a = g.get((t, 1, None, None))
            if not a:
                continue
            by[t] = a
            p50, p99 = a.b("latency_us", "p50"), a.b("latency_us", "p99")
            add50 = p50 - d50 if p50 is not None and d50 is not None else None
            add99 = p99 - d99 if p99 is not None and d99 is not None else None
            rows.append(
                [
                    TARGET_NAME[t],
                    fmt(a.b("calls_per_sec")),
                    fmt(p50),
                    fmt(p99),
                    fmt(a.b("latency_us", "p99_9")),
                    "–" if t in ("h2c", "direct-tls") else fmt(add50),
                    "–" if t in ("h2c", "direct-tls") else fmt(add99),
                    fmt(a.b("open_loop", "late_calls")),
                    fmt(a.b("open_loop", "pacer_lag_us", "mean"), 1),
                    err_cell(a),
                ]
            )
        parts.append(
            "## Latency: open loop, 1 proxy thread\n\n"
            f"Fixed rate {fmt(rate)} calls/s ({meta.get('latency_rate_source', '')}), "
            f"{meta.get('latency_shape', '')}; latency from the scheduled start (no coordinated "
            "omission), medians over runs. Added = this target minus direct mTLS to the fake.\n\n"
            + table(
                [
                    "target",
                    "calls/s",
                    "p50 µs",
                    "p99 µs",
                    "p99.9 µs",
                    "added p50 µs",
                    "added p99 µs",
                    "late calls (>1 ms)",
                    "pacer lag µs",
                    "errors",
                ],
                rows,
            )
        )
        o = by.get("tmp")
        if o and d99 is not None:
            def add_ratio(t):
                # Only when both add latency: within noise of direct, a ratio means nothing.
                if t not in by:
                    return "–"
                mine, theirs = o.b("latency_us", "p99") - d99, by[t].b("latency_us", "p99") - d99
                return ratio(mine, theirs) if mine > 0 and theirs > 0 else "– (p99 within noise of direct)"

            ratios.append(("added p99 latency (open loop)", add_ratio("nginx"), add_ratio("haproxy"), "–"))

    # --- handshakes
    g = group(recs, "handshakes")
    if g:
        rows, by = [], {}
        for t in targets_in(g):
            a = g.get((t, 1, None, None))
            if not a:
                continue
            by[t] = a
            direct = t == "direct-tls"
            cpu = a.upstream_cpu_us() if direct else a.proxy_cpu_us()
            per_core = 1e6 / cpu if cpu else None
            rows.append(
                [
                    TARGET_NAME[t],
                    fmt(a.b("calls_per_sec")),
                    f"({fmt(cpu, 1)})" if direct else fmt(cpu, 1),
                    f"({fmt(per_core)})" if direct else fmt(per_core),
                    "–" if direct else fmt(a.proxy_busy(), 2),
                    fmt(a.b("cpu", "us_per_call"), 1),
                    fmt(a.b("latency_us", "p50")),
                    fmt(a.b("latency_us", "p99")),
                    err_cell(a),
                ]
            )
        parts.append(
            "## Handshakes: a full mTLS handshake per call (ECDSA P-256, no resumption), 1 proxy thread\n\n"
            f"{meta.get('handshake_shape', '')}. Handshakes/s per proxy core = 1e6 / proxy CPU µs "
            "per handshake (what one fully busy proxy core would do); the measured handshakes/s "
            "is bounded by the generator, which does the client half of every handshake. Direct "
            "row: the fake TLS server's CPU, in parentheses.\n\n"
            + table(
                [
                    "target",
                    "handshakes/s",
                    "proxy CPU µs/handshake",
                    "handshakes/s per proxy core",
                    "proxy cores busy",
                    "gen CPU µs/handshake",
                    "p50 µs",
                    "p99 µs",
                    "errors",
                ],
                rows,
            )
        )
        o = by.get("tmp")
        if o:
            cpu = lambda a: a.proxy_cpu_us()  # noqa: E731
            ratios.append(
                (
                    "proxy CPU µs/handshake",
                    ratio(cpu(o), cpu(by["nginx"])) if "nginx" in by else "–",
                    ratio(cpu(o), cpu(by["haproxy"])) if "haproxy" in by else "–",
                    ratio(cpu(o), by["direct-tls"].upstream_cpu_us()) if "direct-tls" in by else "–",
                )
            )
            hs = lambda a: a.b("calls_per_sec")  # noqa: E731
            ratios.append(
                (
                    "handshakes/s (measured)",
                    ratio(hs(o), hs(by["nginx"])) if "nginx" in by else "–",
                    ratio(hs(o), hs(by["haproxy"])) if "haproxy" in by else "–",
                    ratio(hs(o), hs(by["direct-tls"])) if "direct-tls" in by else "–",
                )
            )

    # --- memory
    g = group(recs, "memory")
    if g:
        rows = []
        per = {}
        what = {
            "polls": "open long polls",
            "idle": "idle mTLS connections",
            "unread": "clients not reading a 1 MiB response",
        }
        for kind in ("polls", "idle", "unread"):
            for n in sorted({k[2] for k in g if k[3] == kind}):
                for t in targets_in(g):
                    a = g.get((t, 1, n, kind))
                    if not a:
                        continue
                    base, peak = a.f("base_pss_kib"), a.f("peak_pss_kib")
                    each = a.f("kib_per_item")
                    per[(kind, n, t)] = each
                    rows.append(
                        [
                            TARGET_NAME[t],
                            what[kind],
                            fmt(n),
                            fmt(a.f("conns")),
                            fmt(base / 1024 if base is not None else None, 1),
                            fmt(peak / 1024 if peak is not None else None, 1),
                            fmt(each, 1),
                            fmt(a.f("peak_rss_kib") / 1024 if a.f("peak_rss_kib") is not None else None, 1),
                            err_cell(a),
                        ]
                    )
        parts.append(
            "## Memory per open long poll, per idle connection, per client that stops reading, "
            "1 proxy thread\n\n"
            f"{meta.get('memory_shape', '')}. PSS = sum of Pss from /proc/PID/smaps_rollup over "
            "the proxy's processes (nginx: master + workers); baseline after one call on a fresh "
            "proxy, peak = highest sample while all are open. KiB each = (peak PSS − baseline) / N.\n\n"
            + table(
                [
                    "target",
                    "what",
                    "N",
                    "client connections",
                    "baseline PSS MiB",
                    "PSS with N MiB",
                    "KiB each",
                    "peak VmRSS MiB",
                    "errors / checks",
                ],
                rows,
            )
        )
        for kind, label in (
            ("polls", "KiB per open poll"),
            ("idle", "KiB per idle connection"),
            ("unread", "KiB per client not reading its 1 MiB response"),
        ):
            for n in sorted({k[2] for k in g if k[3] == kind}):
                o = per.get((kind, n, "tmp"))
                if o is None:
                    continue
                ratios.append(
                    (
                        f"{label}, N = {n:,}",
                        ratio(o, per.get((kind, n, "nginx"))),
                        ratio(o, per.get((kind, n, "haproxy"))),
                        "–",
                    )
                )

    # --- streaming
    g = group(recs, "streaming")
    if g:
        mib = lambda a: (a.b("bytes_received_per_sec") or 0) / 1048576  # noqa: E731
        direct = g.get(("direct-tls", 1, None, None))
        rows, by = [], {}
        for t in targets_in(g):
            a = g.get((t, 1, None, None))
            if not a:
                continue
            by[t] = a
            cpu = a.upstream_cpu_us() if t in ("h2c", "direct-tls") else a.proxy_cpu_us()
            rows.append(
                [
                    TARGET_NAME[t],
                    fmt(mib(a), 1),
                    ratio(mib(a), mib(direct)) if direct else "–",
                    fmt(a.b("calls_per_sec"), 1),
                    fmt(a.b("latency_us", "p50")),
                    fmt(a.b("latency_us", "p99")),
                    f"({fmt(cpu)})" if t in ("h2c", "direct-tls") else fmt(cpu),
                    fmt(a.b("cpu", "us_per_call")),
                    err_cell(a),
                ]
            )
        parts.append(
            "## Streaming: 1 MiB echo messages, 1 proxy thread\n\n"
            f"{meta.get('streaming_shape', '')}. MiB/s = echoed message bytes received per second "
            "(the same amount is sent). CPU columns per 1 MiB call; direct rows: the fake's own CPU.\n\n"
            + table(
                [
                    "target",
                    "MiB/s",
                    "vs direct mTLS",
                    "calls/s",
                    "p50 µs",
                    "p99 µs",
                    "proxy CPU µs/MiB",
                    "gen CPU µs/MiB",
                    "errors",
                ],
                rows,
            )
        )
        o = by.get("tmp")
        if o:
            ratios.append(
                (
                    "streaming MiB/s",
                    ratio(mib(o), mib(by["nginx"])) if "nginx" in by else "–",
                    ratio(mib(o), mib(by["haproxy"])) if "haproxy" in by else "–",
                    ratio(mib(o), mib(direct)) if direct else "–",
                )
            )

    if ratios:
        parts.append(
            "## Ratios: temporal-mtls-proxy / other\n\n"
            "Above 1 means more for temporal-mtls-proxy: better for calls/s, handshakes/s and "
            "MiB/s, worse for CPU, latency and memory.\n\n"
            + table(
                ["metric", "ours / nginx", "ours / HAProxy", "ours / direct mTLS"],
                [list(r) for r in ratios],
            )
        )

    text = "\n\n".join(parts) + "\n"
    with open(os.path.join(outdir, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "ports":
        socks = []
        for _ in range(int(argv[0])):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
        for s in socks:
            s.close()
        return 0
    if cmd == "procstat":
        print(*procstat([int(p) for p in argv]))
        return 0
    if cmd == "tree":
        print(*tree([int(p) for p in argv]))
        return 0
    if cmd == "record":
        record(argv)
        return 0
    if cmd == "meta":
        meta_merge(argv)
        return 0
    if cmd == "bench-ok":
        return bench_ok(argv)
    if cmd == "field":
        field(argv)
        return 0
    if cmd == "median-calls":
        median_calls(argv)
        return 0
    if cmd == "report":
        return report(argv)
    sys.stderr.write(f"unknown subcommand {cmd}\n{__doc__}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
