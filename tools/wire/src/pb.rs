//! Protobuf encoding by hand: varints, tags, fields; and a decoder of a
//! message's top level into (field number, value) pairs.

/// Wire type of varint fields (int32/64, uint32/64, bool, enum).
pub const VARINT: u32 = 0;
/// Wire type of 64-bit fixed fields (fixed64, sfixed64, double).
pub const I64: u32 = 1;
/// Wire type of length-delimited fields (string, bytes, messages, packed).
pub const LEN: u32 = 2;
/// Wire type of 32-bit fixed fields (fixed32, sfixed32, float).
pub const I32: u32 = 5;

/// Appends `v` as a base-128 varint (1 to 10 bytes).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `v` as a base-128 varint.
pub fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    put_varint(&mut out, v);
    out
}

/// The key of a field: `(num << 3) | wire_type`, as a varint.
pub fn tag(num: u32, wire_type: u32) -> Vec<u8> {
    varint((u64::from(num) << 3) | u64::from(wire_type))
}

/// A varint field.
pub fn field_varint(num: u32, v: u64) -> Vec<u8> {
    let mut out = tag(num, VARINT);
    put_varint(&mut out, v);
    out
}

/// A length-delimited field with raw bytes.
pub fn field_bytes(num: u32, b: &[u8]) -> Vec<u8> {
    let mut out = tag(num, LEN);
    out.reserve(10 + b.len());
    put_varint(&mut out, b.len() as u64);
    out.extend_from_slice(b);
    out
}

/// A string field (length-delimited, UTF-8).
pub fn field_string(num: u32, s: &str) -> Vec<u8> {
    field_bytes(num, s.as_bytes())
}

/// An embedded message is length-delimited like bytes.
pub fn field_message(num: u32, encoded: &[u8]) -> Vec<u8> {
    field_bytes(num, encoded)
}

/// The fields one after another (a message is the concatenation of its
/// fields, in any order).
pub fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// One decoded field: number and value (varint, or the raw bytes of a
/// length-delimited field; fixed32/64 as raw bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Varint(u64),
    Bytes(Vec<u8>),
    Fixed(Vec<u8>),
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// Decodes the top level of a message into (field number, value) pairs, in
/// wire order.
pub fn decode(buf: &[u8]) -> Result<Vec<(u32, Value)>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        let num = (key >> 3) as u32;
        let value = match (key & 7) as u32 {
            VARINT => Value::Varint(read_varint(buf, &mut pos)?),
            LEN => {
                let len = read_varint(buf, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len());
                let end = end.ok_or("truncated length-delimited field")?;
                let v = buf[pos..end].to_vec();
                pos = end;
                Value::Bytes(v)
            }
            w @ (I64 | I32) => {
                let n = if w == I64 { 8 } else { 4 };
                let end = pos + n;
                if end > buf.len() {
                    return Err("truncated fixed field".into());
                }
                let v = buf[pos..end].to_vec();
                pos = end;
                Value::Fixed(v)
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        out.push((num, value));
    }
    Ok(out)
}

/// The last occurrence of length-delimited field `num` (protobuf's
/// last-one-wins rule), as raw bytes.
pub fn get_bytes(buf: &[u8], num: u32) -> Option<Vec<u8>> {
    decode(buf)
        .ok()?
        .into_iter()
        .rev()
        .find_map(|(n, v)| match v {
            Value::Bytes(b) if n == num => Some(b),
            _ => None,
        })
}

/// The last occurrence of string field `num` (invalid UTF-8 replaced).
pub fn get_string(buf: &[u8], num: u32) -> Option<String> {
    get_bytes(buf, num).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The last occurrence of varint field `num`.
pub fn get_varint(buf: &[u8], num: u32) -> Option<u64> {
    decode(buf)
        .ok()?
        .into_iter()
        .rev()
        .find_map(|(n, v)| match v {
            Value::Varint(x) if n == num => Some(x),
            _ => None,
        })
}

/// Follows a path of embedded-message fields, e.g. `&[1, 1]` for
/// DescribeNamespaceResponse.namespace_info.name.
pub fn get_path_string(buf: &[u8], path: &[u32]) -> Option<String> {
    let (last, inner) = path.split_last()?;
    let mut cur = buf.to_vec();
    for num in inner {
        cur = get_bytes(&cur, *num)?;
    }
    get_string(&cur, *last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_encode_as_protobuf_does() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(1), [1]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(u64::MAX).len(), 10);
        let mut buf = Vec::new();
        put_varint(&mut buf, 300);
        put_varint(&mut buf, 1);
        assert_eq!(buf, [0xac, 0x02, 0x01]);
    }

    #[test]
    fn fields_have_their_key_and_length() {
        assert_eq!(tag(1, LEN), [0x0a]);
        assert_eq!(tag(16, VARINT), [0x80, 0x01]);
        assert_eq!(field_varint(1, 1), [0x08, 0x01]);
        assert_eq!(field_string(1, "abc"), [0x0a, 3, b'a', b'b', b'c']);
        assert_eq!(field_message(2, &[]), [0x12, 0]);
        let long = vec![7u8; 200];
        let f = field_bytes(3, &long);
        assert_eq!(&f[..3], &[0x1a, 0xc8, 0x01]);
        assert_eq!(f.len(), 3 + 200);
    }

    #[test]
    fn decoding_reads_back_what_was_encoded() {
        let msg = concat(&[
            field_string(1, "ns"),
            field_varint(2, 300),
            field_message(3, &field_string(1, "inner")),
            field_string(1, "last"),
        ]);
        assert_eq!(
            decode(&msg).unwrap(),
            vec![
                (1, Value::Bytes(b"ns".to_vec())),
                (2, Value::Varint(300)),
                (3, Value::Bytes(field_string(1, "inner"))),
                (1, Value::Bytes(b"last".to_vec())),
            ]
        );
        assert_eq!(get_string(&msg, 1).as_deref(), Some("last"));
        assert_eq!(get_varint(&msg, 2), Some(300));
        assert_eq!(get_path_string(&msg, &[3, 1]).as_deref(), Some("inner"));
        assert_eq!(get_bytes(&msg, 9), None);
    }

    #[test]
    fn decoding_refuses_truncated_input() {
        assert!(decode(&[0x0a, 5, b'a']).is_err());
        assert!(decode(&[0x08]).is_err());
        assert!(decode(&[0x0d, 1, 2]).is_err());
        assert!(decode(&[0x0b]).is_err(), "wire type 3 (groups)");
    }
}
