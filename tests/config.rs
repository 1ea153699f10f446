//! The config file and `--check-config`, through the real binary: strict
//! keys (an unknown key is named with its line), every problem reported in
//! one run, TLS files checked (formats, key match, validity), and the
//! commented example config kept valid.

mod support;

use std::path::Path;
use std::process::Output;

use support::pki::TestPki;

fn check(config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    std::process::Command::new(support::proxy::binary())
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tls_config(cert: &Path, key: &Path, ca: &Path) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:7443\"\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n[upstream]\naddress = \"http://127.0.0.1:7233\"\n",
        cert.display().to_string(),
        key.display().to_string(),
        ca.display().to_string()
    )
}

#[test]
fn valid_config_passes_check() {
    let pki = TestPki::new();
    let out = check(&support::proxy::config(&pki, "http://127.0.0.1:7233", ""));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("config OK"));
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let pki = TestPki::new();
    let config = support::proxy::config(&pki, "http://127.0.0.1:7233", "")
        .replace("[upstream]\n", "[upstream]\nadress = \"http://x:1\"\n");
    let line = config
        .lines()
        .position(|l| l.starts_with("adress"))
        .unwrap()
        + 1;
    let out = check(&config);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("unknown field `adress`"), "{err}");
    assert!(err.contains(&format!("line {line}")), "{err}");
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let out = check(
        r#"
[listen]
address = "localhost:http"
[tls]
cert = "/nonexistent/server.pem"
client_ca = "/nonexistent/ca.pem"
min_version = "1.1"
handshake_timeout = "soon"
[upstream]
address = "127.0.0.1:7233"
[shutdown]
drain_timeout = "0s"
[runtime]
worker_threads = 0
"#,
    );
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    for expected in [
        "listen.address",
        "tls.key: is required",
        "tls.cert: cannot read /nonexistent/server.pem",
        "tls.client_ca: cannot read /nonexistent/ca.pem",
        "tls.min_version: \"1.1\" is not supported",
        "tls.handshake_timeout: \"soon\" is not a duration",
        "upstream.address: \"127.0.0.1:7233\" must start with http://",
        "shutdown.drain_timeout: must be greater than zero",
        "runtime.worker_threads: 0 is not between 1 and 1024",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

/// Unknown keys and values of the wrong type no longer stop the check: they
/// are listed with their lines, in the file's order, together with the
/// problems of everything else (before, the first unknown key was the only
/// thing reported, and the next run found the next one).
#[test]
fn unknown_keys_and_wrong_types_are_reported_with_the_other_problems() {
    let config = r#"
[listen]
address = "localhost:http"
adress = "127.0.0.1:1"
[tls]
cert = 5
client_ca = "/nonexistent/ca.pem"
[limits]
max_connections = "lots"
max_request_message = -1
[upstream]
address = "127.0.0.1:7233"
[lmits]
x = 1
"#;
    let out = check(config);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    let line_of = |needle: &str| {
        config
            .lines()
            .position(|l| l.starts_with(needle))
            .expect(needle)
            + 1
    };
    let expected = [
        "listen.address: \"localhost:http\" is not an IP:port address".to_owned(),
        "listen.adress: unknown field `adress`, expected ".to_owned(),
        format!("(line {})", line_of("adress")),
        format!(
            "tls.cert: invalid type: integer `5`, expected a string (line {})",
            line_of("cert = 5")
        ),
        "tls.key: is required".to_owned(),
        "tls.client_ca: cannot read /nonexistent/ca.pem".to_owned(),
        format!(
            "limits.max_connections: invalid type: string \"lots\", expected u64 (line {})",
            line_of("max_connections")
        ),
        format!(
            "limits.max_request_message: invalid value: integer `-1`, expected a size: a number of bytes, or a string like \"4MiB\" (line {})",
            line_of("max_request_message")
        ),
        "upstream.address: \"127.0.0.1:7233\" must start with http://".to_owned(),
        "lmits: unknown field `lmits`".to_owned(),
    ];
    for e in &expected {
        assert!(err.contains(e.as_str()), "missing {e:?} in:\n{err}");
    }
    // A key of the wrong type is not also reported as missing.
    assert!(!err.contains("tls.cert: is required"), "{err}");
}

#[test]
fn key_formats_pkcs8_sec1_and_pkcs1_are_accepted() {
    let pki = TestPki::new();
    let pkcs8 = pki.server_key_pkcs8();
    assert!(std::fs::read_to_string(&pkcs8)
        .unwrap()
        .contains("BEGIN PRIVATE KEY"));
    let sec1 = pki.server_key_sec1();
    assert!(std::fs::read_to_string(&sec1)
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
    let (rsa_cert, pkcs1) = pki.rsa_server();
    assert!(std::fs::read_to_string(&pkcs1)
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    for (cert, key) in [
        (&pki.server_cert, &pkcs8),
        (&pki.server_cert, &sec1),
        (&rsa_cert, &pkcs1),
    ] {
        let out = check(&tls_config(cert, key, &pki.ca));
        assert!(out.status.success(), "{}: {}", key.display(), stderr(&out));
    }
}

#[test]
fn key_that_does_not_match_the_certificate_is_refused() {
    let pki = TestPki::new();
    let out = check(&tls_config(&pki.server_cert, &pki.client.key, &pki.ca));
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("tls.key:"), "{err}");
    assert!(err.contains("does not match the certificate"), "{err}");
}

#[test]
fn expired_server_certificate_is_refused() {
    let pki = TestPki::new();
    let expired = pki.expired();
    let out = check(&tls_config(&expired.cert, &expired.key, &pki.ca));
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("expired on"), "{}", stderr(&out));
}

#[test]
fn garbage_pem_is_a_clear_error() {
    let pki = TestPki::new();
    let bogus = pki.dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let out = check(&tls_config(&pki.server_cert, &pki.server_key, &bogus));
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("tls.client_ca"), "{err}");
    assert!(err.contains("no PEM CERTIFICATE found"), "{err}");
}

