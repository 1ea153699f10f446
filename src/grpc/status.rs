//! Responses the proxy makes itself: HTTP 200, `content-type:
//! application/grpc`, and `grpc-status`/`grpc-message` in a trailers-only
//! HEADERS frame (END_STREAM set, because the body is empty). Never a bare
//! HTTP error, never a reset.

use http::Response;

use super::ResponseBody;

pub fn status_response(status: tonic::Status) -> Response<ResponseBody> {
    status.into_http::<ResponseBody>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[test]
    fn status_response_is_trailers_only() {
        let resp = status_response(tonic::Status::unavailable(
            "upstream down: connection refused",
        ));
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert_eq!(resp.headers()["grpc-status"], "14");
        // grpc-message is percent-encoded per the gRPC spec; clients decode it.
        let decoded = tonic::Status::from_header_map(resp.headers()).unwrap();
        assert_eq!(decoded.message(), "upstream down: connection refused");
        assert!(resp.body().is_end_stream());
    }
}
