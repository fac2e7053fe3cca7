//! Revoked credentials: one token (by its `jti`), everything of a subject, or one API key
//! (by its hash), each until an expiry or for good. An operator revokes through the
//! admin API; authentication refuses a revoked credential from the next request on, as
//! it refuses a bad one (401).
//!
//! The check costs one atomic load while nothing is revoked; otherwise a read lock and a
//! look through the (short) list. An event stream open when its caller's credential is
//! revoked ends at once ([`Revocable`]).

use std::time::SystemTime;

use serde::Serialize;

use crate::inforce::{Entry, InForce};

use crate::request::Principal;

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revoked {
    /// One JWT, by its `jti` (and issuer, when given: `jti`s are unique per issuer).
    Token {
        jti: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
    },
    /// Every credential of a subject (and issuer, when given).
    Subject {
        subject: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
    },
    /// One API key, by the SHA-256 of the key (hex, as in the config): never the key.
    ApiKey {
        #[serde(serialize_with = "hex")]
        api_key_hash: [u8; 32],
    },
}

fn hex<S: serde::Serializer>(hash: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::hex::encode(hash))
}

impl Revoked {
    fn covers(&self, principal: &Principal) -> bool {
        let issuer_fits = |issuer: &Option<String>| issuer.is_none() || *issuer == principal.issuer;
        match self {
            Self::Token { jti, issuer } => {
                principal.token_id.as_deref() == Some(jti.as_str()) && issuer_fits(issuer)
            }
            Self::Subject { subject, issuer } => {
                principal.subject == *subject && issuer_fits(issuer)
            }
            Self::ApiKey { api_key_hash } => principal.key_hash == Some(*api_key_hash),
        }
    }
}

/// One revocation, as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    pub id: u64,
    #[serde(flatten)]
    pub what: Revoked,
    /// Lifted by itself then; `None`: until lifted.
    #[serde(serialize_with = "time", skip_serializing_if = "Option::is_none")]
    pub until: Option<SystemTime>,
    pub reason: String,
    /// The admin credential's name.
    pub by: String,
    #[serde(serialize_with = "time_now")]
    pub at: SystemTime,
}

fn time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => time_now(t, s),
        None => s.serialize_none(),
    }
}

fn time_now<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string())
}

impl Entry for Revocation {
    fn id(&self) -> u64 {
        self.id
    }
    fn until(&self) -> Option<SystemTime> {
        self.until
    }
}

impl Revocation {
    /// A revocation as [`Serialize`] wrote it (the shared store's copy); `None` if it is
    /// not one.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str);
        let issuer = text("issuer").map(str::to_owned);
        let what = match text("kind")? {
            "token" => Revoked::Token {
                jti: text("jti")?.to_owned(),
                issuer,
            },
            "subject" => Revoked::Subject {
                subject: text("subject")?.to_owned(),
                issuer,
            },
            "api_key" => Revoked::ApiKey {
                api_key_hash: crate::hex::decode_array(text("api_key_hash")?)?,
            },
            _ => return None,
        };
        Some(Self {
            id: value.get("id")?.as_u64()?,
            what,
            until: match text("until") {
                Some(until) => Some(humantime::parse_rfc3339(until).ok()?),
                None => None,
            },
            reason: text("reason").unwrap_or_default().to_owned(),
            by: text("by").unwrap_or_default().to_owned(),
            at: humantime::parse_rfc3339(text("at")?).ok()?,
        })
    }
}

