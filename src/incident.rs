//! The incident controls — revocations (`auth::revocation`), kill switches
//! (`policy::switches`) and blocks (`edge::blocks`) — shared by every instance with
//! `[cluster]`: each is a field of a Redis hash (its id, from one Redis counter, and its
//! JSON), and every change is announced on a channel. Each instance follows the channel
//! and reads the three hashes again when told, when it (re)connects, and every
//! [`RESYNC`] besides, so that one that missed a message converges. An instance started
//! later reads them at start-up.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::Value;

use crate::auth::revocation::{Revocation, Revocations};
use crate::edge::blocks::{Block, Blocks};
use crate::policy::switches::{Switch, Switches};

/// How often the whole state is read again even when no change was announced.
const RESYNC: Duration = Duration::from_secs(30);

/// Which control a change is of.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    Revocations,
    Switches,
    Blocks,
}

impl Control {
    fn name(self) -> &'static str {
        match self {
            Self::Revocations => "revocations",
            Self::Switches => "switches",
            Self::Blocks => "blocks",
        }
    }
}

/// The controls in Redis.
pub struct SharedControls {
    client: redis::Client,
    connection: ConnectionManager,
    timeout: Duration,
}

impl std::fmt::Debug for SharedControls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedControls").finish_non_exhaustive()
    }
}

fn key(what: &str) -> String {
    format!("{}incident:{what}", crate::cluster::PREFIX)
}

impl SharedControls {
    /// A lazy connection to `url`; every call has `timeout` as its deadline. Needs a
    /// tokio runtime.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            client: redis::Client::open(url).map_err(|e| e.to_string())?,
            connection: crate::cluster::connect(url, timeout)?,
            timeout,
        })
    }

    /// A new id, unique across the instances.
    pub async fn next_id(&self) -> Result<u64, String> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("INCR");
        command.arg(key("ids"));
        crate::cluster::within(self.timeout, command.query_async::<u64>(&mut connection)).await
    }

    /// Writes control `id` as `value`, and tells the other instances.
    pub async fn put(&self, control: Control, id: u64, value: &Value) -> Result<(), String> {
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(key(control.name()), id, value.to_string())
            .ignore()
            .publish(key("changes"), control.name())
            .ignore();
        crate::cluster::within(self.timeout, pipe.query_async::<()>(&mut connection)).await
    }

    /// Removes control `id`, and tells the other instances.
    pub async fn remove(&self, control: Control, id: u64) -> Result<(), String> {
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(key(control.name()), id)
            .ignore()
            .publish(key("changes"), control.name())
            .ignore();
        crate::cluster::within(self.timeout, pipe.query_async::<()>(&mut connection)).await
    }

    /// Every control as stored (values that do not read are left out).
    async fn load(&self) -> Result<[Vec<Value>; 3], String> {
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        for control in [Control::Revocations, Control::Switches, Control::Blocks] {
            pipe.hvals(key(control.name()));
        }
        let (revocations, switches, blocks): (Vec<String>, Vec<String>, Vec<String>) =
            crate::cluster::within(self.timeout, pipe.query_async(&mut connection)).await?;
        let parse = |texts: Vec<String>| -> Vec<Value> {
            texts
                .iter()
                .filter_map(|t| serde_json::from_str(t).ok())
                .collect()
        };
        Ok([parse(revocations), parse(switches), parse(blocks)])
    }
}

/// The local copies the shared controls are read into.
#[derive(Debug, Clone)]
pub struct Local {
    pub revocations: Weak<Revocations>,
    pub switches: Weak<Switches>,
    pub blocks: Weak<Blocks>,
}

impl Local {
    /// These copies (a gateway's), followed while they live.
    pub fn new(
        revocations: &Arc<Revocations>,
        switches: &Arc<Switches>,
        blocks: &Arc<Blocks>,
    ) -> Self {
        Self {
            revocations: Arc::downgrade(revocations),
            switches: Arc::downgrade(switches),
            blocks: Arc::downgrade(blocks),
        }
    }

    /// Reads the shared controls into the local copies; `false` once they are gone (the
    /// gateway with them).
    pub async fn sync(&self, shared: &SharedControls) -> Result<bool, String> {
        let [revocations, switches, blocks] = shared.load().await?;
        let (Some(r), Some(s), Some(b)) = (
            self.revocations.upgrade(),
            self.switches.upgrade(),
            self.blocks.upgrade(),
        ) else {
            return Ok(false);
        };
        r.replace_all(
            revocations
                .iter()
                .filter_map(Revocation::from_json)
                .collect(),
        );
        s.replace_all(switches.iter().filter_map(Switch::from_json).collect());
        b.replace_all(blocks.iter().filter_map(Block::from_json).collect());
        Ok(true)
    }
}

/// Reads the shared controls now, then follows their changes until the local copies are
/// gone: on every announcement, on every (re)subscription, and every [`RESYNC`].
pub async fn follow(shared: Arc<SharedControls>, local: Local) {
    let mut warned = false;
    loop {
        // (Re)subscribe first, then read: a change announced in between is not missed.
        let subscribed = match shared.client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(key("changes")).await {
                Ok(()) => Some(pubsub),
                Err(e) => {
                    tracing::debug!(error = %e, "Could not follow the shared incident controls");
                    None
                }
            },
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "Redis is unreachable: revocations, switches and blocks made on other instances are not seen until it is back");
                    warned = true;
                }
                None
            }
        };
        match local.sync(&shared).await {
            Ok(false) => return,
            Ok(true) => warned = false,
            Err(e) => tracing::debug!(error = %e, "Could not read the shared incident controls"),
        }
        let Some(pubsub) = subscribed else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut messages = pubsub.into_on_message();
        loop {
            use futures_util::StreamExt as _;
            match tokio::time::timeout(RESYNC, messages.next()).await {
                // Announced, or time to look anyway.
                Ok(Some(_)) | Err(_) => match local.sync(&shared).await {
                    Ok(false) => return,
                    Ok(true) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "Could not read the shared incident controls");
                    }
                },
                // The subscription broke: subscribe again.
                Ok(None) => break,
            }
        }
    }
}
