//! The token of a call: taken only from a single `authorization: Bearer`
//! header (RFC 6750 section 2.1; the scheme case-insensitive), as every
//! Temporal SDK and the CLI send an API key. Two `authorization` headers,
//! another scheme, or a token over 16 KiB are refused before the token is
//! parsed.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use super::error::TokenError;
use super::jwt::{JwtError, MAX_TOKEN_LEN};

/// The bearer token of a request; `None` when it has no `authorization`
/// header (a call without a token).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&[u8]>, TokenError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(TokenError::TwoAuthorizationHeaders);
    }
    bearer_value(value.as_bytes()).map(Some)
}

/// The token of one `authorization` header value.
pub fn bearer_value(value: &[u8]) -> Result<&[u8], TokenError> {
    const SCHEME: &[u8] = b"bearer";
    // Refused before anything else is looked at.
    if value.len() > MAX_TOKEN_LEN + SCHEME.len() + 16 {
        return Err(JwtError::TooLong { len: value.len() }.into());
    }
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(at) => (&value[..at], &value[at + 1..]),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(TokenError::NotBearer);
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Err(JwtError::Empty.into());
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong { len: token.len() }.into());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map.insert("x-api-key", HeaderValue::from_static("a.b.c"));
        map
    }

    #[test]
    fn one_bearer_header_gives_its_token() {
        assert_eq!(
            bearer_token(&headers(&["Bearer a.b.c"])).unwrap(),
            Some(&b"a.b.c"[..])
        );
        assert_eq!(
            bearer_token(&headers(&["bearer  a.b.c "])).unwrap(),
            Some(&b"a.b.c"[..])
        );
        // A token in another header is not a token.
        assert_eq!(bearer_token(&headers(&[])).unwrap(), None);
    }

    #[test]
    fn refusals() {
        let err = |values: &[&str]| bearer_token(&headers(values)).unwrap_err().to_string();
        assert_eq!(
            err(&["Bearer a.b.c", "Bearer d.e.f"]),
            "two authorization headers"
        );
        assert_eq!(err(&["Basic dXNlcjpwYXNz"]), "not a Bearer token");
        assert_eq!(err(&["a.b.c"]), "not a Bearer token");
        assert_eq!(err(&["Bearer"]), "malformed token: empty");
        assert_eq!(err(&["Bearer   "]), "malformed token: empty");
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(err(&[&long]), "token over 16 KiB (16385 bytes)");
        let very_long = format!("Bearer {}", "a".repeat(100_000));
        assert_eq!(err(&[&very_long]), "token over 16 KiB (100007 bytes)");
        let at_cap = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN));
        assert!(bearer_token(&headers(&[&at_cap])).is_ok());
    }
}