/// Every revocation in force.
#[derive(Debug)]
pub struct Revocations {
    items: InForce<Revocation>,
    /// Bumped by every revocation: open streams look whether theirs is one.
    made: tokio::sync::watch::Sender<u64>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            items: InForce::default(),
            made: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Revocations {
    /// The revocation that covers `principal`, if one is in force.
    pub fn covering(&self, principal: &Principal) -> Option<u64> {
        self.items
            .find_map(|r| r.what.covers(principal).then_some(r.id))
    }

    /// Revokes `what` until `until` (or until lifted), with an id of this instance's;
    /// the revocation made.
    pub fn revoke(
        &self,
        what: Revoked,
        until: Option<SystemTime>,
        reason: String,
        by: String,
    ) -> Revocation {
        let revocation = Revocation {
            id: self.next_id(),
            what,
            until,
            reason,
            by,
            at: SystemTime::now(),
        };
        self.insert(revocation.clone());
        revocation
    }

    /// An id for a new one, of this instance's.
    pub fn next_id(&self) -> u64 {
        self.items.next_id()
    }

    /// Adds a revocation (its id given here or by the shared store).
    pub fn insert(&self, revocation: Revocation) {
        self.items.insert(revocation);
        self.made.send_modify(|n| *n += 1);
    }

    /// Replaces every revocation with `list` (the shared store's, as read).
    pub fn replace_all(&self, list: Vec<Revocation>) {
        self.items.replace_all(list);
        self.made.send_modify(|n| *n += 1);
    }

    /// Lifts revocation `id`; the revocation lifted, if it was in force.
    pub fn lift(&self, id: u64) -> Option<Revocation> {
        self.items.remove(id)
    }

    /// Every revocation in force (the expired ones are forgotten).
    pub fn list(&self) -> Vec<Revocation> {
        self.items.list()
    }
}

/// An event stream of `principal`'s that ends when one of its credentials is revoked.
pub struct Revocable<B> {
    inner: B,
    principal: std::sync::Arc<Principal>,
    revocations: std::sync::Arc<Revocations>,
    /// Resolves at the next revocation.
    next: std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>,
    ended: bool,
}

impl<B> std::fmt::Debug for Revocable<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocable")
            .field("subject", &self.principal.subject)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<B> Revocable<B> {
    pub fn new(
        inner: B,
        principal: std::sync::Arc<Principal>,
        revocations: std::sync::Arc<Revocations>,
    ) -> Self {
        let next = next_revocation(revocations.made.subscribe());
        Self {
            inner,
            principal,
            revocations,
            next,
            ended: false,
        }
    }
}

/// Resolves at the next revocation (`false` if revocations can no longer be made).
fn next_revocation(
    mut made: tokio::sync::watch::Receiver<u64>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> {
    Box::pin(async move { made.changed().await.is_ok() })
}

impl<B> http_body::Body for Revocable<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        if self.ended {
            return Poll::Ready(None);
        }
        while let Poll::Ready(more) = self.next.as_mut().poll(cx) {
            if let Some(id) = self.revocations.covering(&self.principal) {
                tracing::info!(subject = %self.principal.subject, revocation = id, "Ended an open stream: its credential was revoked");
                self.ended = true;
                return Poll::Ready(None);
            }
            if !more {
                break;
            }
            self.next = next_revocation(self.revocations.made.subscribe());
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::request::AuthMethod;

    fn jwt(subject: &str, jti: Option<&str>) -> Principal {
        let mut principal = Principal::new(subject, AuthMethod::Jwt);
        principal.issuer = Some("https://issuer.test".into());
        principal.token_id = jti.map(str::to_owned);
        principal
    }

    #[test]
    fn a_revocation_covers_what_it_names_and_nothing_else() {
        let revocations = Revocations::default();
        let (alice, other_token, bob) = (
            jwt("alice", Some("t-1")),
            jwt("alice", Some("t-2")),
            jwt("bob", Some("t-1")),
        );
        assert_eq!(revocations.covering(&alice), None);
        let token = revocations.revoke(
            Revoked::Token {
                jti: "t-1".into(),
                issuer: Some("https://issuer.test".into()),
            },
            None,
            "leaked".into(),
            "oncall".into(),
        );
        assert_eq!(revocations.covering(&alice), Some(token.id));
        assert_eq!(revocations.covering(&other_token), None);
        // Another issuer's `t-1` is another token.
        let mut elsewhere = bob.clone();
        elsewhere.issuer = Some("https://other.test".into());
        assert_eq!(revocations.covering(&elsewhere), None);

        let subject = revocations.revoke(
            Revoked::Subject {
                subject: "alice".into(),
                issuer: None,
            },
            None,
            String::new(),
            "oncall".into(),
        );
        assert_eq!(revocations.covering(&other_token), Some(subject.id));
        assert!(revocations.lift(subject.id).is_some());
        assert_eq!(revocations.covering(&other_token), None);

        let mut keyed = Principal::new("svc", AuthMethod::ApiKey);
        keyed.key_hash = Some([7; 32]);
        let key = revocations.revoke(
            Revoked::ApiKey {
                api_key_hash: [7; 32],
            },
            None,
            String::new(),
            "oncall".into(),
        );
        assert_eq!(revocations.covering(&keyed), Some(key.id));
        keyed.key_hash = Some([8; 32]);
        assert_eq!(revocations.covering(&keyed), None);
    }

    #[test]
    fn an_expired_revocation_no_longer_applies_and_is_forgotten() {
        let revocations = Revocations::default();
        let alice = jwt("alice", None);
        revocations.revoke(
            Revoked::Subject {
                subject: "alice".into(),
                issuer: None,
            },
            Some(SystemTime::now() - Duration::from_secs(1)),
            String::new(),
            "oncall".into(),
        );
        assert_eq!(revocations.covering(&alice), None);
        assert!(revocations.list().is_empty());
        assert!(!revocations.items.any(), "the fast path is back");
    }
}
