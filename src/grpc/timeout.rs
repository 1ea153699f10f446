//! The `grpc-timeout` request header (gRPC over HTTP/2: "TimeoutValue
//! TimeoutUnit", at most 8 ASCII digits then one of `H M S m u n`): the
//! time the client gives its call.

use std::time::Duration;

/// The call's timeout; `None` when the header is absent from this value's
/// grammar (the frontend refuses such a value itself).
pub fn parse(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_the_grammar_limits() {
        assert_eq!(parse(b"70S"), Some(Duration::from_secs(70)));
        assert_eq!(parse(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse(b"9999m"), Some(Duration::from_millis(9999)));
        assert_eq!(parse(b"5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse(b"99999999n"), Some(Duration::from_nanos(99_999_999)));
        // 8 digits at most, one unit, digits only.
        for bad in [
            &b"123456789S"[..],
            b"S",
            b"",
            b"10",
            b"10s",
            b"1.5S",
            b"-1S",
            b" 1S",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
