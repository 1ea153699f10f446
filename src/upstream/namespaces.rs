//! Namespace ids to names, as the frontend knows them. A task token names
//! its namespace by id, and that namespace is the one the frontend acts on
//! (whatever the request's `namespace` field says), so the proxy must know
//! which name an id stands for before it can authorize a task completion.
//! It asks the frontend (`DescribeNamespace` by id) through the calling
//! connection's own upstream pool, and remembers the answer.
//!
//! The cache is shared by every worker and read without a lock (an
//! `ArcSwap` snapshot, copied on the rare insert). Namespace ids are UUIDs
//! that never move to another name, so an entry only needs refreshing in
//! case the namespace was deleted ([`REFRESH`]); failures are never cached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use tower_service::Service;

use super::Forward;
use crate::temporal::wire::{last_bytes_field, last_string_field};

/// An entry older than this is fetched again on its next use.
pub const REFRESH: Duration = Duration::from_secs(300);
/// Entries kept before the cache starts over (a client sending made-up ids
/// gets them refused by the frontend, never cached, so this only bounds
/// real namespaces).
const CAPACITY: usize = 10_000;
/// How long one lookup may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest DescribeNamespace response read.
const MAX_RESPONSE: usize = 1 << 20;

const DESCRIBE_NAMESPACE: &str =
    "http://upstream/temporal.api.workflowservice.v1.WorkflowService/DescribeNamespace";
/// DescribeNamespaceRequest.id; DescribeNamespaceResponse.namespace_info;
/// NamespaceInfo.name and .id.
const REQUEST_ID: u8 = 2;
const RESPONSE_INFO: u32 = 1;
const INFO_NAME: u32 = 1;
const INFO_ID: u32 = 6;

/// Why an id could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The frontend answered with this status (NOT_FOUND for an unknown
    /// id): relayed to the client as it is.
    #[error("{message}")]
    Status { code: i32, message: String },
    /// The frontend could not be asked.
    #[error(
        "the proxy could not ask the frontend which namespace the task token's id {id:?} is: {why}"
    )]
    Unavailable { id: String, why: String },
}

#[derive(Clone)]
struct Entry {
    name: Arc<str>,
    fetched: Instant,
}

/// The shared id → name cache.
#[derive(Default)]
pub struct NamespaceIds {
    cache: ArcSwap<HashMap<Arc<str>, Entry>>,
}

impl NamespaceIds {
    pub fn new() -> Arc<NamespaceIds> {
        Arc::new(NamespaceIds::default())
    }

    /// The name of the namespace with id `id`, from the cache or from the
    /// frontend through `forward`.
    pub async fn name_of(&self, id: &str, forward: &Forward) -> Result<Arc<str>, ResolveError> {
        if let Some(entry) = self.cache.load().get(id) {
            if entry.fetched.elapsed() < REFRESH {
                return Ok(entry.name.clone());
            }
        }
        let unavailable = |why: String| ResolveError::Unavailable {
            id: id.to_owned(),
            why,
        };
        let name = tokio::time::timeout(TIMEOUT, describe(id, forward))
            .await
            .map_err(|_| {
                unavailable(format!(
                    "no answer within {}",
                    humantime::format_duration(TIMEOUT)
                ))
            })?
            .map_err(|e| match e {
                Lookup::Status { code, message } => ResolveError::Status { code, message },
                Lookup::Failed(why) => unavailable(why),
            })?;
        let name: Arc<str> = Arc::from(name);
        let id: Arc<str> = Arc::from(id);
        self.cache.rcu(|current| {
            let mut next = if current.len() >= CAPACITY {
                HashMap::new()
            } else {
                HashMap::clone(current)
            };
            next.insert(
                id.clone(),
                Entry {
                    name: name.clone(),
                    fetched: Instant::now(),
                },
            );
            next
        });
        Ok(name)
    }
}

enum Lookup {
    Status { code: i32, message: String },
    Failed(String),
}

