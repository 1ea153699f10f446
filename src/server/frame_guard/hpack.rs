//! Client header blocks checked before h2 decodes them, so that a field h2
//! would refuse for the whole connection costs only its own stream, as it
//! does in grpc-go (the Temporal frontend).
//!
//! h2 decodes a header block into `http` types, and a name or value those
//! types refuse (an uppercase or otherwise invalid name, a value with a
//! control character, an unknown pseudo-header, a non-UTF-8 `:path`) fails
//! the HPACK decoding itself: h2 answers with GOAWAY and every call of the
//! client's connection dies. grpc-go reads the same fields as a malformed
//! request (RFC 9113 §8.2.1) and resets only that stream. [`HeaderCheck`]
//! walks each block with a shadow of h2's HPACK state (the dynamic table's
//! entry sizes, not their contents) and, where h2 would fail, rewrites the
//! offending field into one h2 accepts, of exactly the same length (so that
//! both decoders' tables stay the same size and evict alike), and appends a
//! `te: x` field, which h2 treats as a malformed request: it resets that
//! stream with PROTOCOL_ERROR, as grpc-go does. A later block that refers
//! to a rewritten table entry is marked the same way, since grpc-go would
//! see the original field again.
//!
//! `:path` is read as grpc-go reads it, byte for byte: `http` would drop a
//! `#fragment` (the proxy would then look one method up and the frontend
//! execute another) and refuse bytes the frontend accepts (space, non-ASCII)
//! by resetting the stream. Those bytes become `~`, so the call reaches
//! `layers::path` and is refused as the frontend refuses a method it does
//! not know (UNIMPLEMENTED), never resolved differently.
//!
//! Blocks that are broken at the HPACK level (a bad index, bad Huffman code,
//! an oversized integer or table size) are left alone and checking stops:
//! h2 and grpc-go both close the connection for those.

use std::collections::VecDeque;

use super::huffman;

/// The HPACK dynamic table size h2 decodes with (SETTINGS_HEADER_TABLE_SIZE,
/// h2's default, which the proxy does not change).
pub const TABLE_SIZE: usize = 4096;

/// RFC 7541 §4.1: an entry's size is its name and value lengths plus 32.
const ENTRY_OVERHEAD: usize = 32;

/// Appended to a block to make h2 reset its stream (RFC 9113 §8.2.2: `te`
/// may only be `trailers`): a literal without indexing, new name.
const MALFORMED_MARK: [u8; 6] = [0x00, 0x02, b't', b'e', 0x01, b'x'];

/// What a field name is, as far as the checks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Regular,
    Authority,
    Method,
    Path,
    Scheme,
    Protocol,
    /// `:status`, which has no place in a request.
    Status,
    /// Not a name h2 accepts: uppercase or invalid characters, empty, or an
    /// unknown pseudo-header.
    Bad,
}

/// The static table's names (RFC 7541 Appendix A). Its fields are all
/// valid; a literal can take its name from it.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// One entry of the dynamic table, as far as the checks need it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    size: usize,
    /// The name's length as the client's encoder counts it.
    name_len: usize,
    name: Name,
    /// The entry's name or value was rewritten: a field using it is one
    /// grpc-go would refuse.
    tainted_name: bool,
    tainted_value: bool,
    /// An empty name that h2 holds as `x`, one byte longer than the
    /// client's: a field taking its name from here gives a byte of its
    /// value back, or the tables would drift apart.
    grown_name: bool,
}

/// What to do with a block.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// h2 decodes it as grpc-go would: pass it unchanged.
    Clean,
    /// Pass this block instead.
    Rewritten(Vec<u8>),
    /// Broken at the HPACK level: pass it unchanged (h2 closes the
    /// connection) and stop checking.
    Broken,
}

