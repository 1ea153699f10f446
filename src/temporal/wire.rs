//! A minimal reader of the protobuf wire format: just enough to find one
//! top-level string field (the namespace) in a request message without
//! generated code, without allocating and without panicking on any input.
//!
//! It reads as the Go protobuf runtime in the Temporal frontend does (the
//! conformance suite checks it against the frontend): the last occurrence of
//! a field wins, an occurrence with another wire type is an unknown field,
//! groups are skipped whole, lengths are checked against the buffer, and
//! varints longer than 64 bits and field numbers beyond protobuf's maximum
//! are refused.

use std::str;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message ends inside a field")]
    Truncated,
    #[error("varint longer than 10 bytes or over 64 bits")]
    VarintTooLong,
    #[error("field {field} has wire type {wire_type}, which is not allowed here")]
    BadWireType { field: u32, wire_type: u8 },
    #[error("field number 0 is invalid")]
    FieldZero,
    /// Protobuf field numbers stop at 2^29 - 1. Go's runtime tolerates
    /// numbers up to 2^31 - 1 as unknown fields; no real client sends them.
    #[error("field number {field} is above the protobuf maximum of {MAX_FIELD_NUMBER}")]
    FieldNumberTooLarge { field: u64 },
    #[error("string field {field} is not valid UTF-8")]
    InvalidUtf8 { field: u32 },
}

/// The largest field number protobuf allows.
pub const MAX_FIELD_NUMBER: u32 = (1 << 29) - 1;

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_FIXED32: u8 = 5;

/// Longest encoding of a u64 varint.
const MAX_VARINT_LEN: usize = 10;

/// The value of string field `field` in `msg`.
///
/// As protobuf parsers do, the LAST occurrence wins: the server acts on the
/// last one, so a request cannot smuggle a second namespace past a check
/// that looked at the first. The whole message is walked and must be
/// well-formed (every wire type valid, every length inside the buffer), and
/// every occurrence of `field` must be a valid UTF-8 string (proto3 strings;
/// the Go runtime refuses the whole message otherwise). Nested messages are
/// skipped as opaque bytes, so a field with the same number inside one is
/// never mistaken for the top-level field.
///
/// Returns `Ok(None)` when the field is absent.
pub fn last_string_field(msg: &[u8], field: u32) -> Result<Option<&str>, WireError> {
    let mut found = None;
    walk(msg, field, |value| {
        let text = str::from_utf8(value).map_err(|_| WireError::InvalidUtf8 { field })?;
        found = Some(text);
        Ok(())
    })?;
    Ok(found)
}

/// The last occurrence of length-delimited field `field` (bytes, or an
/// embedded message: protobuf merges repeated occurrences of an embedded
/// message, but for the scalar fields read here inside it the last one
/// wins either way, and a single occurrence is what real clients send).
/// The message must be well-formed, as for [`last_string_field`].
pub fn last_bytes_field(msg: &[u8], field: u32) -> Result<Option<&[u8]>, WireError> {
    let mut found = None;
    walk(msg, field, |value| {
        found = Some(value);
        Ok(())
    })?;
    Ok(found)
}

/// Every occurrence of length-delimited field `field`, in order (a repeated
/// embedded message, such as a workflow task's commands). The message must
/// be well-formed, as for [`last_string_field`].
pub fn each_bytes_field<'a>(
    msg: &'a [u8],
    field: u32,
    each: impl FnMut(&'a [u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    walk(msg, field, each)
}

/// Walks every top-level field of `msg`, handing each length-delimited
/// occurrence of `field` to `wanted`. As in the Go runtime, an occurrence of
/// `field` with another wire type is an unknown field and skipped (the
/// server then uses an earlier occurrence, or none), and groups are skipped
/// whole, whatever their field number.
fn walk<'a>(
    msg: &'a [u8],
    field: u32,
    mut wanted: impl FnMut(&'a [u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut reader = Reader { rest: msg };
    while !reader.rest.is_empty() {
        let (number, wire_type) = reader.tag()?;
        match reader.value(number, wire_type, 0)? {
            Some(value) if number == field => wanted(value)?,
            _ => {}
        }
    }
    Ok(())
}

