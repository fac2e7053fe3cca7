//! Lower-case hexadecimal, the form hashes take in the config, logs, Redis keys and the
//! audit trail.

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
}
