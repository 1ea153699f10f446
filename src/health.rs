//! What readiness is made of: certificates loaded and within their validity
//! (also exported as seconds-to-expiry metrics), and the upstream answering
//! a gRPC health check within a timeout, checked periodically.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use crate::admin::Health;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::Shared;
use crate::upstream::Forward;

/// Subject and not-after of each PEM certificate in `der`s.
fn expiries<'a>(ders: impl Iterator<Item = &'a [u8]>) -> Vec<(String, SystemTime)> {
    ders.filter_map(|der| {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let secs = cert.validity().not_after.timestamp();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
        Some((cert.subject().to_string(), at))
    })
    .collect()
}

/// Publishes the certificates' expiry and whether they are valid now.
pub fn certificates(config: &Config, metrics: &Metrics, health: &Health) {
    let server = expiries(
        config
            .tls
            .material
            .certified_key
            .cert
            .iter()
            .take(1)
            .map(|c| c.as_ref()),
    );
    // The loaded CA bundle holds trust anchors (no dates): read the file
    // for each CA's subject and expiry.
    let cas = std::fs::read(&config.tls.client_ca)
        .ok()
        .map(|pem| {
            let ders: Vec<Vec<u8>> = rustls_pki_types::pem::PemObject::pem_slice_iter(&pem)
                .filter_map(|c: Result<rustls_pki_types::CertificateDer<'static>, _>| c.ok())
                .map(|c| c.to_vec())
                .collect();
            expiries(ders.iter().map(|d| d.as_slice()))
        })
        .unwrap_or_default();
    metrics.set_certificates(&server, &cas);
    health.set_live_certificates(server, cas);
}

/// Checks the upstream with `grpc.health.v1.Health/Check` through the
/// proxy's own upstream pool, every `admin.upstream_check_interval`, and
/// re-checks the validity of the certificates in force (the last loaded or
/// reloaded, never those of `config`, which is the start-up config) on the
/// way.
pub async fn probe_upstream(shared: Arc<Shared>, forward: Forward, config: Config) {
    let mut tick = tokio::time::interval(config.admin.upstream_check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::time::timeout(config.admin.upstream_check_timeout, check(&forward)).await {
            Ok(Ok(())) => shared.health.set_upstream_ok(),
            Ok(Err(e)) => shared.health.set_upstream_failed(e),
            Err(_) => shared.health.set_upstream_failed(format!(
                "no health check answer within {}",
                humantime::format_duration(config.admin.upstream_check_timeout)
            )),
        }
        // A certificate can expire while the process runs.
        shared.health.recheck_certificates(SystemTime::now());
    }
}

/// One health check of the WorkflowService on the upstream.
async fn check(forward: &Forward) -> Result<(), String> {
    // HealthCheckRequest { service = 1: "temporal.api.workflowservice.v1.WorkflowService" }
    const SERVICE: &[u8] = b"temporal.api.workflowservice.v1.WorkflowService";
    let mut message = vec![
        0u8,
        0,
        0,
        0,
        (SERVICE.len() + 2) as u8,
        0x0a,
        SERVICE.len() as u8,
    ];
    message.extend_from_slice(SERVICE);
    let req = http::Request::post("http://upstream/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(message)))
        .map_err(|e| e.to_string())?;
    let mut forward = forward.clone();
    let resp = forward.call(req).await.map_err(|e| e.to_string())?;
    let headers_status = crate::grpc::grpc_status(resp.headers());
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let status = collected
        .trailers()
        .and_then(crate::grpc::grpc_status)
        .or(headers_status);
    match status {
        Some(0) => {
            let body = collected.to_bytes();
            // HealthCheckResponse { status = 1: SERVING(1) }
            if body.len() >= 7 && body[5] == 0x08 && body[6] != 1 {
                return Err(format!(
                    "upstream health status is {} (not SERVING)",
                    body[6]
                ));
            }
            Ok(())
        }
        Some(code) => Err(format!("upstream health check answered grpc-status {code}")),
        None => Err("upstream health check answered without grpc-status".into()),
    }
}
