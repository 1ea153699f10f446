//! Compact JWS parsing (RFC 7515 section 7.1, RFC 7519): exactly three
//! base64url parts without padding, `header.claims.signature`; the header
//! and the claims each a JSON object. Nothing here trusts what it reads:
//! the header's `alg` and `kid` only say which configured key to try, and
//! header fields that would bring their own key (`jwk`, `jku`, `x5u`,
//! `x5c`) are ignored. A header with `crit` is refused: no critical
//! extension is supported (RFC 7515 4.1.11 requires refusing those that are
//! not understood). The size cap is checked before anything is decoded.
//!
//! Duplicate member names in the header or the claims: the last one counts
//! (serde_json's behaviour; RFC 7519 section 4 allows it).

use std::fmt;

use serde_json::{Map, Value};

/// The longest token accepted, checked before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Which part of a token a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Claims,
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "the header",
            Part::Claims => "the claims set",
            Part::Signature => "the signature",
        })
    }
}

/// Why a token could not be parsed; the text is the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token over 16 KiB ({len} bytes)")]
    TooLong { len: usize },
    #[error("malformed token: empty")]
    Empty,
    #[error("malformed token: an encrypted token (JWE, 5 parts) is not accepted, only a signed one (JWS, 3 parts)")]
    Encrypted,
    #[error("malformed token: {parts} part(s) separated by \".\"; a signed JWT has 3 (header.claims.signature)")]
    Parts { parts: usize },
    #[error("malformed token: {part} is not base64url without padding ({reason})")]
    Base64 { part: Part, reason: String },
    #[error("malformed token: {part} is not JSON ({detail})")]
    Json { part: Part, detail: String },
    #[error("malformed token: {part} is not a JSON object")]
    NotObject { part: Part },
    #[error("malformed token: the header has no \"alg\"")]
    NoAlg,
    #[error("malformed token: the header's {field:?} is not a string")]
    NotAString { field: &'static str },
    #[error("token header lists critical extensions (\"crit\": {names}); none are supported")]
    Critical { names: String },
}

/// The header fields the proxy reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// As written; whether it is allowed is decided by the verifier.
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A parsed, not yet verified, token.
#[derive(Debug)]
pub struct Jws<'a> {
    pub header: Header,
    pub claims: Map<String, Value>,
    /// `header.claims` as sent: what the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
}

/// Parses a compact JWS. Does not verify anything but its form.
pub fn parse(token: &[u8]) -> Result<Jws<'_>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong { len: token.len() });
    }
    if token.is_empty() {
        return Err(JwtError::Empty);
    }
    let dots: Vec<usize> = token
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'.')
        .map(|(i, _)| i)
        .take(5)
        .collect();
    match dots.len() {
        2 => {}
        4 => return Err(JwtError::Encrypted),
        n => return Err(JwtError::Parts { parts: n + 1 }),
    }
    let (h, c) = (dots[0], dots[1]);
    let header_b64 = &token[..h];
    let claims_b64 = &token[h + 1..c];
    let signature_b64 = &token[c + 1..];

    let header = json_object(Part::Header, header_b64)?;
    let claims = json_object(Part::Claims, claims_b64)?;
    // An empty signature is read as such (an `alg: none` token has one), so
    // that the verifier names the algorithm it refuses.
    let signature = match signature_b64 {
        [] => Vec::new(),
        b64 => decode_b64url(b64).map_err(|reason| JwtError::Base64 {
            part: Part::Signature,
            reason,
        })?,
    };

    if let Some(crit) = header.get("crit") {
        return Err(JwtError::Critical {
            names: crit.to_string(),
        });
    }
    let alg = match header.get("alg") {
        None => return Err(JwtError::NoAlg),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(JwtError::NotAString { field: "alg" }),
    };
    let text = |field: &'static str| match header.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::NotAString { field }),
    };
    Ok(Jws {
        header: Header {
            alg,
            kid: text("kid")?,
            typ: text("typ")?,
        },
        claims,
        signing_input: &token[..c],
        signature,
    })
}

fn json_object(part: Part, b64: &[u8]) -> Result<Map<String, Value>, JwtError> {
    let bytes = decode_b64url(b64).map_err(|reason| JwtError::Base64 { part, reason })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JwtError::NotObject { part }),
        Err(e) => Err(JwtError::Json {
            part,
            detail: e.to_string(),
        }),
    }
}

