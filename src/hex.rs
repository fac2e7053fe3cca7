//! Hexadecimal, the form hashes take in the config, logs, Redis keys, trace headers and
//! the audit trail: written lower-case; read in either case, two digits a byte, nothing
//! else (no sign, no whitespace, no odd digit).

use std::fmt::Write as _;

/// `bytes` as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        let [high, low] = digits(*byte);
        out.push(char::from(high));
        out.push(char::from(low));
    }
    out
}

/// `bytes` as lower-case hex, appended to `out`.
pub fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(2 * bytes.len());
    for byte in bytes {
        out.extend_from_slice(&digits(*byte));
    }
}

/// `bytes` as lower-case hex when displayed or serialized, written where it goes.
#[derive(Debug, Clone, Copy)]
pub struct Hex<'a>(pub &'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| {
            let [high, low] = digits(*byte);
            f.write_char(char::from(high))?;
            f.write_char(char::from(low))
        })
    }
}

impl serde::Serialize for Hex<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `text` (hex digits, either case) as bytes; `None` unless it is an even number of hex
/// digits and nothing else.
pub fn decode(text: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    let text = text.as_ref();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2).map(pair).collect()
}

/// `text` as exactly `N` bytes (`2 * N` hex digits, either case).
pub fn decode_array<const N: usize>(text: impl AsRef<[u8]>) -> Option<[u8; N]> {
    let text = text.as_ref();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (byte, digits) in out.iter_mut().zip(text.chunks(2)) {
        *byte = pair(digits)?;
    }
    Some(out)
}

/// The value of one hex digit (either case).
pub fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The byte two hex digits stand for.
fn pair(digits: &[u8]) -> Option<u8> {
    match digits {
        [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
        _ => None,
    }
}

fn digits(byte: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [
        DIGITS[usize::from(byte >> 4)],
        DIGITS[usize::from(byte & 0x0f)],
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_case_two_digits_a_byte() {
        assert_eq!(super::encode(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(super::encode(&[]), "");
        let mut out = b"x".to_vec();
        super::encode_into(&[0xa5, 0x0f], &mut out);
        assert_eq!(out, b"xa50f");
        let hex = super::Hex(&[0x00, 0xa5, 0xff]);
        assert_eq!(hex.to_string(), "00a5ff");
        assert_eq!(serde_json::to_string(&hex).unwrap(), "\"00a5ff\"");
    }

    #[test]
    fn decoding_takes_either_case_and_nothing_else() {
        use super::{decode, decode_array, digit};
        assert_eq!(decode("000fa5ff"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(decode("fF00A5"), Some(vec![0xff, 0x00, 0xa5]));
        assert_eq!(decode(""), Some(vec![]));
        // An odd digit, a non-digit, a sign or whitespace: not hex.
        for bad in ["0", "0g", "+f", "-1", " f", "f ", "0x00", "é0"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert_eq!(decode_array::<2>(b"a50F"), Some([0xa5, 0x0f]));
        assert_eq!(decode_array::<2>("a50"), None);
        assert_eq!(decode_array::<2>("a50f00"), None);
        assert_eq!(decode_array::<1>("+a"), None);
        assert_eq!(
            (digit(b'7'), digit(b'c'), digit(b'C'), digit(b'g')),
            (Some(7), Some(12), Some(12), None)
        );
        // Whatever is encoded decodes to itself.
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(super::encode(&all)), Some(all.clone()));
        assert_eq!(decode(super::encode(&all).to_uppercase()), Some(all));
    }
}
