//! Certificates of a valid config that expire soon: the server chain, the
//! client CA bundle, the upstream CA bundle and the upstream client chain.
//! Not problems (the config is valid today), but what `--check-config`, the
//! start and every reload warn about, so that a renewal that did not happen
//! is seen days before handshakes fail.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::tls::material;

use super::Config;

/// How far ahead a coming expiry is warned about.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// One certificate that expires within [`EXPIRY_WARNING`] (or already has:
/// a CA in a bundle is not refused for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringCertificate {
    /// The config key of the file (`tls.cert`, `tls.client_ca`, ...).
    pub key: &'static str,
    pub path: PathBuf,
    pub subject: String,
    pub not_after: SystemTime,
    /// Time left from the check, or `None` when it has expired.
    pub left: Option<Duration>,
}

impl std::fmt::Display for ExpiringCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = humantime::format_rfc3339_seconds(self.not_after);
        write!(
            f,
            "{}: certificate {} in {} ",
            self.key,
            self.subject,
            self.path.display()
        )?;
        match self.left {
            None => write!(f, "expired on {on}"),
            Some(left) => write!(f, "expires in {} (on {on})", in_words(left)),
        }
    }
}

/// "3 days", "5 hours", "12 minutes": the largest whole unit.
fn in_words(left: Duration) -> String {
    let secs = left.as_secs();
    let (n, unit) = if secs >= 2 * 86_400 {
        (secs / 86_400, "days")
    } else if secs >= 2 * 3600 {
        (secs / 3600, "hours")
    } else {
        (secs / 60, "minutes")
    };
    format!("{n} {unit}")
}

impl Config {
    /// The certificates this config reads that expire within
    /// [`EXPIRY_WARNING`] of `now`, in the order of the config's keys.
    pub fn expiring_certificates(&self, now: SystemTime) -> Vec<ExpiringCertificate> {
        let mut files: Vec<(&'static str, &Path)> = vec![
            ("tls.cert", &self.tls.cert),
            ("tls.client_ca", &self.tls.client_ca),
        ];
        if let Some(up) = &self.upstream.tls {
            files.push(("upstream.ca", &up.ca));
            if let Some((cert, _)) = &up.cert {
                files.push(("upstream.cert", cert));
            }
        }
        let mut out = Vec::new();
        for (key, path) in files {
            for (subject, not_after) in material::file_expiry_dates(path) {
                let left = not_after.duration_since(now).ok();
                if left.is_some_and(|l| l > EXPIRY_WARNING) {
                    continue;
                }
                out.push(ExpiringCertificate {
                    key,
                    path: path.to_owned(),
                    subject,
                    not_after,
                    left,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_in_words() {
        assert_eq!(in_words(Duration::from_secs(13 * 86_400 + 5)), "13 days");
        assert_eq!(in_words(Duration::from_secs(47 * 3600)), "47 hours");
        assert_eq!(in_words(Duration::from_secs(119 * 60)), "119 minutes");
    }

    #[test]
    fn a_warning_names_key_file_subject_and_date() {
        let w = ExpiringCertificate {
            key: "tls.cert",
            path: PathBuf::from("/etc/p/server.pem"),
            subject: "CN=proxy".into(),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            left: Some(Duration::from_secs(2 * 86_400 + 60)),
        };
        assert_eq!(
            w.to_string(),
            "tls.cert: certificate CN=proxy in /etc/p/server.pem expires in 2 days (on 2027-01-15T08:00:00Z)"
        );
        let expired = ExpiringCertificate { left: None, ..w };
        assert!(expired
            .to_string()
            .ends_with("expired on 2027-01-15T08:00:00Z"));
    }
}
