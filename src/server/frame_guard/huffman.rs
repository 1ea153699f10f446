//! The HPACK Huffman code (RFC 7541 Appendix B), decoding only.
//!
//! The code is canonical: within one code length, codes are consecutive
//! and assigned to symbols in ascending order, and each length's codes
//! follow on from the previous length's. So the whole code is given by the
//! symbols of each length, below, and decoding needs, per length, the
//! first code and how many codes there are.

/// Symbols (bytes, and 256 = EOS) by code length, in ascending order.
const SYMBOLS_BY_LENGTH: [(u8, &[u16]); 21] = [
    (5, &[48, 49, 50, 97, 99, 101, 105, 111, 115, 116]),
    (
        6,
        &[
            32, 37, 45, 46, 47, 51, 52, 53, 54, 55, 56, 57, 61, 65, 95, 98, 100, 102, 103, 104,
            108, 109, 110, 112, 114, 117,
        ],
    ),
    (
        7,
        &[
            58, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86,
            87, 89, 106, 107, 113, 118, 119, 120, 121, 122,
        ],
    ),
    (8, &[38, 42, 44, 59, 88, 90]),
    (10, &[33, 34, 40, 41, 63]),
    (11, &[39, 43, 124]),
    (12, &[35, 62]),
    (13, &[0, 36, 64, 91, 93, 126]),
    (14, &[94, 125]),
    (15, &[60, 96, 123]),
    (19, &[92, 195, 208]),
    (20, &[128, 130, 131, 162, 184, 194, 224, 226]),
    (
        21,
        &[
            153, 161, 167, 172, 176, 177, 179, 209, 216, 217, 227, 229, 230,
        ],
    ),
    (
        22,
        &[
            129, 132, 133, 134, 136, 146, 154, 156, 160, 163, 164, 169, 170, 173, 178, 181, 185,
            186, 187, 189, 190, 196, 198, 228, 232, 233,
        ],
    ),
    (
        23,
        &[
            1, 135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157, 158, 165, 166,
            168, 174, 175, 180, 182, 183, 188, 191, 197, 231, 239,
        ],
    ),
    (
        24,
        &[9, 142, 144, 145, 148, 159, 171, 206, 215, 225, 236, 237],
    ),
    (25, &[199, 207, 234, 235]),
    (
        26,
        &[
            192, 193, 200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242, 243, 255,
        ],
    ),
    (
        27,
        &[
            203, 204, 211, 212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252,
            253, 254,
        ],
    ),
    (
        28,
        &[
            2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28,
            29, 30, 31, 127, 220, 249,
        ],
    ),
    (30, &[10, 13, 22, 256]),
];

const EOS: u16 = 256;
const MAX_LEN: u32 = 30;

