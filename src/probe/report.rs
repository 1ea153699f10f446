//! The probe's report as people read it (one line per check, its notes
//! indented below) and as scripts do (JSON: the [`Report`] as it is).

use std::fmt::Write;

use super::{Check, Report};

/// Width of the check's name column.
const NAME_WIDTH: usize = 22;

fn name(check: &Check) -> String {
    match &check.namespace {
        Some(ns) if check.name != "long_poll" => format!("{} {ns}", check.name),
        _ => check.name.replace('_', " "),
    }
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let how = match &report.server_name {
        Some(name) => format!("TLS, server name {name}"),
        None => "plaintext h2c".to_owned(),
    };
    let _ = writeln!(out, "Probe of {} ({how})\n", report.address);
    for check in &report.checks {
        let _ = writeln!(
            out,
            "{}  {:<NAME_WIDTH$} {}",
            check.outcome.label(),
            name(check),
            check.reason
        );
        for note in &check.notes {
            let _ = writeln!(out, "{:indent$}{note}", "", indent = 6 + NAME_WIDTH + 1);
        }
    }
    let s = &report.summary;
    let verdict = if report.ok { "OK" } else { "FAILED" };
    let _ = write!(
        out,
        "\n{verdict}: {} failed, {} warning(s), {} passed, {} skipped ({:.1} s)",
        s.fail, s.warn, s.pass, s.skip, report.seconds
    );
    out
}

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| {
        // A report is plain data; serde_json cannot fail on it, but never
        // print nothing.
        format!("{{\"ok\": false, \"error\": {:?}}}", e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Outcome, Summary};
    use super::*;

    #[test]
    fn the_text_report_has_a_line_per_check_and_a_verdict() {
        let report = Report {
            address: "127.0.0.1:7443".into(),
            server_name: Some("localhost".into()),
            plaintext: false,
            ok: false,
            summary: Summary {
                pass: 1,
                warn: 0,
                fail: 1,
                skip: 0,
            },
            seconds: 1.25,
            checks: vec![
                Check::new("tls", Outcome::Pass, "TLS 1.3").notes(vec!["[0] CN=localhost".into()]),
                Check::new("access", Outcome::Fail, "DescribeNamespace refused")
                    .namespace("billing"),
            ],
        };
        let text = text(&report);
        assert!(text.starts_with("Probe of 127.0.0.1:7443 (TLS, server name localhost)\n"));
        assert!(
            text.contains("\nPASS  tls                    TLS 1.3\n"),
            "{text}"
        );
        assert!(
            text.contains("\nFAIL  access billing         DescribeNamespace refused\n"),
            "{text}"
        );
        assert!(
            text.ends_with("FAILED: 1 failed, 0 warning(s), 1 passed, 0 skipped (1.2 s)"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
        assert_eq!(json["checks"][1]["outcome"], "fail");
        assert_eq!(json["checks"][1]["namespace"], "billing");
        assert!(json["checks"][0].get("notes").is_none());
    }
}
