//! What is wrong with a config, collected: every problem names its key, all
//! of them are reported in one run. The typed readers (durations, sizes,
//! counts, files) record a problem instead of failing, so validation goes
//! on to the next key.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawSize;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// One thing wrong with the config, naming its key (`tls.cert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

pub(super) fn render(problems: &[Problem]) -> String {
    let mut out = String::new();
    for p in problems {
        let _ = writeln!(out, "  - {p}");
    }
    out.truncate(out.trim_end().len());
    out
}

#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// `value`, or a problem that `key` is missing (unless the key already
    /// has one: a value of the wrong type is taken out of the document, and
    /// is not missing as well).
    pub(super) fn required<T>(&mut self, key: &str, value: Option<T>) -> Option<T> {
        if value.is_none() && !self.0.iter().any(|p| p.key == key) {
            self.add(key, "is required");
        }
        value
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.add(key, "must be greater than zero");
                default
            }
            Err(e) => {
                self.add(
                    key,
                    format!("{text:?} is not a duration ({e}); write it like \"10s\", \"5m\" or \"1h30m\""),
                );
                default
            }
        }
    }

    /// Runs a file loader, recording its error under `key`.
    pub(super) fn load<T, E: std::fmt::Display>(
        &mut self,
        key: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(key, e.to_string());
                None
            }
        }
    }
}

pub(super) fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

impl Problems {
    pub(super) fn size(
        &mut self,
        key: &str,
        value: Option<RawSize>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let Some(raw) = value else { return default };
        let parsed = match &raw {
            RawSize::Bytes(n) => Some(*n),
            RawSize::Text(t) => parse_size(t),
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.add(key, format!("{n} bytes is outside {min}..={max}"));
                default
            }
            None => {
                let text = match &raw {
                    RawSize::Bytes(n) => n.to_string(),
                    RawSize::Text(t) => format!("{t:?}"),
                };
                self.add(
                    key,
                    format!("{text} is not a size; write it like \"4MiB\", \"64KiB\" or a number of bytes"),
                );
                default
            }
        }
    }

    pub(super) fn count(
        &mut self,
        key: &str,
        value: Option<u64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        match value {
            None => default,
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.add(key, format!("{n} is outside {min}..={max}"));
                default
            }
        }
    }
}

/// Parses "4MiB", "64 KiB", "1GiB", "512" (bytes), "16KB" (=KiB, as gRPC
/// documentation writes it).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => 1024 * MIB,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB"), Some(4 * MIB));
        assert_eq!(parse_size("64 KiB"), Some(64 * KIB));
        assert_eq!(parse_size("16KB"), Some(16 * KIB));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1GiB"), Some(1024 * MIB));
        assert_eq!(parse_size("four MiB"), None);
        assert_eq!(parse_size("4 parsecs"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
    }

    #[test]
    fn a_value_that_is_not_a_size_is_named_as_written() {
        let mut p = Problems::default();
        p.size(
            "limits.max_request_message",
            Some(RawSize::Text("lots".into())),
            1,
            1,
            10,
        );
        assert_eq!(
            p.0[0].to_string(),
            "limits.max_request_message: \"lots\" is not a size; write it like \"4MiB\", \"64KiB\" or a number of bytes"
        );
    }
}