/// Per code length: (length, first code, symbols).
struct Lengths([(u32, u32, &'static [u16]); 21]);

const fn lengths() -> Lengths {
    const EMPTY: &[u16] = &[];
    let mut out = [(0u32, 0u32, EMPTY); 21];
    let mut code: u32 = 0;
    let mut prev_len: u32 = 0;
    let mut prev_count: u32 = 0;
    let mut i = 0;
    while i < SYMBOLS_BY_LENGTH.len() {
        let (len, symbols) = SYMBOLS_BY_LENGTH[i];
        let len = len as u32;
        code = if i == 0 {
            0
        } else {
            (code + prev_count) << (len - prev_len)
        };
        out[i] = (len, code, symbols);
        prev_len = len;
        prev_count = symbols.len() as u32;
        i += 1;
    }
    Lengths(out)
}

static LENGTHS: Lengths = lengths();

/// For each value of the next 8 bits: the symbol whose code they begin
/// with and that code's length, when it is at most 8 bits long (the
/// letters, digits and punctuation of paths and gRPC names); length 0 for
/// the start of a longer code, decoded by length as the table above says.
struct Fast([(u8, u8); 256]);

const fn fast() -> Fast {
    let mut out = [(0u8, 0u8); 256];
    let mut i = 0;
    while i < LENGTHS.0.len() {
        let (len, first, symbols) = LENGTHS.0[i];
        if len <= 8 {
            let spread = 1usize << (8 - len);
            let mut k = 0;
            while k < symbols.len() {
                let start = ((first as usize) + k) << (8 - len);
                let mut j = 0;
                while j < spread {
                    out[start + j] = (symbols[k] as u8, len as u8);
                    j += 1;
                }
                k += 1;
            }
        }
        i += 1;
    }
    Fast(out)
}

static FAST: Fast = fast();

/// Why a Huffman string does not decode (HPACK: a decoding error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanError {
    /// A bit pattern that is no code.
    InvalidCode,
    /// The EOS symbol inside the string.
    Eos,
    /// More than 7 bits of padding, or padding that is not all ones.
    BadPadding,
}

/// Appends the decoding of `src` to `out`.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    // `acc` holds `bits` unread bits, most significant first.
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    let mut input = src.iter();
    // The shortest code is 5 bits.
    out.reserve(src.len() * 8 / 5 + 1);
    loop {
        // Refilled when fewer bits are left than the longest code has.
        if bits < MAX_LEN {
            while bits <= 56 {
                match input.next() {
                    Some(&b) => {
                        acc |= u64::from(b) << (56 - bits);
                        bits += 8;
                    }
                    None => break,
                }
            }
        }
        if bits == 0 {
            return Ok(());
        }
        let (symbol, len) = FAST.0[(acc >> 56) as usize];
        let len = u32::from(len);
        // Past the input's end `acc` holds zeros, which padding is not.
        if len != 0 && len <= bits {
            out.push(symbol);
            acc <<= len;
            bits -= len;
            continue;
        }
        let mut found = None;
        for &(len, first, symbols) in &LENGTHS.0 {
            if len > bits {
                break;
            }
            let code = (acc >> (64 - len)) as u32;
            if code < first + symbols.len() as u32 {
                found = Some((len, symbols[(code - first) as usize]));
                break;
            }
        }
        match found {
            Some((_, EOS)) => return Err(HuffmanError::Eos),
            Some((len, symbol)) => {
                out.push(symbol as u8);
                acc <<= len;
                bits -= len;
            }
            None if bits >= MAX_LEN => return Err(HuffmanError::InvalidCode),
            None => {
                // Only the end of the input is left: at most 7 bits, all
                // ones (the start of EOS).
                let ones = (acc >> (64 - bits)) as u32 == (1 << bits) - 1;
                return if bits < 8 && ones {
                    Ok(())
                } else {
                    Err(HuffmanError::BadPadding)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(hex: &str) -> Result<Vec<u8>, HuffmanError> {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut out = Vec::new();
        decode(&bytes, &mut out).map(|()| out)
    }

    #[test]
    fn rfc_7541_examples_decode() {
        // RFC 7541 C.4.1-C.4.3 and C.6.1.
        assert_eq!(
            decoded("f1e3c2e5f23a6ba0ab90f4ff").unwrap(),
            b"www.example.com"
        );
        assert_eq!(decoded("a8eb10649cbf").unwrap(), b"no-cache");
        assert_eq!(decoded("25a849e95ba97d7f").unwrap(), b"custom-key");
        assert_eq!(decoded("6402").unwrap(), b"302");
        assert_eq!(decoded("aec3771a4b").unwrap(), b"private");
    }

    /// Encodes with the same table (a check of the table's construction:
    /// every symbol's code decodes back to it, whatever precedes it); the
    /// decoder is checked against an independent encoder (h2's) in
    /// `hpack::tests`.
    fn encode(data: &[u8]) -> Vec<u8> {
        let mut acc: u64 = 0;
        let mut bits = 0u32;
        let mut out = Vec::new();
        for &b in data {
            let (len, first, symbols) = LENGTHS
                .0
                .iter()
                .copied()
                .find(|(_, _, s)| s.contains(&u16::from(b)))
                .unwrap();
            let index = symbols.iter().position(|&s| s == u16::from(b)).unwrap() as u32;
            acc = (acc << len) | u64::from(first + index);
            bits += len;
            while bits >= 8 {
                out.push((acc >> (bits - 8)) as u8);
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) as u8) | ((1u8 << (8 - bits)) - 1));
        }
        out
    }

    #[test]
    fn every_byte_value_decodes_back() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let mut out = Vec::new();
        decode(&encode(&all), &mut out).unwrap();
        assert_eq!(out, all);
    }

    #[test]
    fn bad_padding_and_eos_are_errors() {
        // 'a' (00011) then 3 zero bits: padding must be ones.
        assert_eq!(decoded("18"), Err(HuffmanError::BadPadding));
        // 'a' then 11 one bits: more than 7 bits of padding.
        assert_eq!(decoded("1fff"), Err(HuffmanError::BadPadding));
        // EOS (30 ones) then padding.
        assert_eq!(decoded("ffffffff"), Err(HuffmanError::Eos));
        assert_eq!(decoded("").unwrap(), b"");
    }

    #[test]
    fn padding_is_not_read_as_a_short_code() {
        // '0' (00000) ' ' (010100) then 5 one bits: 11111 read as the
        // first 8 bits 11111000 would be '&'.
        assert_eq!(decoded("029f").unwrap(), b"0 ");
        // '0' '0' then 6 one bits: 11111100 is an 8-bit code ('Z').
        assert_eq!(decoded("003f").unwrap(), b"00");
        // '0' then 3 one bits: a single byte, only padding left.
        assert_eq!(decoded("07").unwrap(), b"0");
    }
}
