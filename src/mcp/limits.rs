//! Stage 9, before the parse: the shape limits of a POSTed JSON body — how deep it nests,
//! how long its strings are, how many elements its arrays (and members its objects) hold.
//!
//! One pass over the bytes, without building anything, so a hostile body (10 000 nested
//! arrays, a million-element array, a 40 MiB string) is refused with a precise reason
//! before any parser spends memory or stack on it. The scan does not judge JSON syntax:
//! the parser that follows does; on malformed input the scan only has to stop safely.

use std::fmt;

/// The limits of one route (`[routes.guard]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Arrays and objects nested deeper than this are refused (the body itself is 1).
    pub max_depth: usize,
    /// A string (key or value) longer than this many bytes, as written (escapes count as
    /// written), is refused.
    pub max_string: usize,
    /// An array with more elements, or an object with more members, is refused.
    pub max_elements: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_string: 1024 * 1024,
            max_elements: 10_000,
        }
    }
}

/// The first limit a body broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    Depth(usize),
    String(usize),
    Elements(usize),
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Depth(limit) => write!(f, "JSON nested deeper than {limit} levels"),
            Self::String(limit) => write!(f, "a JSON string longer than {limit} bytes"),
            Self::Elements(limit) => {
                write!(f, "a JSON array or object with more than {limit} elements")
            }
        }
    }
}

impl InputLimits {
    /// Checks `body` against the limits.
    pub fn check(&self, body: &[u8]) -> Result<(), LimitExceeded> {
        // One entry per open array or object: the commas seen at that level so far.
        let mut commas: Vec<usize> = Vec::new();
        let mut at = 0;
        while let Some(&byte) = body.get(at) {
            match byte {
                b'"' => {
                    let start = at + 1;
                    let end = string_end(body, start);
                    if end - start > self.max_string {
                        return Err(LimitExceeded::String(self.max_string));
                    }
                    at = end + 1;
                    continue;
                }
                b'[' | b'{' => {
                    if commas.len() >= self.max_depth {
                        return Err(LimitExceeded::Depth(self.max_depth));
                    }
                    commas.push(0);
                }
                b']' | b'}' => {
                    commas.pop();
                }
                b',' => {
                    if let Some(count) = commas.last_mut() {
                        *count += 1;
                        // n commas separate n + 1 elements.
                        if *count >= self.max_elements {
                            return Err(LimitExceeded::Elements(self.max_elements));
                        }
                    }
                }
                _ => {}
            }
            at += 1;
        }
        Ok(())
    }
}

/// Where the string whose contents start at `start` ends (the index of its closing quote,
/// or the end of the body for an unterminated string).
fn string_end(body: &[u8], start: usize) -> usize {
    let mut at = start;
    loop {
        let Some(rest) = body.get(at..) else {
            return body.len();
        };
        match memchr::memchr2(b'"', b'\\', rest) {
            None => return body.len(),
            Some(found) => {
                let i = at + found;
                if body.get(i) == Some(&b'"') {
                    return i;
                }
                // A backslash escapes the byte after it (a `\uXXXX` escape's digits
                // need no care: they are not quotes).
                at = i + 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_depth: usize, max_string: usize, max_elements: usize) -> InputLimits {
        InputLimits {
            max_depth,
            max_string,
            max_elements,
        }
    }

    #[test]
    fn depth_counts_arrays_and_objects_but_not_brackets_in_strings() {
        let l = limits(3, 100, 100);
        assert_eq!(l.check(br#"{"a":[{"b":1}]}"#), Ok(()));
        assert_eq!(
            l.check(br#"{"a":[{"b":[1]}]}"#),
            Err(LimitExceeded::Depth(3))
        );
        assert_eq!(l.check(br#"{"a":"[[[[[[{{{{"}"#), Ok(()));
        assert_eq!(l.check(br#"{"a":"\"[[[[[[\\"}"#), Ok(()));
        let deep = "[".repeat(10_000);
        assert_eq!(
            InputLimits::default().check(deep.as_bytes()),
            Err(LimitExceeded::Depth(64))
        );
        // Siblings do not add up.
        assert_eq!(l.check(br#"[[1],[2],[[3]]]"#), Ok(()));
    }

    #[test]
    fn strings_are_measured_as_written_keys_included() {
        let l = limits(10, 5, 100);
        assert_eq!(l.check(br#"{"abcde":"12345"}"#), Ok(()));
        assert_eq!(l.check(br#"{"abcdef":1}"#), Err(LimitExceeded::String(5)));
        assert_eq!(l.check(br#"{"a":"123456"}"#), Err(LimitExceeded::String(5)));
        // An escaped quote does not end the string.
        assert_eq!(
            l.check(br#"{"a":"1\"3456"}"#),
            Err(LimitExceeded::String(5))
        );
        assert_eq!(l.check(br#"{"a":"\\"}"#), Ok(()));
        // Unterminated: measured to the end, never past it.
        assert_eq!(l.check(br#"{"a":"12"#), Ok(()));
        assert_eq!(l.check(br#"{"a":"1234567"#), Err(LimitExceeded::String(5)));
        assert_eq!(l.check(br#"{"a":"\"#), Ok(()));
    }

    #[test]
    fn elements_per_array_and_object() {
        let l = limits(10, 100, 3);
        assert_eq!(l.check(br#"[1,2,3]"#), Ok(()));
        assert_eq!(l.check(br#"[1,2,3,4]"#), Err(LimitExceeded::Elements(3)));
        assert_eq!(l.check(br#"{"a":1,"b":2,"c":3}"#), Ok(()));
        assert_eq!(
            l.check(br#"{"a":1,"b":2,"c":3,"d":4}"#),
            Err(LimitExceeded::Elements(3))
        );
        // Nested arrays count for themselves; commas in strings do not count.
        assert_eq!(l.check(br#"[[1,2,3],[4,5,6],"a,b,c,d,e"]"#), Ok(()));
    }

    #[test]
    fn malformed_input_ends_safely() {
        let l = InputLimits::default();
        for body in [&b"]]]}}}"[..], b"\"", b"\\", b"{\"a\\", b"", b"[\"\\\""] {
            let _ = l.check(body);
        }
    }
}
