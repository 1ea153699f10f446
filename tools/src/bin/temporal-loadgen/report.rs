//! The text report (without `--json`), from the JSON one.

use serde_json::Value;

/// The human-readable report of a JSON report.
pub(crate) fn text_report(r: &Value) -> String {
    let mut out = String::new();
    let f = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    out.push_str(&format!(
        "target {} ({}), mode {}, {}\n",
        f(&r["target"]),
        if r["tls"] == true { "mTLS" } else { "h2c" },
        f(&r["mode"]),
        r["method"].as_str().unwrap_or(""),
    ));
    out.push_str(&format!(
        "  {} connections x {} streams, {} threads, request {} bytes\n",
        f(&r["connections"]),
        f(&r["concurrency"]),
        f(&r["threads"]),
        f(&r["request_bytes"]),
    ));
    out.push_str(&format!(
        "calls     {} in {} s: {} calls/s, {} ok\n",
        f(&r["calls"]),
        f(&r["elapsed_s"]),
        f(&r["calls_per_sec"]),
        f(&r["ok"]),
    ));
    out.push_str(&format!(
        "errors    grpc-status {}  transport {}\n",
        r["errors"]["grpc_status"], r["errors"]["transport"]
    ));
    let l = &r["latency_us"];
    out.push_str(&format!(
        "latency   µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})\n",
        f(&l["p50"]),
        f(&l["p90"]),
        f(&l["p99"]),
        f(&l["p99_9"]),
        f(&l["max"]),
        f(&l["mean"]),
    ));
    out.push_str(&format!(
        "bytes/s   sent {}  received {}  (gRPC message bytes)\n",
        f(&r["bytes_sent_per_sec"]),
        f(&r["bytes_received_per_sec"]),
    ));
    let c = &r["cpu"];
    out.push_str(&format!(
        "generator cpu user {} s  sys {} s  = {} µs/call, {} cores busy\n",
        f(&c["user_s"]),
        f(&c["sys_s"]),
        f(&c["us_per_call"]),
        f(&c["utilization"]),
    ));
    if !r["open_loop"].is_null() {
        let o = &r["open_loop"];
        out.push_str(&format!(
            "open loop {} calls/s scheduled: {} calls, {} sent more than 1 ms late, \
             {} not sent (more than 1 s behind at the end)\n\
             pacer     handed out calls late by mean {} µs, max {} µs (included in latency)\n",
            f(&o["rate"]),
            f(&o["scheduled"]),
            f(&o["late_calls"]),
            f(&o["unsent"]),
            f(&o["pacer_lag_us"]["mean"]),
            f(&o["pacer_lag_us"]["max"]),
        ));
    }
    if !r["hold"].is_null() {
        let h = &r["hold"];
        out.push_str(&format!(
            "hold      {} polls for {} s: peak open {}, open at end {}, completed early {}\n",
            f(&h["hold_calls"]),
            f(&h["hold_for_s"]),
            f(&h["peak_open"]),
            f(&h["open_at_end"]),
            f(&h["completed_early"]),
        ));
    }
    if !r["idle"].is_null() {
        let i = &r["idle"];
        out.push_str(&format!(
            "idle      {} of {} connections opened in {} s ({} dialing at once), \
             held {} s: open at end {}\n",
            f(&i["opened"]),
            f(&r["connections"]),
            f(&i["open_s"]),
            f(&i["dialers"]),
            f(&i["hold_for_s"]),
            f(&i["open_at_end"]),
        ));
    }
    out
}
