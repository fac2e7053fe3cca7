//! `portcullis audit query`: one principal's records (a data subject's access request),
//! optionally within a time range, exactly as written.

use std::io::{BufRead, Write};
use std::time::SystemTime;

use serde_json::Value;

/// Which records to export.
#[derive(Debug, Clone)]
pub struct Query {
    pub subject: String,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

impl Query {
    /// Whether a record (one line of a trail) is about the subject, within the range.
    pub fn matches(&self, line: &str) -> bool {
        // Cheap test first: a record about the subject contains its name (JSON-escaped
        // names may not, so only a plain name rules a line out).
        let plain = !self.subject.contains(['"', '\\']) && self.subject.is_ascii();
        if plain && !line.contains(self.subject.as_str()) {
            return false;
        }
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        let subject = [
            record.pointer("/principal/subject"),
            record.get("subject"),
            record.pointer("/alert/subject"),
        ]
        .into_iter()
        .flatten()
        .find_map(Value::as_str);
        if subject != Some(self.subject.as_str()) {
            return false;
        }
        let time = record
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        let Some(time) = time else {
            return self.since.is_none() && self.until.is_none();
        };
        self.since.is_none_or(|since| time >= since) && self.until.is_none_or(|until| time < until)
    }

    /// Copies the matching lines of `input` to `out`; how many.
    pub fn run(&self, input: impl BufRead, out: &mut impl Write) -> std::io::Result<u64> {
        let mut found = 0;
        for line in input.lines() {
            let line = line?;
            if self.matches(&line) {
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
                found += 1;
            }
        }
        Ok(found)
    }
}

/// `2026-11-01`, `2026-11-01T12:00:00Z` or `2026-11-01 12:00:00` (UTC).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(&full).map_err(|e| {
        format!("`{text}` is not a time ({e}); write 2026-11-01 or 2026-11-01T12:00:00Z")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_the_subjects_records_within_the_range() {
        let lines = [
            r#"{"seq":0,"time":"2026-11-01T10:00:00Z","event":"request","principal":{"subject":"alice","auth":"jwt"}}"#,
            r#"{"seq":1,"time":"2026-11-02T10:00:00Z","event":"request","principal":{"subject":"alice2","auth":"jwt"}}"#,
            r#"{"seq":2,"time":"2026-11-03T10:00:00Z","event":"authentication_failure","subject":"alice"}"#,
            r#"{"seq":3,"time":"2026-11-04T10:00:00Z","event":"alert","alert":{"subject":"alice"}}"#,
            r#"{"seq":4,"time":"2026-11-05T10:00:00Z","event":"request","route":"alice"}"#,
            "not json alice",
        ];
        let input = lines.join("\n");
        let query = Query {
            subject: "alice".into(),
            since: Some(parse_time("2026-11-01").unwrap()),
            until: Some(parse_time("2026-11-04T00:00:00Z").unwrap()),
        };
        let mut out = Vec::new();
        assert_eq!(query.run(input.as_bytes(), &mut out).unwrap(), 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"seq\":0") && text.contains("\"seq\":2"));
        assert!(parse_time("yesterday").is_err());
    }
}
