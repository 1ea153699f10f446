//! The few protobuf requests the probe sends, encoded by hand (the proxy
//! itself only reads protobuf, with `temporal::wire`): varints, tags and
//! length-delimited fields, and the three requests built from them. Field
//! numbers follow temporal/api/workflowservice/v1/request_response.proto and
//! temporal/api/taskqueue/v1/message.proto.

use bytes::{BufMut, Bytes, BytesMut};

/// Wire type of length-delimited fields (strings, bytes, messages).
const LEN: u64 = 2;
/// Wire type of varint fields.
const VARINT: u64 = 0;

/// A field number no GetSystemInfoRequest field uses (the request has none):
/// the frontend's protobuf runtime keeps it as an unknown field and ignores
/// it, so it pads a request without changing what the call does.
const PADDING_FIELD: u32 = 1000;

/// Bytes a varint of `v` takes.
fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        // The mask keeps seven bits.
        out.put_u8((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_tag(out: &mut BytesMut, field: u32, wire_type: u64) {
    put_varint(out, (u64::from(field) << 3) | wire_type);
}

fn put_bytes(out: &mut BytesMut, field: u32, value: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, value.len() as u64);
    out.put_slice(value);
}

fn put_varint_field(out: &mut BytesMut, field: u32, value: u64) {
    put_tag(out, field, VARINT);
    put_varint(out, value);
}

/// GetSystemInfoRequest: no fields.
pub fn get_system_info() -> Bytes {
    Bytes::new()
}

/// DescribeNamespaceRequest { namespace = 1 }.
pub fn describe_namespace(namespace: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(namespace.len() + 4);
    put_bytes(&mut out, 1, namespace.as_bytes());
    out.freeze()
}

/// PollWorkflowTaskQueueRequest { namespace = 1, task_queue = 2 (TaskQueue
/// { name = 1, kind = 2: TASK_QUEUE_KIND_NORMAL }), identity = 3 }.
pub fn poll_workflow_task_queue(namespace: &str, task_queue: &str, identity: &str) -> Bytes {
    let mut queue = BytesMut::new();
    put_bytes(&mut queue, 1, task_queue.as_bytes());
    put_varint_field(&mut queue, 2, 1);
    let mut out = BytesMut::new();
    put_bytes(&mut out, 1, namespace.as_bytes());
    put_bytes(&mut out, 2, &queue);
    put_bytes(&mut out, 3, identity.as_bytes());
    out.freeze()
}

/// The smallest message [`padded_get_system_info`] can make: the padding
/// field's tag and an empty value.
pub const MIN_PADDED: usize = 3;

/// A GetSystemInfoRequest of exactly `size` bytes (at least [`MIN_PADDED`]):
/// one unknown bytes field of zeros, sized so that tag, length and value
/// add up to `size`.
pub fn padded_get_system_info(size: usize) -> Bytes {
    let size = size.max(MIN_PADDED);
    let tag_len = varint_len((u64::from(PADDING_FIELD) << 3) | LEN);
    // The length's varint depends on the value's length: take the longest
    // that fits, then shorten the value by what the varint took.
    let mut value_len = size - tag_len - 1;
    while value_len > 0 && tag_len + varint_len(value_len as u64) + value_len > size {
        value_len -= 1;
    }
    // A varint one byte shorter than its value needs can leave one byte
    // over (e.g. 130 bytes); a longer varint encoding of the same length is
    // valid protobuf, so the length takes that byte instead.
    let slack = size - (tag_len + varint_len(value_len as u64) + value_len);
    let mut out = BytesMut::with_capacity(size);
    put_tag(&mut out, PADDING_FIELD, LEN);
    put_padded_varint(
        &mut out,
        value_len as u64,
        varint_len(value_len as u64) + slack,
    );
    out.put_bytes(0, value_len);
    out.freeze()
}

/// `v` as a varint of exactly `len` bytes (continuation bits on zero
/// groups), which protobuf parsers accept up to 10 bytes.
fn put_padded_varint(out: &mut BytesMut, mut v: u64, len: usize) {
    for i in 0..len {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if i + 1 < len {
            out.put_u8(low | 0x80);
        } else {
            out.put_u8(low);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temporal::wire::{last_bytes_field, last_string_field};

    #[test]
    fn varints_take_the_bytes_protobuf_gives_them() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(16_383), 2);
        assert_eq!(varint_len(16_384), 3);
        assert_eq!(varint_len(u64::MAX), 10);
        let mut out = BytesMut::new();
        put_varint(&mut out, 300);
        assert_eq!(&out[..], &[0xac, 0x02]);
    }

    #[test]
    fn padded_requests_have_exactly_the_size_asked_and_read_back() {
        for size in (3..600).chain([1024, 16_383, 16_384, 16_385, 4 << 20, (4 << 20) + 1]) {
            let msg = padded_get_system_info(size);
            assert_eq!(msg.len(), size, "size {size}");
            // Well-formed: the proxy's reader walks it, and the padding is
            // the one field it holds.
            let value = last_bytes_field(&msg, PADDING_FIELD).unwrap().unwrap();
            assert!(value.iter().all(|&b| b == 0));
            assert_eq!(last_string_field(&msg, 1).unwrap(), None);
        }
    }

    #[test]
    fn requests_carry_their_fields() {
        let d = describe_namespace("billing");
        assert_eq!(last_string_field(&d, 1).unwrap(), Some("billing"));
        let p = poll_workflow_task_queue("default", "q1", "probe");
        assert_eq!(last_string_field(&p, 1).unwrap(), Some("default"));
        assert_eq!(last_string_field(&p, 3).unwrap(), Some("probe"));
        let queue = last_bytes_field(&p, 2).unwrap().unwrap();
        assert_eq!(last_string_field(queue, 1).unwrap(), Some("q1"));
        assert_eq!(&queue[queue.len() - 2..], &[0x10, 0x01], "kind NORMAL");
        assert!(get_system_info().is_empty());
    }
}
