//! Protobuf wire encoding for structured fuzz inputs, and a reference reader
//! built on prost's wire primitives (`prost::encoding`), independent of the
//! proxy's own reader.

use arbitrary::Arbitrary;
use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};

pub fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn tag(field: u32, wire_type: u8, out: &mut Vec<u8>) {
    varint((u64::from(field) << 3) | u64::from(wire_type), out);
}

pub fn len_field(field: u32, value: &[u8], out: &mut Vec<u8>) {
    tag(field, 2, out);
    varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// A field number that is mostly one of the interesting ones.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Number {
    Small(u8),
    Any(u32),
}

impl Number {
    pub fn get(self) -> u32 {
        match self {
            // 0 stays possible (invalid), 1..=15 take one tag byte.
            Number::Small(n) => u32::from(n % 16),
            Number::Any(n) => n,
        }
    }
}

/// One field of a generated message; `Raw` bytes let anything through.
#[derive(Debug, Clone, Arbitrary)]
pub enum Field {
    Varint(Number, u64),
    Fixed64(Number, u64),
    Fixed32(Number, u32),
    Text(Number, String),
    Bytes(Number, Vec<u8>),
    Message(Number, Vec<Field>),
    Group(Number, Vec<Field>),
    /// A tag with any wire type, then nothing.
    Tag(Number, u8),
    Raw(Vec<u8>),
}

pub fn encode(fields: &[Field], out: &mut Vec<u8>) {
    for f in fields {
        match f {
            Field::Varint(n, v) => {
                tag(n.get(), 0, out);
                varint(*v, out);
            }
            Field::Fixed64(n, v) => {
                tag(n.get(), 1, out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Fixed32(n, v) => {
                tag(n.get(), 5, out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Text(n, s) => len_field(n.get(), s.as_bytes(), out),
            Field::Bytes(n, b) => len_field(n.get(), b, out),
            Field::Message(n, inner) => {
                let mut body = Vec::new();
                encode(inner, &mut body);
                len_field(n.get(), &body, out);
            }
            Field::Group(n, inner) => {
                tag(n.get(), 3, out);
                encode(inner, out);
                tag(n.get(), 4, out);
            }
            Field::Tag(n, wt) => tag(n.get(), wt & 7, out),
            Field::Raw(b) => out.extend_from_slice(b),
        }
    }
}

/// The largest field number protobuf allows.
pub const MAX_FIELD: u32 = (1 << 29) - 1;

/// Why the reference reader refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefError {
    /// prost's decoder refused the wire format.
    Wire(String),
    /// A field number above the protobuf maximum (prost reads up to u32).
    FieldNumber,
    /// The wanted string field is not UTF-8 (proto3 refuses such a message).
    Utf8,
}

/// Every value of `field` with wire type LEN at the top level of `msg`, as
/// a protobuf decoder sees them: a field of that number with another wire
/// type is an unknown field (as protobuf-go, the frontend's decoder, treats
/// it), skipped like every other.
pub fn len_values(msg: &[u8], field: u32) -> Result<Vec<&[u8]>, RefError> {
    let mut buf = msg;
    let mut out = Vec::new();
    while buf.has_remaining() {
        let (number, wire_type) =
            decode_key(&mut buf).map_err(|e| RefError::Wire(e.to_string()))?;
        if number > MAX_FIELD {
            return Err(RefError::FieldNumber);
        }
        if number == field && wire_type == WireType::LengthDelimited {
            let len = decode_varint(&mut buf).map_err(|e| RefError::Wire(e.to_string()))?;
            if len > buf.remaining() as u64 {
                return Err(RefError::Wire("buffer underflow".into()));
            }
            let (value, rest) = buf.split_at(len as usize);
            out.push(value);
            buf = rest;
        } else {
            skip_field(wire_type, number, &mut buf, DecodeContext::default())
                .map_err(|e| RefError::Wire(e.to_string()))?;
        }
    }
    Ok(out)
}

/// The value of a proto3 `string` field: the last occurrence; every
/// occurrence must be UTF-8.
pub fn last_string(msg: &[u8], field: u32) -> Result<Option<&str>, RefError> {
    let mut last = None;
    for v in len_values(msg, field)? {
        last = Some(std::str::from_utf8(v).map_err(|_| RefError::Utf8)?);
    }
    Ok(last)
}

/// The value of a `bytes` field: the last occurrence.
pub fn last_bytes(msg: &[u8], field: u32) -> Result<Option<&[u8]>, RefError> {
    Ok(len_values(msg, field)?.pop())
}

/// The deepest nesting of groups in `msg` (the proxy refuses more than 64).
pub fn group_depth(msg: &[u8]) -> usize {
    let mut buf = msg;
    let mut depth = 0usize;
    let mut max = 0usize;
    while buf.has_remaining() {
        let Ok((_, wire_type)) = decode_key(&mut buf) else {
            break;
        };
        match wire_type {
            WireType::StartGroup => {
                depth += 1;
                max = max.max(depth);
            }
            WireType::EndGroup => depth = depth.saturating_sub(1),
            WireType::Varint => {
                if decode_varint(&mut buf).is_err() {
                    break;
                }
            }
            WireType::SixtyFourBit => {
                if buf.remaining() < 8 {
                    break;
                }
                buf.advance(8);
            }
            WireType::ThirtyTwoBit => {
                if buf.remaining() < 4 {
                    break;
                }
                buf.advance(4);
            }
            WireType::LengthDelimited => {
                let Ok(len) = decode_varint(&mut buf) else {
                    break;
                };
                if len > buf.remaining() as u64 {
                    break;
                }
                buf.advance(len as usize);
            }
        }
    }
    max
}