/// The shadow of h2's HPACK decoder for one connection's client blocks.
#[derive(Debug)]
pub struct HeaderCheck {
    /// Newest first, as HPACK indexes them.
    table: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// Decoded strings, reused from field to field.
    name: Vec<u8>,
    value: Vec<u8>,
    /// Literal-name fields as decoded, for tests to compare.
    #[cfg(test)]
    pub literals: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Default for HeaderCheck {
    fn default() -> Self {
        HeaderCheck {
            table: VecDeque::new(),
            size: 0,
            max_size: TABLE_SIZE,
            name: Vec::new(),
            value: Vec::new(),
            #[cfg(test)]
            literals: Vec::new(),
        }
    }
}

/// A literal field being checked: its decoded name and value, and where
/// its name came from.
struct Literal {
    /// 0x40 with incremental indexing, 0x00 without, 0x10 never indexed.
    kind: u8,
    /// Prefix bits of the name index: 6 with incremental indexing, else 4.
    prefix: u8,
    /// 0: a literal name (in `HeaderCheck::name`), else the table index.
    name_index: usize,
    name: Name,
    name_len: usize,
    tainted_name: bool,
    /// The name comes from an entry h2 holds one byte longer
    /// ([`Entry::grown_name`]).
    grown_name: bool,
}

impl HeaderCheck {
    /// Checks one complete header block (the fragments of a HEADERS frame
    /// and its CONTINUATIONs, joined). `request` is true for the block
    /// that opens a stream (false for trailers).
    pub fn check(&mut self, block: &[u8], request: bool) -> Verdict {
        let mut cursor = Cursor {
            bytes: block,
            pos: 0,
        };
        // Built only from the first field that needs rewriting on.
        let mut out: Option<Vec<u8>> = None;
        let mut malformed = false;
        let mut fields_seen = false;
        while !cursor.done() {
            let start = cursor.pos;
            let Some(first) = cursor.peek() else {
                return Verdict::Broken;
            };
            if first & 0x80 != 0 {
                // Indexed field.
                let Some(index) = cursor.int(7) else {
                    return Verdict::Broken;
                };
                match self.entry(index) {
                    Lookup::Static => {}
                    Lookup::Dynamic(entry) => {
                        malformed |= entry.tainted_name || entry.tainted_value;
                    }
                    Lookup::Missing => return Verdict::Broken,
                }
                fields_seen = true;
                copy_through(&mut out, block, start, cursor.pos);
                continue;
            }
            if first & 0xe0 == 0x20 {
                // Dynamic table size update: only before the first field,
                // and never above what the decoder allows.
                let Some(size) = cursor.int(5) else {
                    return Verdict::Broken;
                };
                if fields_seen || size > TABLE_SIZE {
                    return Verdict::Broken;
                }
                self.max_size = size;
                self.evict(0);
                copy_through(&mut out, block, start, cursor.pos);
                continue;
            }
            fields_seen = true;
            let (kind, prefix) = if first & 0xc0 == 0x40 {
                (0x40, 6)
            } else {
                (first & 0xf0, 4)
            };
            let Some(literal) = self.read_name(&mut cursor, kind, prefix) else {
                return Verdict::Broken;
            };
            if cursor.string(&mut self.value).is_none() {
                return Verdict::Broken;
            }
            // The entry's size as the client counts it: the rewrites below
            // keep a field's total length, but may move a byte from value
            // to name.
            let size = literal.name_len + self.value.len() + ENTRY_OVERHEAD;
            #[cfg(test)]
            if literal.name_index == 0 {
                self.literals.push((self.name.clone(), self.value.clone()));
            }
            let fix = self.judge(&literal, request);
            if fix.unfixable {
                return Verdict::Broken;
            }
            malformed |= fix.malformed || literal.tainted_name;
            if kind == 0x40 {
                let grown = matches!(&fix.new_name, Some(new) if new.len() > literal.name_len);
                self.insert(Entry {
                    size,
                    name_len: literal.name_len,
                    name: literal.name,
                    tainted_name: literal.tainted_name || fix.new_name.is_some(),
                    tainted_value: fix.malformed && fix.new_name.is_none(),
                    grown_name: literal.grown_name || grown,
                });
            }
            if fix.rewrite {
                let out = out.get_or_insert_with(|| block[..start].to_vec());
                self.encode_literal(out, &literal, fix.new_name.as_deref());
            } else {
                copy_through(&mut out, block, start, cursor.pos);
            }
        }
        self.trim_scratch();
        if malformed {
            let mut out = out.unwrap_or_else(|| block.to_vec());
            out.extend_from_slice(&MALFORMED_MARK);
            return Verdict::Rewritten(out);
        }
        match out {
            Some(out) => Verdict::Rewritten(out),
            None => Verdict::Clean,
        }
    }

