//! The audit trail's tamper evidence: every record carries the hash of the one before it.
//!
//! A record is one JSON object on one line:
//!
//! ```text
//! {"seq":41,"prev":"<64 hex>", …the event's fields…,"hash":"<64 hex>"}
//! ```
//!
//! `hash` is SHA-256 — or HMAC-SHA256 under a key from a secret — over the previous
//! record's hash (32 bytes) followed by the line's bytes without its `,"hash":"…"` ending
//! (closed with `}`). `seq` counts from 0 and `prev` of the first record is 64 zeros; a
//! trail continues across files (rotation) and restarts, so the files of one trail verify
//! as one sequence.
//!
//! [`verify`] names the first record that is not what the writer wrote: an edited record
//! fails its own hash; a deleted one leaves a gap in `seq` and a `prev` that does not
//! match; an inserted or moved one a `seq` out of order; a cut-off last line is not a
//! record at all. Without a key anybody who can write the file can also recompute every
//! hash after an edit: a plain chain shows accidents and careless edits, a keyed one
//! (the key kept away from the files) shows every edit. Records removed from the end of
//! the last file leave no trace in the chain itself; compare the last `seq` with what the
//! gateway reported (its metrics and logs carry it).

use std::fmt;

use aws_lc_rs::{digest, hmac};
use serde_json::{Map, Value};

/// The `prev` of the first record of a trail.
pub const GENESIS: [u8; 32] = [0; 32];

/// How a `started` record names a plain chain (its `chain` field).
pub const PLAIN: &str = "sha256";
/// How a `started` record names a keyed chain; the key itself is never written.
pub const KEYED: &str = "hmac-sha256";

/// What ends every record after its event fields: `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// How records are hashed.
#[derive(Clone)]
pub enum Hasher {
    Sha256,
    /// HMAC-SHA256 under a key only the gateway (and the verifier) hold.
    Hmac(Box<hmac::Key>),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha256 => "Sha256",
            Self::Hmac(_) => "Hmac([redacted])",
        })
    }
}

impl Hasher {
    /// HMAC-SHA256 with `key` (the secret's bytes).
    pub fn keyed(key: &[u8]) -> Self {
        Self::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, key)))
    }

    fn is_keyed(&self) -> bool {
        matches!(self, Self::Hmac(_))
    }

    fn hash(&self, prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
        let mut out = [0; 32];
        match self {
            Self::Sha256 => {
                let mut ctx = digest::Context::new(&digest::SHA256);
                ctx.update(prev);
                ctx.update(body);
                out.copy_from_slice(ctx.finish().as_ref());
            }
            Self::Hmac(key) => {
                let mut ctx = hmac::Context::with_key(key);
                ctx.update(prev);
                ctx.update(body);
                out.copy_from_slice(ctx.sign().as_ref());
            }
        }
        out
    }
}

/// Where a trail stands: what the next record links to.
#[derive(Debug, Clone)]
pub struct Chain {
    hasher: Hasher,
    prev: [u8; 32],
    seq: u64,
}

impl Chain {
    /// A new trail.
    pub fn new(hasher: Hasher) -> Self {
        Self {
            hasher,
            prev: GENESIS,
            seq: 0,
        }
    }

    /// A trail that goes on after `last_line`, the last record written (on a restart).
    pub fn after(hasher: Hasher, last_line: &str) -> Result<Self, Problem> {
        let (seq, _, hash, _) = split(last_line).ok_or(Problem::NotARecord)?;
        Ok(Self {
            hasher,
            prev: hash,
            seq: seq + 1,
        })
    }

    /// The line (without newline) for an event's fields; `seq`, `prev` and `hash` are the
    /// chain's and replace any the event had.
    pub fn seal(&mut self, mut fields: Map<String, Value>) -> String {
        fields.remove("seq");
        fields.remove("prev");
        fields.remove("hash");
        let event = serde_json::to_vec(&Value::Object(fields)).unwrap_or_default();
        let mut line = Vec::with_capacity(event.len() + 180);
        self.seal_into(&event, &mut line);
        line.pop();
        String::from_utf8(line).unwrap_or_default()
    }

    /// Appends to `out` the record (with its newline) of an event already written as one
    /// JSON object without `seq`, `prev` or `hash` members: `{"seq":…,"prev":…,` then the
    /// event's members, then `"hash"`.
    pub fn seal_into(&mut self, event: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"prev\":\"");
        crate::hex::encode_into(&self.prev, out);
        out.push(b'"');
        // The event's members, if it has any, after a comma; then the closing brace.
        let members = event
            .strip_prefix(b"{")
            .and_then(|e| e.strip_suffix(b"}"))
            .unwrap_or_default();
        if !members.iter().all(u8::is_ascii_whitespace) {
            out.push(b',');
            out.extend_from_slice(members);
        }
        out.push(b'}');
        // The hash covers the bytes as written, whatever order the fields come in.
        let hash = self
            .hasher
            .hash(&self.prev, out.get(start..).unwrap_or_default());
        self.prev = hash;
        self.seq += 1;
        out.pop();
        out.extend_from_slice(b",\"hash\":\"");
        crate::hex::encode_into(&hash, out);
        out.extend_from_slice(b"\"}\n");
    }

    /// The `seq` the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }
}

