//! Resource URIs a call may name (authorization): rules match a URI as written, so a URI that
//! an upstream could read as another one (`file:///public/../secret/k`, `FILE:///…`,
//! `file:///%73ecret/k`) would let a call past a rule written for the other. Calls naming
//! such a URI are refused before the rules are asked; lists are not touched (the URIs and
//! templates in them are only shown, never matched against a call).

/// Why a resource URI is refused: it is not in the normal form rules are matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNormal {
    /// The scheme has upper-case letters (`FILE:`, `File:`).
    UpperCaseScheme,
    /// A `.` or `..` segment, also percent-encoded or between `%2F`, `\` or `%5C`.
    DotSegment,
    /// A percent-encoded letter, digit, `-`, `.`, `_` or `~` (`%73` for `s`).
    EncodedUnreserved,
}

impl NotNormal {
    /// What is wrong, for the client.
    pub fn reason(self) -> &'static str {
        match self {
            Self::UpperCaseScheme => "its scheme has upper-case letters (write it in lower case)",
            Self::DotSegment => "it has a `.` or `..` path segment (write the path it leads to)",
            Self::EncodedUnreserved => {
                "it percent-encodes a letter, digit, `-`, `.`, `_` or `~` (write the character itself)"
            }
        }
    }
}

/// Checks that `uri` is in RFC 3986 normal form as far as matching goes (sections 6.2.2.1
/// to 6.2.2.3): a lower-case scheme, no percent-encoded unreserved character, and no `.`
/// or `..` segment. Segments are split at `/` and also at `\`, `%2F` and `%5C`, which some
/// upstreams read as separators; the whole URI is looked at, query included, since an
/// upstream may not tell a query from a path.
pub fn check(uri: &str) -> Result<(), NotNormal> {
    if let Some((scheme, _)) = uri.split_once(':')
        && is_scheme(scheme)
        && scheme.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Err(NotNormal::UpperCaseScheme);
    }
    let bytes = uri.as_bytes();
    let mut segment_start = 0;
    let mut i = 0;
    while i <= bytes.len() {
        // The end of a segment: a separator, written or encoded, or the end of the URI.
        let separator = match bytes.get(i) {
            None => Some(0),
            Some(b'/' | b'\\') => Some(1),
            Some(b'%') => match decoded(bytes, i) {
                Some(b'/' | b'\\') => Some(3),
                Some(b) if is_unreserved(b) => return Err(NotNormal::EncodedUnreserved),
                _ => None,
            },
            Some(_) => None,
        };
        match separator {
            Some(width) => {
                let segment = bytes.get(segment_start..i).unwrap_or_default();
                if matches!(segment, b"." | b"..") {
                    return Err(NotNormal::DotSegment);
                }
                i += width.max(1);
                segment_start = i;
            }
            None => i += 1,
        }
    }
    Ok(())
}

/// `uri` cut to at most `max` characters for a message (`…` marks the cut).
pub fn shown(uri: &str, max: usize) -> String {
    let mut shown: String = uri.chars().take(max).collect();
    if shown.len() < uri.len() {
        shown.push('…');
    }
    shown
}

/// RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// RFC 3986 `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The byte `%XX` at `at` stands for, if two hex digits follow.
fn decoded(bytes: &[u8], at: usize) -> Option<u8> {
    let high = crate::hex::digit(*bytes.get(at + 1)?)?;
    let low = crate::hex::digit(*bytes.get(at + 2)?)?;
    Some(high << 4 | low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_uris_pass() {
        for uri in [
            "file:///public/a.txt",
            "file:///public/",
            "file:///public/..a/b..",
            "file:///public/.hidden",
            "file:///public/.../x",
            "https://example.com/a%20b?q=%2F#frag",
            "db://orders/42",
            "file:///public/a%2Fb",
            "file:///a%25",
            "file:///a%2",
            "file:///a%zz",
            "mailto:Someone@Example.com",
            "urn:isbn:0451450523",
            "file:///{path}",
            "",
            "no-scheme/at/all",
            "file:///日本/ファイル",
        ] {
            assert_eq!(check(uri), Ok(()), "{uri}");
        }
    }

    #[test]
    fn upper_case_schemes_are_refused() {
        for uri in [
            "FILE:///secret/x",
            "File:///secret/x",
            "hTTps://a/b",
            "C:\\x",
        ] {
            assert_eq!(check(uri), Err(NotNormal::UpperCaseScheme), "{uri}");
        }
    }

    #[test]
    fn dot_segments_are_refused_however_written() {
        for uri in [
            "file:///public/../secret/k",
            "file:///public/./k",
            "file:///public/..",
            "file:///public/.",
            "file://../secret",
            "file:///public/..\\secret\\k",
            "file:///public\\..\\secret",
            "file:///public/..%2Fsecret",
            "file:///public/..%2fsecret",
            "file:///public%2F..%2Fsecret",
            "file:///public%5C..%5Csecret",
            "file:///public/x?/../../secret",
            "..",
            "./x",
        ] {
            assert_eq!(check(uri), Err(NotNormal::DotSegment), "{uri}");
        }
    }

    #[test]
    fn encoded_unreserved_characters_are_refused() {
        for uri in [
            "file:///%2e%2e/secret/k",
            "file:///public/%2E%2e/secret/k",
            "file:///public/.%2e/secret",
            "file:///%73ecret/k",
            "file:///secre%74/k",
            "file:///a%2Db",
            "file:///a%5fb",
            "file:///a%7Eb",
            "file:///a%30",
        ] {
            assert_eq!(check(uri), Err(NotNormal::EncodedUnreserved), "{uri}");
        }
    }

    #[test]
    fn messages_show_a_bounded_uri() {
        assert_eq!(shown("file:///a", 64), "file:///a");
        let long = format!("file:///{}", "é".repeat(200));
        let cut = shown(&long, 64);
        assert_eq!(cut.chars().count(), 65);
        assert!(cut.ends_with('…'));
        for reason in [
            NotNormal::UpperCaseScheme,
            NotNormal::DotSegment,
            NotNormal::EncodedUnreserved,
        ]
        .map(NotNormal::reason)
        {
            assert!(!reason.is_empty());
        }
    }
}