    /// Reads the name part of a literal field.
    fn read_name(&mut self, cursor: &mut Cursor<'_>, kind: u8, prefix: u8) -> Option<Literal> {
        let name_index = cursor.int(prefix)?;
        if name_index == 0 {
            cursor.string(&mut self.name)?;
            let name = classify(&self.name);
            return Some(Literal {
                kind,
                prefix,
                name_index,
                name,
                name_len: self.name.len(),
                tainted_name: false,
                grown_name: false,
            });
        }
        let (name, name_len, tainted_name, grown_name) = match self.entry(name_index) {
            Lookup::Static => {
                let text = STATIC_NAMES[name_index - 1];
                (classify(text.as_bytes()), text.len(), false, false)
            }
            Lookup::Dynamic(entry) => (
                entry.name,
                entry.name_len,
                entry.tainted_name,
                entry.grown_name,
            ),
            Lookup::Missing => return None,
        };
        Some(Literal {
            kind,
            prefix,
            name_index,
            name,
            name_len,
            tainted_name,
            grown_name,
        })
    }

    /// Decides what becomes of a literal field (its value is in
    /// `self.value`, a literal name in `self.name`), sanitizing the value in
    /// place.
    fn judge(&mut self, literal: &Literal, request: bool) -> Fix {
        let mut fix = Fix::default();
        let name = if literal.name == Name::Status && request {
            Name::Bad
        } else {
            literal.name
        };
        if name == Name::Bad {
            // A literal name h2 would refuse (names from the table were
            // judged when they were inserted).
            if literal.name_index == 0 {
                let mut new = self.name.clone();
                sanitize_name(&mut new);
                if new.is_empty() {
                    // Nothing of the same length is valid; the value gives
                    // up a byte to the name (total length unchanged). With
                    // no value to give, only a field outside the table may
                    // grow; an indexed one has no valid rewrite.
                    if self.value.is_empty() {
                        if literal.kind == 0x40 {
                            fix.unfixable = true;
                            return fix;
                        }
                    } else {
                        self.value.remove(0);
                    }
                    new.push(b'x');
                }
                fix.new_name = Some(new);
            } else if literal.grown_name {
                // h2 holds the entry's name as `x`, the client as empty:
                // the value gives that byte back, as when the name was
                // first given one. With none to give, only a field outside
                // the table may be a byte longer.
                if !self.value.is_empty() {
                    self.value.remove(0);
                } else if literal.kind == 0x40 {
                    fix.unfixable = true;
                    return fix;
                }
            }
            fix.malformed = true;
            fix.rewrite = literal.name_index == 0 || literal.grown_name;
        }
        for byte in self.value.iter_mut() {
            let control = (*byte < 0x20 && *byte != b'\t') || *byte == 0x7f;
            if control {
                // grpc-go refuses the field; h2 would refuse the block.
                *byte = b'x';
                fix.malformed = true;
                fix.rewrite = true;
            } else if request && name == Name::Path && !is_path_char(*byte) {
                *byte = b'~';
                fix.rewrite = true;
            } else if (matches!(name, Name::Authority | Name::Scheme | Name::Protocol)
                || name == Name::Path)
                && *byte >= 0x80
            {
                // h2 needs these as UTF-8 (a `:path` outside a request too:
                // in trailers); grpc-go takes any bytes.
                *byte = b'x';
                fix.rewrite = true;
            }
        }
        if name == Name::Method && !self.value.iter().all(|&b| is_token_char(b)) {
            for byte in self.value.iter_mut() {
                if !is_token_char(*byte) {
                    *byte = b'X';
                }
            }
            fix.malformed = true;
            fix.rewrite = true;
        }
        if name == Name::Method && self.value.is_empty() {
            // h2 refuses an empty method for the connection: only a
            // non-indexed field can be given another length.
            if literal.kind == 0x40 {
                fix.unfixable = true;
            } else {
                self.value.push(b'X');
                fix.malformed = true;
                fix.rewrite = true;
            }
        }
        // A `:status` that keeps its name (a table name, or trailers) must
        // be a status code for h2, which otherwise fails the connection's
        // HPACK decoding: any value of three bytes becomes 200 (the same
        // table size); another length only where nothing is indexed.
        // (A table name renamed when it was inserted is no `:status` for h2.)
        let keeps_status_name = !literal.tainted_name && (literal.name_index != 0 || !request);
        if literal.name == Name::Status && keeps_status_name && !is_status_code(&self.value) {
            if self.value.len() == 3 || literal.kind != 0x40 {
                self.value.clear();
                self.value.extend_from_slice(b"200");
                fix.malformed = true;
                fix.rewrite = true;
            } else {
                fix.unfixable = true;
            }
        }
        fix
    }