/// What is wrong with a trail, at the first record where it shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("not an audit record (cut off, or not written by the gateway)")]
    NotARecord,
    #[error("record {seq} was edited (its hash does not match its contents)")]
    Edited { seq: u64 },
    #[error(
        "record {seq} does not verify without a key: this trail is keyed (HMAC-SHA256, as its \
         `started` records say); pass the key's environment variable with --key-env NAME"
    )]
    KeyNeeded { seq: u64 },
    #[error(
        "record {seq} does not verify with the key given: this trail is not keyed (plain \
         SHA-256, as its `started` records say); leave out --key-env"
    )]
    KeyNotUsed { seq: u64 },
    #[error("records {expected}..{found} are missing (deleted)")]
    Deleted { expected: u64, found: u64 },
    #[error("record {found} is out of place where {expected} was expected (inserted or moved)")]
    Inserted { expected: u64, found: u64 },
    #[error("record {seq} does not follow the record before it (a record was replaced)")]
    Unlinked { seq: u64 },
}

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Index of the file in the list verified.
    pub file: usize,
    /// 1-based line number.
    pub line: usize,
    pub problem: Problem,
}

/// Verifies the records of a trail's files, in order: `Ok(records)` or the first finding.
pub fn verify<'a>(
    hasher: &Hasher,
    files: impl IntoIterator<Item = &'a str>,
) -> Result<u64, Finding> {
    verify_from(hasher, files, false).map(|(_, records)| records)
}

/// [`verify`]; with `partial`, the first file may start anywhere in the trail (older files
/// were rotated away): `Ok((first seq, records))`.
pub fn verify_from<'a>(
    hasher: &Hasher,
    files: impl IntoIterator<Item = &'a str>,
    partial: bool,
) -> Result<(u64, u64), Finding> {
    let files: Vec<&str> = files.into_iter().collect();
    let mut prev = GENESIS;
    let mut expected: u64 = 0;
    let mut first = None;
    for (file, text) in files.iter().copied().enumerate() {
        for (n, line) in text.split_terminator('\n').enumerate() {
            let finding = |problem| Finding {
                file,
                line: n + 1,
                problem,
            };
            let (seq, linked, hash, body) = split(line).ok_or(finding(Problem::NotARecord))?;
            if hasher.hash(&linked, body.as_bytes()) != hash {
                // Not an edit but the wrong way of checking, if the trail says so.
                let problem = match declared_keyed(&files) {
                    Some(true) if !hasher.is_keyed() => Problem::KeyNeeded { seq },
                    Some(false) if hasher.is_keyed() => Problem::KeyNotUsed { seq },
                    _ => Problem::Edited { seq },
                };
                return Err(finding(problem));
            }
            if first.is_none() {
                first = Some(seq);
                if partial {
                    (expected, prev) = (seq, linked);
                }
            }
            if seq > expected {
                return Err(finding(Problem::Deleted {
                    expected,
                    found: seq,
                }));
            }
            if seq < expected {
                return Err(finding(Problem::Inserted {
                    expected,
                    found: seq,
                }));
            }
            if linked != prev {
                return Err(finding(Problem::Unlinked { seq }));
            }
            prev = hash;
            expected += 1;
        }
        // A last line without its newline was being written when the file was cut.
        if !text.is_empty() && !text.ends_with('\n') {
            let line = text.split_terminator('\n').count();
            return Err(Finding {
                file,
                line,
                problem: Problem::NotARecord,
            });
        }
    }
    let first = first.unwrap_or(expected);
    Ok((first, expected - first))
}

/// Whether the trail is keyed, as the first `started` record in `files` says (`chain`).
fn declared_keyed(files: &[&str]) -> Option<bool> {
    files
        .iter()
        .flat_map(|text| text.split_terminator('\n'))
        .filter(|line| line.contains("\"started\""))
        .find_map(|line| {
            let value: Value = serde_json::from_str(line).ok()?;
            if value.get("event")?.as_str()? != "started" {
                return None;
            }
            match value.get("chain")?.as_str()? {
                KEYED => Some(true),
                PLAIN => Some(false),
                _ => None,
            }
        })
}