#[test]
fn https_upstream_needs_a_ca_and_h2c_rejects_tls_keys() {
    let pki = TestPki::new();
    let https = check(&support::proxy::config(&pki, "https://127.0.0.1:7233", ""));
    assert!(
        stderr(&https).contains("upstream.ca: is required"),
        "{}",
        stderr(&https)
    );
    let h2c = check(&support::proxy::config(
        &pki,
        "http://127.0.0.1:7233",
        "server_name = \"frontend\"",
    ));
    assert!(
        stderr(&h2c).contains("upstream.server_name: only applies to an https:// upstream"),
        "{}",
        stderr(&h2c)
    );
}

/// The shipped example parses strictly (no unknown keys) and, with its file
/// paths pointed at real files, validates.
#[test]
fn example_config_is_valid() {
    let example =
        std::fs::read_to_string(support::tools::repo_root().join("config/example.toml")).unwrap();
    let pki = TestPki::new();
    let text = example
        .replace(
            "/etc/temporal-mtls-proxy/tls/server.pem",
            &pki.server_cert.display().to_string(),
        )
        .replace(
            "/etc/temporal-mtls-proxy/tls/server.key",
            &pki.server_key.display().to_string(),
        )
        .replace(
            "/etc/temporal-mtls-proxy/tls/client-ca.pem",
            &pki.ca.display().to_string(),
        )
        .replace(
            "/var/log/temporal-mtls-proxy/audit.log",
            &pki.dir.path().join("audit.log").display().to_string(),
        );
    let out = check(&text);
    assert!(out.status.success(), "{}", stderr(&out));
    // Every commented-out key is a real key too: uncommented (with files
    // that exist and an https upstream) the example still validates.
    let uncommented = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.contains(" = ") && !rest.contains("temporal-mtls-proxy --config") =>
            {
                rest.to_owned()
            }
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            "address = \"http://127.0.0.1:7233\"",
            "address = \"https://127.0.0.1:7233\"",
        )
        .replace(
            "/etc/temporal-mtls-proxy/tls/frontend-ca.pem",
            &pki.ca.display().to_string(),
        )
        .replace(
            "/etc/temporal-mtls-proxy/tls/proxy-client.pem",
            &pki.client.cert.display().to_string(),
        )
        .replace(
            "/etc/temporal-mtls-proxy/tls/proxy-client.key",
            &pki.client.key.display().to_string(),
        )
        .replace(
            "/etc/temporal-mtls-proxy/tls/issuer-ca.pem",
            &pki.ca.display().to_string(),
        );
    let out = check(&uncommented);
    assert!(out.status.success(), "{}\n{uncommented}", stderr(&out));
}

