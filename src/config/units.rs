//! Human-readable durations (`"30s"`, `"5m"`, `"1h 30m"`) and sizes (`"4MiB"`, `"512 KiB"`)
//! as they appear in the TOML file.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::de::{self, Deserialize, Deserializer};

/// A duration written as a string such as `"30s"`, `"250ms"` or `"1h 30m"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub StdDuration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(StdDuration::from_secs(secs))
    }

    pub const fn get(self) -> StdDuration {
        self.0
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(Duration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration `{text}`: {e} (write it like \"30s\", \"500ms\" or \"5m\")"
                ))
            })
    }
}

/// A size in bytes written as a string such as `"4MiB"`, `"512 KiB"` or `"1000"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid size `{text}`: {e} (write it like \"4MiB\", \"512KiB\" or \"1GB\")"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Probe {
        d: Duration,
        s: ByteSize,
    }

    #[test]
    fn parses_human_units() {
        let p: Probe = toml::from_str("d = \"1m 30s\"\ns = \"4MiB\"").unwrap();
        assert_eq!(p.d.get(), StdDuration::from_secs(90));
        assert_eq!(p.s.get(), 4 * 1024 * 1024);
        let p: Probe = toml::from_str("d = \"250ms\"\ns = \"1 KB\"").unwrap();
        assert_eq!(p.d.get(), StdDuration::from_millis(250));
        assert_eq!(p.s.get(), 1000);
    }

    #[test]
    fn rejects_bad_units_with_a_hint() {
        let err = toml::from_str::<Probe>("d = \"soon\"\ns = \"1MiB\"")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid duration `soon`"), "{err}");
        let err = toml::from_str::<Probe>("d = \"1s\"\ns = \"lots\"")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid size `lots`"), "{err}");
    }
}
