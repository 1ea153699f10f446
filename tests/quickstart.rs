//! The README's first command, as a new user runs it: `scripts/quickstart.sh`
//! starts a Temporal dev server, the proxy in `dev` mode with a fresh PKI,
//! and goes through it with the CLI over mTLS. (Ports are moved off the
//! defaults so the test cannot collide with a user's own dev server.)

mod support;

use std::time::Duration;

#[tokio::test]
async fn quickstart_script_runs_the_main_job() {
    let pki_dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", support::tools::free_port());
    let upstream_port = support::tools::free_port();
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(support::tools::repo_root().join("scripts/quickstart.sh"))
            .arg("--demo")
            .env("QUICKSTART_LISTEN", &listen)
            .env("QUICKSTART_UPSTREAM_PORT", upstream_port.to_string())
            .env("QUICKSTART_DIR", pki_dir.path())
            .env("QUICKSTART_PROXY_BIN", support::proxy::binary())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("quickstart finished")
    .expect("quickstart ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The exact CLI command is printed, and it was used successfully.
    assert!(
        stdout.contains(&format!(
            "temporal operator namespace list --address {listen} --tls-ca-path"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("\"name\": \"default\""), "{stdout}");
    assert!(stdout.contains("WorkflowId"), "{stdout}");
    assert!(stdout.contains("quick start OK"), "{stdout}");
    for file in [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
        "proxy.toml",
    ] {
        assert!(pki_dir.path().join(file).is_file(), "{file} missing");
    }
}