/// base64url (RFC 4648 section 5) without padding, strictly: only the
/// alphabet, no `=`, and the unused bits of the last character zero (so
/// that each value has exactly one encoding).
pub(super) fn decode_b64url(text: &[u8]) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    }
    if text.is_empty() {
        return Err("empty".to_owned());
    }
    if text.len() % 4 == 1 {
        return Err(format!(
            "{} characters is not a possible length",
            text.len()
        ));
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, &c) in text.iter().enumerate() {
        let Some(v) = value(c) else {
            return Err(match c {
                b'=' => "padding \"=\" is not allowed".to_owned(),
                b'+' | b'/' => format!(
                    "{:?} at {i} is standard base64, not base64url",
                    char::from(c)
                ),
                0x21..=0x7e => format!("invalid character {:?} at {i}", char::from(c)),
                _ => format!("invalid byte 0x{c:02x} at {i}"),
            });
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if acc != 0 {
        return Err("the last character has unused bits set".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
pub(super) fn encode_b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let mut buf = [0u8; 3];
        buf[..n].copy_from_slice(chunk);
        let v = (u32::from(buf[0]) << 16) | (u32::from(buf[1]) << 8) | u32::from(buf[2]);
        for i in 0..=n {
            out.push(char::from(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, claims: &str, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            encode_b64url(header.as_bytes()),
            encode_b64url(claims.as_bytes()),
            encode_b64url(signature)
        )
    }

    #[test]
    fn base64url_round_trips_and_is_strict() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = encode_b64url(&bytes);
            if len > 0 {
                assert_eq!(decode_b64url(text.as_bytes()).unwrap(), bytes);
            }
        }
        assert_eq!(decode_b64url(b"_-8").unwrap(), vec![0xff, 0xef]);
        assert!(decode_b64url(b"AAA=").unwrap_err().contains("padding"));
        assert!(decode_b64url(b"ab+c")
            .unwrap_err()
            .contains("standard base64"));
        assert!(decode_b64url(b"ab c").unwrap_err().contains("at 2"));
        assert!(decode_b64url(b"abcde")
            .unwrap_err()
            .contains("not a possible length"));
        // "AB" decodes to one byte with 4 unused bits; "AA" is its canonical form.
        assert!(decode_b64url(b"AB").unwrap_err().contains("unused bits"));
        assert_eq!(decode_b64url(b"AA").unwrap(), vec![0]);
        assert!(decode_b64url("é".as_bytes())
            .unwrap_err()
            .contains("invalid byte"));
    }

    #[test]
    fn a_good_token_parses_into_its_parts() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT","x5u":"https://evil"}"#,
            r#"{"iss":"https://issuer","sub":"me","exp":1}"#,
            b"sig",
        );
        let jws = parse(t.as_bytes()).unwrap();
        assert_eq!(
            jws.header,
            Header {
                alg: "RS256".into(),
                kid: Some("k1".into()),
                typ: Some("JWT".into())
            }
        );
        assert_eq!(jws.claims["sub"], "me");
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn malformed_tokens_say_which_part_and_why() {
        let claims = r#"{"sub":"x"}"#;
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "malformed token: empty"),
            ("a.b".into(), "2 part(s)"),
            ("a.b.c.d".into(), "4 part(s)"),
            (
                "a.b.c.d.e".into(),
                "encrypted token (JWE, 5 parts) is not accepted",
            ),
            ("a.b.c.d.e.f".into(), "6 part(s)"),
            (
                format!("e30=.{}.AA", encode_b64url(claims.as_bytes())),
                "the header is not base64url without padding (padding \"=\" is not allowed)",
            ),
            (
                format!("{}.e30.A+", encode_b64url(br#"{"alg":"RS256"}"#)),
                "the signature is not base64url",
            ),
            (
                token("not json", claims, b"s"),
                "malformed token: the header is not JSON (",
            ),
            (
                token(r#"["alg"]"#, claims, b"s"),
                "the header is not a JSON object",
            ),
            (
                token(r#"{"alg":"RS256"}"#, "42", b"s"),
                "the claims set is not a JSON object",
            ),
            (
                token(r#"{"typ":"JWT"}"#, claims, b"s"),
                "the header has no \"alg\"",
            ),
            (
                token(r#"{"alg":7}"#, claims, b"s"),
                "the header's \"alg\" is not a string",
            ),
            (
                token(r#"{"alg":"RS256","kid":1}"#, claims, b"s"),
                "the header's \"kid\" is not a string",
            ),
            (
                token(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, claims, b"s"),
                "token header lists critical extensions (\"crit\": [\"exp\"]); none are supported",
            ),
        ];
        for (t, expected) in cases {
            let err = parse(t.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "{t:?}: {err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn the_size_cap_comes_before_any_parsing() {
        let long = vec![b'!'; MAX_TOKEN_LEN + 1];
        assert_eq!(
            parse(&long).unwrap_err(),
            JwtError::TooLong {
                len: MAX_TOKEN_LEN + 1
            }
        );
        assert_eq!(
            parse(&long).unwrap_err().to_string(),
            "token over 16 KiB (16385 bytes)"
        );
        // At the cap it is parsed (and found malformed for what it is).
        let at_cap = vec![b'a'; MAX_TOKEN_LEN];
        assert!(matches!(parse(&at_cap), Err(JwtError::Parts { parts: 1 })));
    }
}