/// A record's `seq`, `prev`, `hash`, and the bytes its hash covers.
fn split(line: &str) -> Option<(u64, [u8; 32], [u8; 32], String)> {
    let cut = line.len().checked_sub(HASH_SUFFIX_LEN)?;
    let (head, tail) = (line.get(..cut)?, line.get(cut..)?);
    let hash_hex = tail.strip_prefix(",\"hash\":\"")?.strip_suffix("\"}")?;
    let hash = crate::hex::decode_array(hash_hex)?;
    let body = format!("{head}}}");
    let value: Value = serde_json::from_str(&body).ok()?;
    let seq = value.get("seq")?.as_u64()?;
    let prev = crate::hex::decode_array(value.get("prev")?.as_str()?)?;
    Some((seq, prev, hash, body))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(n: u64) -> Map<String, Value> {
        let Value::Object(map) = json!({ "event": "request", "route": "github", "n": n }) else {
            unreachable!()
        };
        map
    }

    /// A trail of `n` records in one file.
    fn trail(hasher: &Hasher, n: u64) -> Vec<String> {
        let mut chain = Chain::new(hasher.clone());
        (0..n).map(|i| chain.seal(event(i))).collect()
    }

    fn file(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    fn first_problem(hasher: &Hasher, lines: &[String]) -> (usize, Problem) {
        let finding = verify(hasher, [file(lines).as_str()]).unwrap_err();
        (finding.line, finding.problem)
    }

    #[test]
    fn an_untouched_trail_verifies_and_records_carry_their_links() {
        for hasher in [Hasher::Sha256, Hasher::keyed(b"audit key")] {
            let lines = trail(&hasher, 5);
            assert_eq!(verify(&hasher, [file(&lines).as_str()]), Ok(5));
            let first: Value = serde_json::from_str(&lines[0]).unwrap();
            assert_eq!(first["seq"], 0);
            assert_eq!(first["prev"], "0".repeat(64));
            assert_eq!(first["route"], "github");
            let second: Value = serde_json::from_str(&lines[1]).unwrap();
            assert_eq!(second["prev"], first["hash"]);
        }
    }

    #[test]
    fn every_kind_of_tampering_is_named_at_its_record() {
        let h = Hasher::keyed(b"audit key");
        let lines = trail(&h, 6);
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"n\":2", "\"n\":9");
        assert_eq!(first_problem(&h, &edited), (3, Problem::Edited { seq: 2 }));

        let mut deleted = lines.clone();
        deleted.remove(3);
        assert_eq!(
            first_problem(&h, &deleted),
            (
                4,
                Problem::Deleted {
                    expected: 3,
                    found: 4
                }
            )
        );

        let mut inserted = lines.clone();
        inserted.insert(4, lines[1].clone());
        assert_eq!(
            first_problem(&h, &inserted),
            (
                5,
                Problem::Inserted {
                    expected: 4,
                    found: 1
                }
            )
        );

        let mut reordered = lines.clone();
        reordered.swap(1, 2);
        assert_eq!(
            first_problem(&h, &reordered),
            (
                2,
                Problem::Deleted {
                    expected: 1,
                    found: 2
                }
            )
        );

        // A record replaced by one from another trail with the right seq.
        let other = trail(&h, 6);
        let mut foreign = lines.clone();
        let mut chain = Chain::new(h.clone());
        let stray: Vec<String> = (0..3).map(|i| chain.seal(event(100 + i))).collect();
        foreign[2] = stray[2].clone();
        assert_eq!(
            first_problem(&h, &foreign),
            (3, Problem::Unlinked { seq: 2 })
        );
        assert_eq!(other, lines, "the same events seal to the same trail");

        // Cut off in the middle of the last line.
        let mut text = file(&lines);
        text.truncate(text.len() - 20);
        let finding = verify(&h, [text.as_str()]).unwrap_err();
        assert_eq!((finding.line, finding.problem), (6, Problem::NotARecord));

        // Without the key, nothing verifies.
        assert_eq!(
            first_problem(&Hasher::Sha256, &lines),
            (1, Problem::Edited { seq: 0 })
        );
    }

    #[test]
    fn a_trail_goes_on_across_files_and_restarts() {
        let h = Hasher::Sha256;
        let mut chain = Chain::new(h.clone());
        let first: Vec<String> = (0..3).map(|i| chain.seal(event(i))).collect();
        // A restart picks the chain up from the last line written.
        let mut resumed = Chain::after(h.clone(), first.last().unwrap()).unwrap();
        assert_eq!(resumed.next_seq(), 3);
        let second: Vec<String> = (3..5).map(|i| resumed.seal(event(i))).collect();
        assert_eq!(
            verify(&h, [file(&first).as_str(), file(&second).as_str()]),
            Ok(5)
        );
        // The files out of order are caught.
        let finding = verify(&h, [file(&second).as_str(), file(&first).as_str()]).unwrap_err();
        assert_eq!((finding.file, finding.line), (0, 1));
        // Fields named like the chain's are the chain's.
        let mut chain = Chain::new(h);
        let Value::Object(sneaky) = json!({ "seq": 99, "hash": "x", "ok": true }) else {
            unreachable!()
        };
        let line = chain.seal(sneaky);
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (value["seq"].as_u64(), value["ok"].as_bool()),
            (Some(0), Some(true))
        );
    }
}