/// One `DescribeNamespace { id }` call; the namespace's name.
async fn describe(id: &str, forward: &Forward) -> Result<String, Lookup> {
    let failed = |e: &dyn std::fmt::Display| Lookup::Failed(e.to_string());
    // DescribeNamespaceRequest { id }: tag, varint length, bytes.
    let mut field = vec![REQUEST_ID << 3 | 2];
    let mut len = id.len();
    while len >= 0x80 {
        field.push((len as u8) | 0x80);
        len >>= 7;
    }
    field.push(len as u8);
    field.extend_from_slice(id.as_bytes());
    let mut message = BytesMut::with_capacity(5 + field.len());
    message.put_u8(0);
    message.put_u32(u32::try_from(field.len()).map_err(|e| failed(&e))?);
    message.put_slice(&field);
    let req = http::Request::post(DESCRIBE_NAMESPACE)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(Full::new(message.freeze()))
        .map_err(|e| failed(&e))?;
    let resp = forward.clone().call(req).await.map_err(|e| failed(&e))?;
    let header_status = crate::grpc::grpc_status(resp.headers());
    let header_message = grpc_message(resp.headers());
    let collected = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| failed(&e))?;
    let trailers = collected.trailers().cloned();
    let status = trailers
        .as_ref()
        .and_then(crate::grpc::grpc_status)
        .or(header_status);
    match status {
        Some(0) => {}
        Some(code) => {
            let message = trailers
                .as_ref()
                .and_then(grpc_message)
                .or(header_message)
                .unwrap_or_default();
            return Err(Lookup::Status { code, message });
        }
        None => {
            return Err(Lookup::Failed(
                "DescribeNamespace answered without grpc-status".into(),
            ))
        }
    }
    let body: Bytes = collected.to_bytes();
    let payload = body
        .get(5..)
        .filter(|_| body.first() == Some(&0))
        .ok_or_else(|| Lookup::Failed("DescribeNamespace answered with no message".into()))?;
    let bad =
        |e: &dyn std::fmt::Display| Lookup::Failed(format!("DescribeNamespace response: {e}"));
    let info = last_bytes_field(payload, RESPONSE_INFO)
        .map_err(|e| bad(&e))?
        .unwrap_or_default();
    let name = last_string_field(info, INFO_NAME).map_err(|e| bad(&e))?;
    let got_id = last_string_field(info, INFO_ID).map_err(|e| bad(&e))?;
    match (name, got_id) {
        (Some(name), Some(got)) if got == id && !name.is_empty() => Ok(name.to_owned()),
        _ => Err(Lookup::Failed(format!(
            "DescribeNamespace for id {id:?} answered another namespace"
        ))),
    }
}

