//! gRPC message framing: each message on an HTTP/2 stream is prefixed with
//! a compressed flag byte and its length as a big-endian u32.

use bytes::{BufMut, Bytes, BytesMut};

/// Length of the prefix of every gRPC message.
pub const PREFIX_LEN: usize = 5;

/// The 5-byte prefix of a message of `len` bytes: flag byte (1 =
/// compressed), then the length, big-endian.
pub fn prefix(len: u32, compressed: bool) -> [u8; PREFIX_LEN] {
    let [a, b, c, d] = len.to_be_bytes();
    [u8::from(compressed), a, b, c, d]
}

/// One length-prefixed gRPC message. Panics if `message` is 4 GiB or more
/// (the prefix cannot say so).
pub fn frame(message: &[u8], compressed: bool) -> Bytes {
    let len = u32::try_from(message.len()).expect("a gRPC message is under 4 GiB");
    let mut b = BytesMut::with_capacity(PREFIX_LEN + message.len());
    b.put_slice(&prefix(len, compressed));
    b.put_slice(message);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_flag_and_the_length() {
        assert_eq!(
            &frame(b"abc", false)[..],
            &[0, 0, 0, 0, 3, b'a', b'b', b'c']
        );
        assert_eq!(&frame(b"", false)[..], &[0, 0, 0, 0, 0]);
        assert_eq!(&frame(b"x", true)[..], &[1, 0, 0, 0, 1, b'x']);
        assert_eq!(prefix(10 << 20, false), [0, 0, 0xa0, 0, 0]);
    }
}