#[test]
fn invalid_policy_is_reported_rule_by_rule() {
    let pki = TestPki::new();
    let config = format!(
        "{}\n{}",
        support::proxy::config(&pki, "http://127.0.0.1:7233", ""),
        r#"
[authz]
mode = "strict"

[[authz.rule]]
name = "bad-role"
match = { ou = "payments" }
namespaces = ["payments"]
roles = ["superuser"]

[[authz.rule]]
name = "bad-glob"
match = { cn = "a*b" }
namespaces = ["*team*"]
roles = ["reader"]

[[authz.rule]]
name = "empty-match"
match = {}
namespaces = ["x"]
roles = ["reader"]

[[authz.rule]]
name = "bad-method"
match = { cn = "x" }
namespaces = ["x"]
methods = ["NewMethod"]

[[authz.rule]]
name = "bad-role"
match = { cn = "y" }
roles = ["admin"]
"#
    );
    let out = check(&config);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    for expected in [
        "authz.mode: \"strict\" is not a mode",
        "authz.rule[0] (\"bad-role\").roles: unknown role \"superuser\"",
        "authz.rule[1] (\"bad-glob\").match.cn: \"a*b\"",
        "authz.rule[1] (\"bad-glob\").namespaces: \"*team*\"",
        "authz.rule[2] (\"empty-match\").match: is empty",
        "authz.rule[3] (\"bad-method\").methods: \"NewMethod\" is not a method path",
        "authz.rule[4] (\"bad-role\"): another rule has the same name",
        "authz.rule[4] (\"bad-role\").namespaces: is required",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn valid_policy_audit_and_identity_sections_pass() {
    let pki = TestPki::new();
    let config = format!(
        "{}\n{}",
        support::proxy::config(&pki, "http://127.0.0.1:7233", ""),
        r#"
[authz]
mode = "audit"
[[authz.rule]]
name = "payments-workers"
match = { ou = "payments", uri = "spiffe://example.org/ns/payments/*" }
namespaces = ["payments", "payments-*"]
roles = ["worker", "writer"]

[identity]
header = "x-client-identity"
strip = ["x-forwarded-client-cert", "x-user"]

[audit]
sink = "stdout"
buffer = 1024
"#
    );
    let out = check(&config);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The per-connection read budget and the upstream stream window are
/// checked with the other limits.
#[test]
fn read_budget_and_upstream_window_are_validated() {
    let pki = TestPki::new();
    let config = support::proxy::config(
        &pki,
        "http://127.0.0.1:7233",
        "initial_stream_window_size = \"1KiB\"\n\n[limits]\nconnection_buffer = \"2MiB\"\nfirst_message_timeout = \"soon\"\n",
    );
    let out = check(&config);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("upstream.initial_stream_window_size"), "{err}");
    assert!(
        err.contains("limits.connection_buffer: 2097152 bytes is below limits.max_request_message"),
        "{err}"
    );
    assert!(err.contains("limits.first_message_timeout"), "{err}");
}

/// A client certificate for an https upstream: each file's problem under
/// its own key, both reported when both are missing.
#[test]
fn upstream_cert_and_key_problems_are_named_by_their_own_keys() {
    let pki = TestPki::new();
    let config = format!(
        "[listen]\naddress = \"127.0.0.1:7443\"\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\
         [upstream]\naddress = \"https://127.0.0.1:7233\"\nca = {:?}\ncert = \"/nonexistent/client.pem\"\nkey = \"/nonexistent/client.key\"\n",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
        pki.ca.display().to_string(),
        pki.ca.display().to_string(),
    );
    let out = check(&config);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("upstream.cert: "), "{err}");
    assert!(err.contains("upstream.key: "), "{err}");
    assert!(err.contains("/nonexistent/client.key"), "{err}");
    // A key that does not belong to the certificate is the key's problem.
    let other = pki.client_cert("other", support::pki::ClientSpec::cn("other"));
    let config = config
        .replace(
            "/nonexistent/client.pem",
            &pki.client.cert.display().to_string(),
        )
        .replace("/nonexistent/client.key", &other.key.display().to_string());
    let err = stderr(&check(&config));
    assert!(err.contains("upstream.key: "), "{err}");
    assert!(!err.contains("upstream.cert: "), "{err}");
}

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// A server certificate two days from expiry passes the check (it is valid)
/// but is warned about, naming the key, the file and the time left; so is
/// the upstream client certificate. One with a month left is not. Before,
/// `--check-config` said only "config OK".
#[test]
fn check_config_warns_about_certificates_expiring_within_14_days() {
    let pki = TestPki::new();
    let (soon_cert, soon_key) =
        pki.server_cert_expiring_in("soon", &["localhost"], 2 * DAY + DAY / 2);
    let (month_cert, month_key) = pki.server_cert_expiring_in("month", &["localhost"], 30 * DAY);
    let upstream = format!(
        "ca = {:?}\ncert = {:?}\nkey = {:?}\n",
        pki.ca.display().to_string(),
        soon_cert.display().to_string(),
        soon_key.display().to_string()
    );
    let config = tls_config(&soon_cert, &soon_key, &pki.ca).replace(
        "http://127.0.0.1:7233\"\n",
        &format!("https://127.0.0.1:7233\"\n{upstream}"),
    );
    let out = check(&config);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("config OK"));
    for key in ["tls.cert", "upstream.cert"] {
        let expected = format!(
            "warning: {key}: certificate CN=soon in {} expires in 2 days (on ",
            soon_cert.display()
        );
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert_eq!(err.matches("warning:").count(), 2, "{err}");

    let out = check(&tls_config(&month_cert, &month_key, &pki.ca));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// `--check-config --verbose` prints the settings in force as a config
/// file: defaults filled in, relative paths resolved, and valid: checked
/// again, it prints itself.
#[test]
fn check_config_verbose_prints_the_settings_in_force_as_a_valid_config() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        (&pki.server_cert, "server.pem"),
        (&pki.server_key, "server.key"),
        (&pki.ca, "ca.pem"),
    ] {
        std::fs::copy(from, dir.path().join(to)).unwrap();
    }
    let key = support::issuer::Key::ec("e1");
    std::fs::write(
        dir.path().join("cluster-jwks.json"),
        support::issuer::jwks(&[&key]),
    )
    .unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        r#"
[listen]
address = "127.0.0.1:7443"
[tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"
client_certificate = "optional"
[upstream]
address = "http://127.0.0.1:7233"
[keepalive]
max_connection_age = "10m"
[[authz.rule]]
name = "payments"
match = { ou = "payments" }
namespaces = ["payments-*"]
roles = ["worker", "reader"]
[[authz.rule]]
name = "payments-sa"
match = { cn = "w", token = { issuer = "cluster", sub = "system:serviceaccount:payments:*", claims = { "kubernetes.io/namespace" = "payments" } } }
namespaces = ["payments"]
roles = ["worker"]
[[tokens.issuer]]
name = "cluster"
issuer = "https://kubernetes.default.svc"
audiences = ["temporal"]
jwks = "cluster-jwks.json"
max_lifetime = "1h"
[[tokens.issuer]]
name = "github"
issuer = "https://token.actions.githubusercontent.com"
audiences = ["temporal", "ci"]
discovery = true
algorithms = ["RS256"]
"#,
    )
    .unwrap();
    let run = |path: &Path| {
        let out = std::process::Command::new(support::proxy::binary())
            .arg("--config")
            .arg(path)
            .args(["--check-config", "--verbose"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run(&path);
    let server_pem = dir.path().join("server.pem");
    for expected in [
        format!("cert = {:?}", server_pem.display().to_string()),
        "max_connection_age = \"10m\"".to_owned(),
        "max_connection_idle = \"2m\"".to_owned(),
        "ping_timeout = \"10s\"".to_owned(),
        "max_request_message = \"4MiB\"".to_owned(),
        "initial_stream_window_size = \"64KiB\"".to_owned(),
        "mode = \"enforce\"".to_owned(),
        "match = { ou = \"payments\" }".to_owned(),
        "roles = [\"worker\", \"reader\"]".to_owned(),
        "client_certificate = \"optional\"".to_owned(),
        "match = { cn = \"w\", token = { issuer = \"cluster\", sub = \"system:serviceaccount:payments:*\", claims = { \"kubernetes.io/namespace\" = \"payments\" } } }".to_owned(),
        "[tokens]\nforward = false".to_owned(),
        format!("jwks = {:?}", dir.path().join("cluster-jwks.json").display().to_string()),
        "max_lifetime = \"1h\"".to_owned(),
        "discovery = true".to_owned(),
        "refresh = \"5m\"".to_owned(),
        "algorithms = [\"RS256\"]".to_owned(),
    ] {
        assert!(
            first.contains(&expected),
            "missing {expected:?} in:\n{first}"
        );
    }
    assert!(!first.contains("config OK"), "stdout is the config alone");

    // Elsewhere, so that nothing resolves relative to the first file.
    let other = tempfile::tempdir().unwrap();
    let again = other.path().join("effective.toml");
    std::fs::write(&again, &first).unwrap();
    let second = run(&again);
    let body = |text: &str| {
        text.lines()
            .skip_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&first), body(&second));
}

/// At start (and on every reload, which goes through the same code), the
/// proxy logs a warning for each certificate near its expiry, with the key,
/// the file and the date as fields.
#[tokio::test]
async fn start_logs_a_warning_for_a_certificate_near_expiry() {
    let pki = TestPki::new();
    let (cert, key) = pki.server_cert_expiring_in("soon", &["localhost"], 3 * DAY + DAY / 2);
    let config = support::proxy::config(&pki, "http://127.0.0.1:1", "")
        .replace(
            &pki.server_cert.display().to_string(),
            &cert.display().to_string(),
        )
        .replace(
            &pki.server_key.display().to_string(),
            &key.display().to_string(),
        );
    let proxy = support::proxy::ProxyProcess::start(&config).await;
    let line = proxy
        .wait_log(std::time::Duration::from_secs(10), |v| {
            v["level"] == "WARN" && v["key"] == "tls.cert"
        })
        .await
        .unwrap_or_else(|| panic!("no expiry warning in {:#?}", proxy.logs()));
    assert_eq!(line["path"], cert.display().to_string());
    assert_eq!(line["subject"], "CN=soon");
    assert_eq!(line["expired"], false);
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("expires in 3 days"), "{message}");
}

/// Found by the `crl` fuzz target: a CRL with bytes after its DER passed
/// the CRL check and was refused only when the client verifier was built,
/// reported under `tls` without the file. It is the file's problem now,
/// under `tls.crl`.
#[test]
fn a_crl_the_verifier_would_refuse_is_named_under_tls_crl() {
    let pki = TestPki::new();
    let good = pki.crl_revoking(&[]);
    let text = std::fs::read_to_string(&good).unwrap();
    let mut der = pem::parse(&text).unwrap().into_contents();
    der.extend_from_slice(&[0x05, 0x00]);
    let bad = pki.ca.with_file_name("trailing.crl.pem");
    std::fs::write(&bad, pem::encode(&pem::Pem::new("X509 CRL", der))).unwrap();
    let config = support::proxy::config(&pki, "http://127.0.0.1:7233", "").replacen(
        "\n\n[upstream]",
        &format!("\ncrl = [{:?}]\n\n[upstream]", bad.display().to_string()),
        1,
    );
    assert!(config.contains("crl = ["), "{config}");
    let err = stderr(&check(&config));
    assert!(
        err.contains(&format!("tls.crl: {}: not a valid CRL", bad.display())),
        "{err}"
    );
    // The same CRL without the extra bytes is fine.
    let out = check(&config.replace(&bad.display().to_string(), &good.display().to_string()));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `match.token` names an issuer of `[[tokens.issuer]]`, with valid
/// patterns; each problem is named by its key.
#[test]
fn token_rules_are_checked_against_the_configured_issuers() {
    let pki = TestPki::new();
    let jwks = pki.dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        support::issuer::jwks(&[&support::issuer::Key::ec("e1")]),
    )
    .unwrap();
    let rules = format!(
        r#"
[[tokens.issuer]]
name = "cluster"
issuer = "https://kubernetes.default.svc"
audiences = ["temporal"]
jwks = {:?}

[[authz.rule]]
name = "unknown-issuer"
match = {{ token = {{ issuer = "clustr", sub = "x" }} }}
namespaces = ["x"]
roles = ["reader"]

[[authz.rule]]
name = "bad-patterns"
match = {{ token = {{ issuer = "cluster", sub = "a*b", claims = {{ repository = "*x*" }} }} }}
namespaces = ["x"]
roles = ["reader"]

[[authz.rule]]
name = "no-issuer"
match = {{ token = {{ sub = "x" }} }}
namespaces = ["x"]
roles = ["reader"]
"#,
        jwks.display().to_string()
    );
    let config = format!(
        "{}\n{rules}",
        support::proxy::config(&pki, "http://127.0.0.1:7233", "")
    );
    let out = check(&config);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    for expected in [
        "authz.rule[0] (\"unknown-issuer\").match.token.issuer: \"clustr\" is not the name of a [[tokens.issuer]] (they are \"cluster\")",
        "authz.rule[1] (\"bad-patterns\").match.token.sub: \"a*b\"",
        "authz.rule[1] (\"bad-patterns\").match.token.claims.\"repository\": \"*x*\"",
        "authz.rule[2] (\"no-issuer\").match.token.issuer: is required",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

/// Found by the `crl` fuzz target: PEM files joined without a newline
/// (`cat a.pem b.pem` where a.pem has no final newline) put the second
/// block's BEGIN in the middle of a line, and the PEM reader skipped that
/// block without a word: the second CRL's revocations were not enforced, a
/// second CA not trusted. Such a file is refused, naming the line.
#[test]
fn pem_blocks_joined_without_a_newline_are_refused_not_half_read() {
    let pki = TestPki::new();
    let first = std::fs::read_to_string(pki.crl_revoking(&[])).unwrap();
    let second = std::fs::read_to_string(pki.crl_revoking(&[&pki.client])).unwrap();
    let joined = pki.ca.with_file_name("joined.crl.pem");
    std::fs::write(&joined, format!("{}{second}", first.trim_end())).unwrap();
    let config = support::proxy::config(&pki, "http://127.0.0.1:7233", "").replacen(
        "\n\n[upstream]",
        &format!("\ncrl = [{:?}]\n\n[upstream]", joined.display().to_string()),
        1,
    );
    let out = check(&config);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("tls.crl: {}: invalid PEM: line", joined.display()))
            && err.contains("in the middle of a line"),
        "{err}"
    );
    // A CA bundle joined the same way.
    let ca = std::fs::read_to_string(&pki.ca).unwrap();
    let bundle = pki.ca.with_file_name("joined-ca.pem");
    std::fs::write(&bundle, format!("{}{ca}", ca.trim_end())).unwrap();
    let config = support::proxy::config(&pki, "http://127.0.0.1:7233", "")
        .replace(&pki.ca.display().to_string(), &bundle.display().to_string());
    let err = stderr(&check(&config));
    assert!(
        err.contains("tls.client_ca: ") && err.contains("in the middle of a line"),
        "{err}"
    );
}

/// Found by the `config` fuzz target: a table header of hundreds of dotted
/// key parts stops the TOML parser at its recursion limit, an error with no
/// position, which was shown as a bare "recursion limit".
#[test]
fn a_syntax_error_without_a_position_says_so_and_why() {
    let header = vec!["a"; 400].join(".");
    let out = check(&format!("[{header}]\n"));
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(
        err.contains("recursion limit")
            && err.contains("no position known: tables, arrays or dotted keys nested too deep"),
        "{err}"
    );
}