/// The percent-decoded `grpc-message`.
fn grpc_message(headers: &http::HeaderMap) -> Option<String> {
    tonic::Status::from_header_map(headers).map(|s| s.message().to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::HeaderValue;
    use http_body::Frame;

    use super::*;
    use crate::error::{status_of, ErrorKind, ProxyError};
    use crate::layers::testing::{
        forward_to, grpc_headers, message, status_trailers, string_field, Answer, FakeUpstream,
    };

    const ID: &str = "5a1c6e4d-6f0b-4d6e-9b5a-2f3c1d0e9a87";
    const NAME: &str = "payments";

    /// The frontend's DescribeNamespace answer for namespace `NAME`, id `ID`.
    fn found(_path: &str) -> Answer {
        let mut info = string_field(INFO_NAME as u8, NAME);
        info.extend(string_field(INFO_ID as u8, ID));
        let mut response = vec![(RESPONSE_INFO as u8) << 3 | 2, info.len() as u8];
        response.extend(info);
        (
            grpc_headers(None),
            vec![
                Frame::data(message(&response)),
                Frame::trailers(status_trailers("0")),
            ],
        )
    }

    /// A trailers-only NOT_FOUND, as the frontend answers an unknown id.
    fn not_found() -> Answer {
        let mut headers = grpc_headers(Some("5"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("namespace%20not%20found"),
        );
        (headers, Vec::new())
    }

    /// The one request `name_of(ID)` sends: DescribeNamespace { id: ID }.
    fn assert_asked_for_id(upstream: &FakeUpstream, calls: usize) {
        let received = upstream.received.lock().unwrap();
        assert_eq!(received.len(), calls, "DescribeNamespace calls upstream");
        for (path, body) in received.iter() {
            assert_eq!(
                path,
                "/temporal.api.workflowservice.v1.WorkflowService/DescribeNamespace"
            );
            assert_eq!(body, &message(&string_field(REQUEST_ID, ID)));
        }
    }

    /// Makes the cached entry for `id` look fetched `age` ago (the cache
    /// reads `std::time::Instant`, which tokio's paused clock does not move).
    fn age(ids: &NamespaceIds, id: &str, age: Duration) {
        let fetched = Instant::now()
            .checked_sub(age)
            .expect("the monotonic clock reaches back that far");
        ids.cache.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.get_mut(id).expect("the id is cached").fetched = fetched;
            next
        });
    }

    #[tokio::test]
    async fn an_id_is_asked_once_then_served_from_the_cache() {
        let upstream = FakeUpstream::start(found).await;
        let forward = forward_to(&upstream.url());
        let ids = NamespaceIds::new();
        for _ in 0..3 {
            assert_eq!(&*ids.name_of(ID, &forward).await.unwrap(), NAME);
        }
        assert_asked_for_id(&upstream, 1);
        // The cache is shared: another caller's lookup is not asked either.
        let other = forward_to(&upstream.url());
        assert_eq!(&*ids.name_of(ID, &other).await.unwrap(), NAME);
        assert_asked_for_id(&upstream, 1);
    }

    #[tokio::test]
    async fn an_entry_older_than_the_refresh_interval_is_asked_again() {
        let upstream = FakeUpstream::start(found).await;
        let forward = forward_to(&upstream.url());
        let ids = NamespaceIds::new();
        assert_eq!(&*ids.name_of(ID, &forward).await.unwrap(), NAME);
        assert_asked_for_id(&upstream, 1);

        // Not yet due: still served from the cache.
        age(&ids, ID, REFRESH - Duration::from_secs(30));
        assert_eq!(&*ids.name_of(ID, &forward).await.unwrap(), NAME);
        assert_asked_for_id(&upstream, 1);

        // Past the interval: asked again, and the entry is fresh again.
        age(&ids, ID, REFRESH + Duration::from_secs(1));
        assert_eq!(&*ids.name_of(ID, &forward).await.unwrap(), NAME);
        assert_asked_for_id(&upstream, 2);
        assert!(ids.cache.load()[ID].fetched.elapsed() < Duration::from_secs(30));
        assert_eq!(&*ids.name_of(ID, &forward).await.unwrap(), NAME);
        assert_asked_for_id(&upstream, 2);
    }

    #[tokio::test]
    async fn an_unreachable_frontend_leaves_the_id_unresolved_and_nothing_cached() {
        // A port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let down = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let ids = NamespaceIds::new();
        let err = ids.name_of(ID, &forward_to(&down)).await.unwrap_err();
        match &err {
            ResolveError::Unavailable { id, why } => {
                assert_eq!(id, ID);
                assert!(why.contains("unreachable"), "{why}");
            }
            other => panic!("not Unavailable: {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "the proxy could not ask the frontend which namespace the task token's id {ID:?} is: "
            )),
            "{text}"
        );
        // What the authorization layer answers the client with.
        let refusal = ProxyError::TokenNamespace(err);
        assert_eq!(refusal.kind(), ErrorKind::TaskTokenNamespaceUnresolved);
        let status = status_of(&refusal);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), text);
        assert!(ids.cache.load().is_empty(), "a failure was cached");

        // Once the frontend answers, the same cache resolves the id.
        let upstream = FakeUpstream::start(found).await;
        let forward = forward_to(&upstream.url());
        assert_eq!(&*ids.name_of(ID, &forward).await.unwrap(), NAME);
        assert_eq!(&*ids.name_of(ID, &forward).await.unwrap(), NAME);
        assert_asked_for_id(&upstream, 1);
    }

    static ASKED: AtomicUsize = AtomicUsize::new(0);

    /// NOT_FOUND the first time, the namespace after that.
    fn not_found_then_found(path: &str) -> Answer {
        if ASKED.fetch_add(1, Ordering::SeqCst) == 0 {
            not_found()
        } else {
            found(path)
        }
    }

    #[tokio::test]
    async fn a_frontend_error_is_relayed_as_it_is_and_not_cached() {
        let upstream = FakeUpstream::start(not_found_then_found).await;
        let forward = forward_to(&upstream.url());
        let ids = NamespaceIds::new();
        let err = ids.name_of(ID, &forward).await.unwrap_err();
        assert_eq!(
            err,
            ResolveError::Status {
                code: 5,
                message: "namespace not found".into()
            }
        );
        let refusal = ProxyError::TokenNamespace(err);
        assert_eq!(refusal.kind(), ErrorKind::TaskTokenNamespaceUnresolved);
        let status = status_of(&refusal);
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "namespace not found");
        assert!(ids.cache.load().is_empty(), "a refusal was cached");

        // The next lookup asks again, and its answer is cached.
        assert_eq!(&*ids.name_of(ID, &forward).await.unwrap(), NAME);
        assert_eq!(&*ids.name_of(ID, &forward).await.unwrap(), NAME);
        assert_asked_for_id(&upstream, 2);
    }
}