    fn encode_literal(&self, out: &mut Vec<u8>, literal: &Literal, new_name: Option<&[u8]>) {
        match new_name {
            Some(name) => {
                encode_int(out, literal.kind, literal.prefix, 0);
                encode_raw_string(out, name);
            }
            None if literal.name_index == 0 => {
                encode_int(out, literal.kind, literal.prefix, 0);
                encode_raw_string(out, &self.name);
            }
            None => encode_int(out, literal.kind, literal.prefix, literal.name_index),
        }
        encode_raw_string(out, &self.value);
    }

    fn entry(&self, index: usize) -> Lookup {
        match index {
            0 => Lookup::Missing,
            1..=61 => Lookup::Static,
            _ => self
                .table
                .get(index - 62)
                .map_or(Lookup::Missing, |e| Lookup::Dynamic(*e)),
        }
    }

    fn insert(&mut self, entry: Entry) {
        self.evict(entry.size);
        if entry.size <= self.max_size {
            self.size += entry.size;
            self.table.push_front(entry);
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit (all of them
    /// when `room` is over the maximum: the entry is then not added).
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.table.pop_back() {
                Some(old) => self.size -= old.size,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    /// Keeps the scratch buffers from holding on to a large header forever.
    fn trim_scratch(&mut self) {
        for buf in [&mut self.name, &mut self.value] {
            if buf.capacity() > 16 * 1024 {
                *buf = Vec::new();
            }
        }
    }
}

enum Lookup {
    Static,
    Dynamic(Entry),
    Missing,
}

#[derive(Debug, Default)]
struct Fix {
    /// The field is one grpc-go refuses: the stream gets reset.
    malformed: bool,
    /// The field must be re-encoded (its value, in `HeaderCheck::value`,
    /// was changed, or it gets `new_name`).
    rewrite: bool,
    new_name: Option<Vec<u8>>,
    /// No rewrite keeps the dynamic tables alike and makes the field one
    /// h2 decodes: the block is Broken (h2 closes the connection).
    unfixable: bool,
}

/// What h2 (the http crate) takes as a `:status`: three digits, 100 to 999.
fn is_status_code(value: &[u8]) -> bool {
    value.len() == 3
        && (b'1'..=b'9').contains(&value[0])
        && value[1..].iter().all(u8::is_ascii_digit)
}

fn copy_through(out: &mut Option<Vec<u8>>, block: &[u8], start: usize, end: usize) {
    if let Some(out) = out {
        out.extend_from_slice(&block[start..end]);
    }
}

fn classify(name: &[u8]) -> Name {
    match name {
        b":authority" => Name::Authority,
        b":method" => Name::Method,
        b":path" => Name::Path,
        b":scheme" => Name::Scheme,
        b":protocol" => Name::Protocol,
        b":status" => Name::Status,
        [] => Name::Bad,
        _ if name
            .iter()
            .all(|&b| is_token_char(b) && !b.is_ascii_uppercase()) =>
        {
            Name::Regular
        }
        _ => Name::Bad,
    }
}

/// RFC 9110 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The bytes `http` keeps in a path as they are (so the proxy sees the
/// `:path` the frontend sees, and can refuse a non-canonical one with the
/// frontend's words): visible ASCII except space, `"`... as `http` accepts
/// them, but never `#`, which `http` would cut off with all that follows.
fn is_path_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'#' | b'<' | b'>' | b'`')
}

/// Lowercases letters and turns anything else that is not a token character
/// into `x`, keeping the length.
fn sanitize_name(name: &mut [u8]) {
    for b in name.iter_mut() {
        if b.is_ascii_uppercase() {
            *b = b.to_ascii_lowercase();
        } else if !is_token_char(*b) {
            *b = b'x';
        }
    }
}

fn encode_int(out: &mut Vec<u8>, high_bits: u8, prefix: u8, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(high_bits | value as u8);
        return;
    }
    out.push(high_bits | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

fn encode_raw_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Reads a header block's primitives (RFC 7541 §5). Every read is bounds
/// checked; `None` means the block is broken.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// An integer with a `prefix`-bit prefix; at most 2^28 (far beyond any
    /// index or string length h2 accepts).
    fn int(&mut self, prefix: u8) -> Option<usize> {
        let max = (1usize << prefix) - 1;
        let value = usize::from(self.next()?) & max;
        if value < max {
            return Some(value);
        }
        let mut value = value;
        let mut shift = 0;
        loop {
            let b = self.next()?;
            value += usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
            if shift > 21 {
                return None;
            }
        }
    }

    /// A string literal, decoded (Huffman or raw) into `out`.
    fn string(&mut self, out: &mut Vec<u8>) -> Option<()> {
        out.clear();
        let huffman = self.peek()? & 0x80 != 0;
        let len = self.int(7)?;
        let end = self.pos.checked_add(len)?;
        let raw = self.bytes.get(self.pos..end)?;
        self.pos = end;
        if huffman {
            huffman::decode(raw, out).ok()
        } else {
            out.extend_from_slice(raw);
            Some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    /// Encodes like a client that indexes every new field.
    fn encode(encoder: &mut loona_hpack::Encoder<'_>, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        encoder.encode(fields.iter().copied())
    }

    /// What h2's decoder would be handed, decoded by an independent HPACK
    /// implementation that keeps its own table.
    fn decode(decoder: &mut loona_hpack::Decoder<'_>, block: &[u8]) -> Fields {
        decoder.decode(block).expect("the block decodes")
    }

    fn passed(check: &mut HeaderCheck, block: &[u8], request: bool) -> (Vec<u8>, bool) {
        match check.check(block, request) {
            Verdict::Clean => (block.to_vec(), false),
            Verdict::Rewritten(b) => {
                let marked = b.ends_with(&MALFORMED_MARK);
                (b, marked)
            }
            Verdict::Broken => panic!("broken"),
        }
    }

    const GRPC: [(&[u8], &[u8]); 6] = [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (
            b":path",
            b"/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo",
        ),
        (b":authority", b"localhost:7233"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ];

    #[test]
    fn valid_requests_pass_unchanged_first_and_when_indexed() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut check = HeaderCheck::default();
        for _ in 0..3 {
            let block = encode(&mut encoder, &GRPC);
            assert_eq!(check.check(&block, true), Verdict::Clean);
        }
        assert!(!check.table.is_empty());
    }

    #[test]
    fn an_uppercase_name_is_lowercased_and_its_stream_marked_malformed() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut decoder = loona_hpack::Decoder::new();
        let mut check = HeaderCheck::default();
        let mut fields = GRPC.to_vec();
        fields.push((b"X-Upper", b"1"));
        let block = encode(&mut encoder, &fields);
        let (out, marked) = passed(&mut check, &block, true);
        assert!(marked);
        let seen = decode(&mut decoder, &out);
        assert!(
            seen.contains(&(b"x-upper".to_vec(), b"1".to_vec())),
            "{seen:?}"
        );
        assert_eq!(seen.last().unwrap(), &(b"te".to_vec(), b"x".to_vec()));
        // The next request refers to the indexed field: marked again (grpc-go
        // would see the uppercase name again), and the tables still agree.
        let block = encode(&mut encoder, &fields);
        let (out, marked) = passed(&mut check, &block, true);
        assert!(marked);
        let seen = decode(&mut decoder, &out);
        assert!(
            seen.contains(&(b"x-upper".to_vec(), b"1".to_vec())),
            "{seen:?}"
        );
        // A request without it is clean.
        let block = encode(&mut encoder, &GRPC);
        assert_eq!(check.check(&block, true), Verdict::Clean);
        decode(&mut decoder, &block);
    }

    #[test]
    fn control_characters_in_values_are_replaced_and_marked() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut decoder = loona_hpack::Decoder::new();
        let mut check = HeaderCheck::default();
        for bad in [&b"a\x01b"[..], b"\x00", b"x\x7f", b"line\nbreak"] {
            let mut fields = GRPC.to_vec();
            fields.push((b"x-bad", bad));
            let (out, marked) = passed(&mut check, &encode(&mut encoder, &fields), true);
            assert!(marked, "{bad:?}");
            let seen = decode(&mut decoder, &out);
            let value = &seen.iter().find(|(n, _)| n == b"x-bad").unwrap().1;
            assert_eq!(value.len(), bad.len());
            assert!(http::HeaderValue::from_bytes(value).is_ok());
        }
    }

    #[test]
    fn unknown_pseudo_headers_and_status_in_a_request_are_marked() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut check = HeaderCheck::default();
        for extra in [(&b":foo"[..], &b"1"[..]), (b":status", b"abc"), (b"", b"v")] {
            let mut fields = vec![extra];
            fields.extend(GRPC);
            let (_, marked) = passed(&mut check, &encode(&mut encoder, &fields), true);
            assert!(marked, "{extra:?}");
        }
    }

    /// Found by the `hpack` fuzz target: a `:status` from the static table
    /// with a value that is no status code failed h2's HPACK decoding, and
    /// with it the client's whole connection.
    #[test]
    fn a_status_that_is_no_status_code_becomes_200_where_sizes_allow() {
        // Trailers, literal without indexing, name :status (index 14), "".
        let mut check = HeaderCheck::default();
        let Verdict::Rewritten(out) = check.check(&[0x0e, 0x00], false) else {
            panic!("not rewritten");
        };
        let fields = decode(&mut loona_hpack::Decoder::new(), &out);
        assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
        // Incrementally indexed, three bytes: rewritten, the table entry
        // keeps its size.
        let mut check = HeaderCheck::default();
        let block = [0x48, 0x03, b'a', b'b', b'c'];
        let Verdict::Rewritten(out) = check.check(&block, true) else {
            panic!("not rewritten");
        };
        let mut decoder = loona_hpack::Decoder::new();
        let fields = decode(&mut decoder, &out);
        assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
        // Found next: a `:path` in trailers with a byte that is not UTF-8.
        let mut check = HeaderCheck::default();
        let Verdict::Rewritten(out) = check.check(&[0x14, 0x01, 0xb2], false) else {
            panic!("not rewritten");
        };
        let fields = decode(&mut loona_hpack::Decoder::new(), &out);
        assert_eq!(fields[0], (b":path".to_vec(), b"x".to_vec()));
        // And an empty name with an empty value, not indexed: named `x`.
        let mut check = HeaderCheck::default();
        let Verdict::Rewritten(out) = check.check(&[0x00, 0x00, 0x00], true) else {
            panic!("not rewritten");
        };
        let fields = decode(&mut loona_hpack::Decoder::new(), &out);
        assert_eq!(fields[0], (b"x".to_vec(), b"".to_vec()));
        let mut check = HeaderCheck::default();
        assert_eq!(check.check(&[0x40, 0x00, 0x00], true), Verdict::Broken);
        // A `:status` literal name renamed when indexed is a plain name in
        // h2's table: a later field naming it keeps its value.
        let mut check = HeaderCheck::default();
        let mut decoder = loona_hpack::Decoder::new();
        let first = [&[0x40, 0x07][..], b":status", &[0x01, b'a']].concat();
        let Verdict::Rewritten(out) = check.check(&first, true) else {
            panic!("not rewritten");
        };
        decode(&mut decoder, &out);
        let later = [0x0f, 0x2f, 0x02, b'h', b'i'];
        let out = match check.check(&later, true) {
            Verdict::Rewritten(out) => out,
            Verdict::Clean => later.to_vec(),
            Verdict::Broken => panic!("broken"),
        };
        let fields = decode(&mut decoder, &out);
        assert_eq!(fields[0].1, b"hi".to_vec());
        // Indexed with another length, or an indexed empty :method: no
        // rewrite keeps the tables alike, so the block is Broken.
        let mut check = HeaderCheck::default();
        assert_eq!(
            check.check(&[0x48, 0x02, b'a', b'b'], true),
            Verdict::Broken
        );
        let mut check = HeaderCheck::default();
        assert_eq!(check.check(&[0x42, 0x00], true), Verdict::Broken);
    }

    /// Found by the `hpack` fuzz target: an indexed empty name is given
    /// the name `x` and a byte of its value, so its entry keeps its size;
    /// but the check counted the entry a byte short, and a later field
    /// naming that entry (h2 reads the name as `x`, the client as empty)
    /// came out a byte longer in h2's table. The tables drifted apart and
    /// a later block's index failed h2's decoding for the whole connection.
    #[test]
    fn an_empty_name_given_one_keeps_both_tables_alike_when_named_again() {
        let mut check = HeaderCheck::default();
        let mut client = loona_hpack::Decoder::new();
        let mut h2_side = loona_hpack::Decoder::new();
        let blocks: [&[u8]; 3] = [
            // Incrementally indexed, empty name, value "v".
            &[0x40, 0x00, 0x01, b'v'],
            // Incrementally indexed, name from entry 62 (that one), "cd";
            // then not indexed, name from entry 63 (still that one), "e".
            &[0x7e, 0x02, b'c', b'd', 0x0f, 0x30, 0x01, b'e'],
            // Not indexed, name from entry 62 (the second one), no value.
            &[0x0f, 0x2f, 0x00],
        ];
        for block in blocks {
            let (out, marked) = passed(&mut check, block, true);
            assert!(marked, "{block:?}");
            let sent = decode(&mut client, block);
            let seen = decode(&mut h2_side, &out);
            // Each marked malformed: `te: x` after the fields.
            assert_eq!(sent.len() + 1, seen.len());
            assert_eq!(seen.last(), Some(&(b"te".to_vec(), b"x".to_vec())));
            for ((sn, sv), (hn, hv)) in sent.iter().zip(&seen) {
                assert!(sn.is_empty(), "{sn:?}");
                assert_eq!(hn, b"x");
                // Of the same length, but for a field that has no value to
                // give and is not indexed.
                if sv.is_empty() {
                    assert!(hv.is_empty());
                } else {
                    assert_eq!(sv.len(), 1 + hv.len(), "{sv:?} seen as {hv:?}");
                }
            }
        }
        // The two entries as the client counts them: 0 + 1 + 32 and
        // 0 + 2 + 32.
        assert_eq!(check.size, 33 + 34);
        // An indexed field of an empty name with no value to give, named
        // from the table: no rewrite of the same size, so Broken.
        assert_eq!(check.check(&[0x7e, 0x00], true), Verdict::Broken);
    }

    #[test]
    fn path_bytes_http_would_drop_or_refuse_become_tildes_without_a_mark() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut decoder = loona_hpack::Decoder::new();
        let mut check = HeaderCheck::default();
        let path = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo";
        for (sent, seen_as) in [
            (format!("{path}#frag"), format!("{path}~frag")),
            (format!("{path}\u{e9}"), format!("{path}~~")),
            (format!("{path} x"), format!("{path}~x")),
            (format!("{path}<>`"), format!("{path}~~~")),
            // Kept: http keeps them, and the proxy answers with them.
            (format!("{path}?x=1"), format!("{path}?x=1")),
            (path.replace('S', "%53"), path.replace('S', "%53")),
        ] {
            let mut fields = GRPC.to_vec();
            fields[2].1 = sent.as_bytes();
            let block = encode(&mut encoder, &fields);
            let (out, marked) = passed(&mut check, &block, true);
            assert!(!marked, "{sent}");
            let seen = decode(&mut decoder, &out);
            assert_eq!(
                seen[2],
                (b":path".to_vec(), seen_as.clone().into_bytes()),
                "{sent}"
            );
            // And http takes the result as it is.
            let parsed = http::uri::PathAndQuery::try_from(seen_as.as_str()).unwrap();
            assert_eq!(parsed.as_str(), seen_as);
        }
    }