/// A cursor over the unread part of a message. Every read shortens `rest`
/// with checked splits, so no input can make it panic.
struct Reader<'a> {
    rest: &'a [u8],
}

/// Nesting of groups inside groups the reader follows (the Go runtime's
/// limit is far higher; no real client nests groups at all).
const MAX_GROUP_DEPTH: u32 = 64;

impl<'a> Reader<'a> {
    /// Consumes the value of a field of `wire_type`; a length-delimited
    /// value is returned. A group (start to matching end) is skipped.
    fn value(
        &mut self,
        number: u32,
        wire_type: u8,
        depth: u32,
    ) -> Result<Option<&'a [u8]>, WireError> {
        match wire_type {
            WIRE_VARINT => {
                self.varint()?;
            }
            WIRE_FIXED64 => {
                self.take(8)?;
            }
            WIRE_LEN => {
                let len = self.varint()?;
                return self.take(len).map(Some);
            }
            WIRE_FIXED32 => {
                self.take(4)?;
            }
            WIRE_START_GROUP if depth < MAX_GROUP_DEPTH => loop {
                let (inner, inner_type) = self.tag()?;
                if inner_type == WIRE_END_GROUP {
                    if inner == number {
                        break;
                    }
                    return Err(WireError::BadWireType {
                        field: inner,
                        wire_type: inner_type,
                    });
                }
                self.value(inner, inner_type, depth + 1)?;
            },
            // An end without its start, groups nested too deep, and the
            // undefined wire types 6 and 7.
            _ => {
                return Err(WireError::BadWireType {
                    field: number,
                    wire_type,
                })
            }
        }
        Ok(None)
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for index in 0..MAX_VARINT_LEN {
            let (&byte, rest) = self.rest.split_first().ok_or(WireError::Truncated)?;
            self.rest = rest;
            // The tenth byte holds only bit 63: anything above 1 would
            // overflow u64 (Go's runtime refuses it too).
            if index == MAX_VARINT_LEN - 1 && byte > 1 {
                return Err(WireError::VarintTooLong);
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    /// A field's number and wire type.
    fn tag(&mut self) -> Result<(u32, u8), WireError> {
        let tag = self.varint()?;
        // The mask keeps three bits, so the cast cannot lose anything.
        let wire_type = (tag & 0x7) as u8;
        let number = tag >> 3;
        if number == 0 {
            return Err(WireError::FieldZero);
        }
        // Checked, not truncated: a huge tag must never alias a small field
        // number such as 1.
        match u32::try_from(number) {
            Ok(number) if number <= MAX_FIELD_NUMBER => Ok((number, wire_type)),
            _ => Err(WireError::FieldNumberTooLarge { field: number }),
        }
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
        let (value, rest) = self
            .rest
            .split_at_checked(len)
            .ok_or(WireError::Truncated)?;
        self.rest = rest;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test-only encoder, written for these tests.
    fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn tag(field: u32, wire_type: u8, out: &mut Vec<u8>) {
        varint((u64::from(field) << 3) | u64::from(wire_type), out);
    }

    fn len_field(field: u32, value: &[u8], out: &mut Vec<u8>) {
        tag(field, WIRE_LEN, out);
        varint(value.len() as u64, out);
        out.extend_from_slice(value);
    }

    #[test]
    fn describe_namespace_request() {
        // DescribeNamespaceRequest{namespace: "default"}.
        let msg = b"\x0a\x07default";
        assert_eq!(last_string_field(msg, 1), Ok(Some("default")));
    }

    #[test]
    fn respond_workflow_task_completed_namespace_is_field_9() {
        // RespondWorkflowTaskCompletedRequest: task_token (1), identity (3),
        // namespace (9, tag byte 0x4a).
        let mut msg = Vec::new();
        len_field(1, b"\x0a\x04ns-x\x12\x03wf1", &mut msg);
        len_field(3, b"worker@host", &mut msg);
        len_field(9, b"orders", &mut msg);
        assert_eq!(msg[msg.len() - 8], 0x4a);
        assert_eq!(last_string_field(&msg, 9), Ok(Some("orders")));
        // Field 1 here is the task token, bytes that are valid UTF-8 by
        // chance; the caller asks for the right field number per method.
        assert_eq!(last_string_field(&msg, 2), Ok(None));
    }

    #[test]
    fn absent_field() {
        let mut msg = Vec::new();
        len_field(2, b"workflow-id", &mut msg);
        tag(3, WIRE_VARINT, &mut msg);
        varint(42, &mut msg);
        assert_eq!(last_string_field(&msg, 1), Ok(None));
        assert_eq!(last_string_field(&[], 1), Ok(None));
    }

    #[test]
    fn empty_string_is_present() {
        assert_eq!(last_string_field(b"\x0a\x00", 1), Ok(Some("")));
    }

    #[test]
    fn last_occurrence_wins() {
        let mut msg = Vec::new();
        len_field(1, b"allowed", &mut msg);
        len_field(2, b"other", &mut msg);
        len_field(1, b"secret", &mut msg);
        assert_eq!(last_string_field(&msg, 1), Ok(Some("secret")));

        // An empty last occurrence still wins: the server sees "".
        len_field(1, b"", &mut msg);
        assert_eq!(last_string_field(&msg, 1), Ok(Some("")));
    }

    /// As in the Go runtime (checked against the frontend by the
    /// conformance suite): a wanted field with another wire type is an
    /// unknown field, and the last well-typed occurrence counts.
    #[test]
    fn wanted_field_with_wrong_wire_type_is_an_unknown_field() {
        let mut msg = Vec::new();
        len_field(1, b"default", &mut msg);
        tag(1, WIRE_VARINT, &mut msg);
        varint(7, &mut msg);
        assert_eq!(last_string_field(&msg, 1), Ok(Some("default")));
        assert_eq!(last_string_field(b"\x0d\x00\x00\x00\x00", 1), Ok(None));
        assert_eq!(
            last_string_field(b"\x09\x00\x00\x00\x00\x00\x00\x00\x00", 1),
            Ok(None)
        );
        assert_eq!(last_string_field(&msg, 2), Ok(None));
    }

    #[test]
    fn groups_are_skipped_whole_even_with_the_wanted_number() {
        // billing, then a group 1 holding a field 1 "payments": the group is
        // an unknown field; billing counts.
        let mut msg = Vec::new();
        len_field(1, b"billing", &mut msg);
        tag(1, WIRE_START_GROUP, &mut msg);
        len_field(1, b"payments", &mut msg);
        tag(7, WIRE_START_GROUP, &mut msg);
        tag(2, WIRE_VARINT, &mut msg);
        varint(1, &mut msg);
        tag(7, WIRE_END_GROUP, &mut msg);
        tag(1, WIRE_END_GROUP, &mut msg);
        assert_eq!(last_string_field(&msg, 1), Ok(Some("billing")));
        // A group never closed, or closed with another number.
        let mut open = Vec::new();
        tag(3, WIRE_START_GROUP, &mut open);
        len_field(1, b"x", &mut open);
        assert_eq!(last_string_field(&open, 1), Err(WireError::Truncated));
        let mut crossed = Vec::new();
        tag(3, WIRE_START_GROUP, &mut crossed);
        tag(4, WIRE_END_GROUP, &mut crossed);
        assert!(last_string_field(&crossed, 1).is_err());
    }

    #[test]
    fn truncated_length() {
        // Declares 7 bytes, holds 6.
        assert_eq!(
            last_string_field(b"\x0a\x07defaul", 1),
            Err(WireError::Truncated)
        );
        // Length varint cut off.
        assert_eq!(last_string_field(b"\x0a\x87", 1), Err(WireError::Truncated));
        // Tag varint cut off.
        assert_eq!(last_string_field(b"\x8a", 1), Err(WireError::Truncated));
        // Fixed-width fields cut off.
        assert_eq!(
            last_string_field(b"\x11\x00\x00\x00", 1),
            Err(WireError::Truncated)
        );
        assert_eq!(last_string_field(b"\x15\x00", 1), Err(WireError::Truncated));
        // A length past usize/u64 range of the buffer.
        let mut msg = Vec::new();
        tag(4, WIRE_LEN, &mut msg);
        varint(u64::MAX, &mut msg);
        assert_eq!(last_string_field(&msg, 1), Err(WireError::Truncated));
        // A truncated unknown field after the wanted one still fails: the
        // whole message must be well-formed.
        let mut msg = b"\x0a\x07default".to_vec();
        msg.extend_from_slice(b"\x12\x05ab");
        assert_eq!(last_string_field(&msg, 1), Err(WireError::Truncated));
    }

    #[test]
    fn varint_too_long() {
        // Eleven bytes with the continuation bit (field 2, a varint).
        let mut msg = vec![0x10];
        msg.extend_from_slice(&[0xff; 10]);
        msg.push(0x01);
        assert_eq!(last_string_field(&msg, 1), Err(WireError::VarintTooLong));
        // Ten bytes whose last one carries more than bit 63.
        let mut msg = vec![0x10];
        msg.extend_from_slice(&[0xff; 9]);
        msg.push(0x02);
        assert_eq!(last_string_field(&msg, 1), Err(WireError::VarintTooLong));
        // u64::MAX in ten bytes is fine.
        let mut msg = vec![0x10];
        varint(u64::MAX, &mut msg);
        assert_eq!(msg.len(), 11);
        assert_eq!(last_string_field(&msg, 1), Ok(None));
        // A tag varint that is too long.
        assert_eq!(
            last_string_field(&[0xff; 11], 1),
            Err(WireError::VarintTooLong)
        );
    }

    #[test]
    fn lone_group_ends_and_undefined_wire_types_are_refused() {
        for wire_type in [4u8, 6, 7] {
            let mut msg = b"\x0a\x07default".to_vec();
            tag(5, wire_type, &mut msg);
            assert_eq!(
                last_string_field(&msg, 1),
                Err(WireError::BadWireType {
                    field: 5,
                    wire_type
                }),
                "wire type {wire_type}"
            );
        }
    }

    #[test]
    fn field_number_zero() {
        assert_eq!(
            last_string_field(b"\x02\x01x", 1),
            Err(WireError::FieldZero)
        );
        assert_eq!(last_string_field(b"\x00", 1), Err(WireError::FieldZero));
    }

    #[test]
    fn field_numbers_beyond_the_maximum_never_alias() {
        // The maximum itself is a valid (unknown) field.
        let mut msg = Vec::new();
        len_field(MAX_FIELD_NUMBER, b"x", &mut msg);
        assert_eq!(last_string_field(&msg, 1), Ok(None));
        // 2^32 + 1 would read as field 1 if truncated to u32.
        let mut msg = Vec::new();
        varint(((1u64 << 32) + 1) << 3 | u64::from(WIRE_LEN), &mut msg);
        msg.extend_from_slice(b"\x06secret");
        assert_eq!(
            last_string_field(&msg, 1),
            Err(WireError::FieldNumberTooLarge {
                field: (1 << 32) + 1
            })
        );
        let mut msg = Vec::new();
        varint(u64::from(MAX_FIELD_NUMBER + 1) << 3, &mut msg);
        msg.push(0);
        assert_eq!(
            last_string_field(&msg, 1),
            Err(WireError::FieldNumberTooLarge {
                field: u64::from(MAX_FIELD_NUMBER) + 1
            })
        );
    }

    #[test]
    fn invalid_utf8() {
        assert_eq!(
            last_string_field(b"\x0a\x02\xc3\x28", 1),
            Err(WireError::InvalidUtf8 { field: 1 })
        );
        // An invalid earlier occurrence fails the message even though the
        // last one is valid, as the Go runtime does.
        let mut msg = Vec::new();
        len_field(1, b"\xff", &mut msg);
        len_field(1, b"default", &mut msg);
        assert_eq!(
            last_string_field(&msg, 1),
            Err(WireError::InvalidUtf8 { field: 1 })
        );
        // Invalid UTF-8 in a field not asked for is opaque bytes.
        let mut msg = Vec::new();
        len_field(3, b"\xff\xfe", &mut msg);
        len_field(1, b"default", &mut msg);
        assert_eq!(last_string_field(&msg, 1), Ok(Some("default")));
    }

    #[test]
    fn nested_field_with_same_number_is_not_top_level() {
        // StartWorkflowExecutionRequest-like: a nested message (field 3)
        // holding its own field 1, and the top-level namespace.
        let mut inner = Vec::new();
        len_field(1, b"nested-namespace", &mut inner);
        let mut msg = Vec::new();
        len_field(1, b"top", &mut msg);
        len_field(3, &inner, &mut msg);
        assert_eq!(last_string_field(&msg, 1), Ok(Some("top")));

        // Without a top-level field 1, the nested one is not found.
        let mut msg = Vec::new();
        len_field(3, &inner, &mut msg);
        assert_eq!(last_string_field(&msg, 1), Ok(None));
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let mut msg = Vec::new();
        tag(2, WIRE_VARINT, &mut msg);
        varint(u64::MAX, &mut msg);
        tag(3, WIRE_FIXED64, &mut msg);
        msg.extend_from_slice(&[0x0a; 8]);
        tag(4, WIRE_FIXED32, &mut msg);
        msg.extend_from_slice(&[0x0a; 4]);
        len_field(5, b"\x0a\x03bad", &mut msg);
        len_field(1, b"default", &mut msg);
        tag(1000, WIRE_VARINT, &mut msg);
        varint(1, &mut msg);
        len_field(MAX_FIELD_NUMBER, b"", &mut msg);
        assert_eq!(last_string_field(&msg, 1), Ok(Some("default")));
    }

    /// xorshift64*, enough to spread test inputs; no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = Vec::with_capacity(64);
        for _ in 0..20_000 {
            buf.clear();
            let len = rng.below(65) as usize;
            for _ in 0..len {
                // Bias toward small bytes so tags and lengths are often
                // plausible and the walk goes deep, not just byte one.
                let byte = match rng.below(4) {
                    0 => rng.next() as u8,
                    _ => rng.below(0x20) as u8,
                };
                buf.push(byte);
            }
            for field in [1, 4, 9] {
                let result = last_string_field(&buf, field);
                if let Ok(Some(value)) = result {
                    // A found value is a slice of the input.
                    let range = buf.as_ptr_range();
                    assert!(range.contains(&value.as_ptr()) || value.is_empty());
                }
            }
        }
    }

    /// Random well-formed messages: the reader must return exactly the last
    /// occurrence that the encoder wrote.
    #[test]
    fn random_well_formed_messages_give_the_last_occurrence() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for round in 0..5_000 {
            let mut msg = Vec::new();
            let mut expected: Option<String> = None;
            for _ in 0..rng.below(12) {
                let field = 1 + rng.below(12) as u32;
                match rng.below(4) {
                    0 if field != 1 => {
                        tag(field, WIRE_VARINT, &mut msg);
                        varint(rng.next() >> rng.below(64), &mut msg);
                    }
                    1 if field != 1 => {
                        tag(field, WIRE_FIXED64, &mut msg);
                        msg.extend_from_slice(&rng.next().to_le_bytes());
                    }
                    2 if field != 1 => {
                        tag(field, WIRE_FIXED32, &mut msg);
                        msg.extend_from_slice(&(rng.next() as u32).to_le_bytes());
                    }
                    _ => {
                        let len = rng.below(20) as usize;
                        let value: String = (0..len)
                            .map(|_| char::from(b'a' + rng.below(26) as u8))
                            .collect();
                        len_field(field, value.as_bytes(), &mut msg);
                        if field == 1 {
                            expected = Some(value);
                        }
                    }
                }
            }
            assert_eq!(
                last_string_field(&msg, 1),
                Ok(expected.as_deref()),
                "round {round}: {msg:02x?}"
            );
        }
    }
}