    #[test]
    fn blocks_broken_at_the_hpack_level_are_left_alone() {
        let mut check = HeaderCheck::default();
        // Indexed field 70: the dynamic table is empty.
        assert_eq!(check.check(&[0x80 | 70], true), Verdict::Broken);
        // A table size update after a field.
        assert_eq!(check.check(&[0x82, 0x20], true), Verdict::Broken);
        // A size above the decoder's maximum.
        assert_eq!(check.check(&[0x3f, 0xe2, 0x1f], true), Verdict::Broken);
        // A string longer than the block.
        assert_eq!(check.check(&[0x00, 0x05, b'a'], true), Verdict::Broken);
    }

    #[test]
    fn eviction_follows_an_independent_decoder() {
        // Many distinct indexed fields push the first ones out of the 4 KiB
        // table; a reference to an evicted entry must be refused by both.
        let mut encoder = loona_hpack::Encoder::new();
        let mut decoder = loona_hpack::Decoder::new();
        let mut check = HeaderCheck::default();
        for i in 0..200 {
            let name = format!("x-field-{i}");
            let value = "v".repeat(i % 50);
            let block = encode(&mut encoder, &[(name.as_bytes(), value.as_bytes())]);
            assert_eq!(check.check(&block, true), Verdict::Clean);
            decode(&mut decoder, &block);
        }
        assert_eq!(
            check.size,
            check.table.iter().map(|e| e.size).sum::<usize>()
        );
        assert!(check.size <= TABLE_SIZE);
        let entries = check.table.len();
        let indexed = |index: usize| {
            let mut block = Vec::new();
            encode_int(&mut block, 0x80, 7, index);
            block
        };
        let beyond = indexed(62 + entries);
        assert_eq!(check.check(&beyond, true), Verdict::Broken);
        assert!(decoder.decode(&beyond).is_err());
        let oldest = indexed(62 + entries - 1);
        assert_eq!(check.check(&oldest, true), Verdict::Clean);
        assert!(decoder.decode(&oldest).is_ok());
    }

    /// A name judged regular is one h2 accepts; the names h2 accepts but
    /// grpc-go refuses (not a token) are refused here too.
    #[test]
    fn names_and_values_are_judged_as_the_http_types_and_grpc_go_judge_them() {
        let mut http_only = Vec::new();
        for b in 0..=255u8 {
            let name = [b'x', b];
            let regular = classify(&name) == Name::Regular;
            let h2_accepts = http::HeaderName::from_lowercase(&name).is_ok();
            assert!(!regular || h2_accepts, "name byte {b:#x}");
            if h2_accepts && !regular {
                http_only.push(b);
            }
            let control = (b < 0x20 && b != b'\t') || b == 0x7f;
            assert_eq!(
                !control,
                http::HeaderValue::from_bytes(&[b'v', b]).is_ok(),
                "value byte {b:#x}"
            );
        }
        assert_eq!(http_only, b"\"");
    }
}
