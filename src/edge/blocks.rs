//! Addresses an operator blocked: single addresses or networks (CIDR), until an expiry or
//! for good. A request from one is refused (403) before anything else is looked at — the
//! audit record excepted. Set through the admin API.
//!
//! The check costs one atomic load while nothing is blocked.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use ipnet::IpNet;
use serde::Serialize;

/// One block.
#[derive(Debug, Clone)]
pub struct Block {
    pub id: u64,
    pub network: IpNet,
    pub until: Option<SystemTime>,
    pub reason: String,
    /// The admin credential's name.
    pub by: String,
    pub at: SystemTime,
}

impl Block {
    fn in_force(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|until| now < until)
    }

    /// A block as [`Serialize`] wrote it (the shared store's copy); `None` if it is not
    /// one.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str);
        Some(Self {
            id: value.get("id")?.as_u64()?,
            network: text("network")?.parse().ok()?,
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

impl Serialize for Block {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("network", &self.network.to_string())?;
        if let Some(until) = self.until {
            map.serialize_entry("until", &time(until))?;
        }
        map.serialize_entry("reason", &self.reason)?;
        map.serialize_entry("by", &self.by)?;
        map.serialize_entry("at", &time(self.at))?;
        map.end()
    }
}

/// Every block in force.
#[derive(Debug, Default)]
pub struct Blocks {
    /// Whether there is any: the check's fast path.
    any: AtomicBool,
    list: RwLock<Vec<Block>>,
    next_id: AtomicU64,
}

impl Blocks {
    fn read(&self) -> RwLockReadGuard<'_, Vec<Block>> {
        self.list
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Vec<Block>> {
        self.list
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `ip` is blocked (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn blocks(&self, ip: IpAddr) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let ip = ip.to_canonical();
        let now = SystemTime::now();
        self.read()
            .iter()
            .any(|b| b.in_force(now) && b.network.contains(&ip))
    }

    /// Blocks `network`; the block.
    pub fn block(
        &self,
        network: IpNet,
        until: Option<SystemTime>,
        reason: String,
        by: String,
    ) -> Block {
        let block = Block {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            network: network.trunc(),
            until,
            reason,
            by,
            at: SystemTime::now(),
        };
        self.write().push(block.clone());
        self.any.store(true, Ordering::Release);
        block
    }

    /// An id for a new one, of this instance's.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds a block made elsewhere (its id given by the shared store).
    pub fn insert(&self, block: Block) {
        self.next_id.fetch_max(block.id, Ordering::Relaxed);
        let mut list = self.write();
        list.retain(|b| b.id != block.id);
        list.push(block);
        self.any.store(true, Ordering::Release);
    }

    /// Replaces every block with `list` (the shared store's, as read).
    pub fn replace_all(&self, list: Vec<Block>) {
        let mut current = self.write();
        if let Some(max) = list.iter().map(|b| b.id).max() {
            self.next_id.fetch_max(max, Ordering::Relaxed);
        }
        *current = list;
        self.any.store(!current.is_empty(), Ordering::Release);
    }

    /// Lifts block `id`; the block, if it was in force.
    pub fn unblock(&self, id: u64) -> Option<Block> {
        let mut list = self.write();
        let position = list.iter().position(|b| b.id == id)?;
        let block = list.remove(position);
        self.any.store(!list.is_empty(), Ordering::Release);
        Some(block).filter(|b| b.in_force(SystemTime::now()))
    }

    /// Every block in force (expired ones are forgotten).
    pub fn list(&self) -> Vec<Block> {
        let now = SystemTime::now();
        let mut list = self.write();
        list.retain(|b| b.in_force(now));
        self.any.store(!list.is_empty(), Ordering::Release);
        list.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_covers_its_network_and_mapped_addresses() {
        let blocks = Blocks::default();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(!blocks.blocks(ip("203.0.113.7")));
        let net = blocks.block(
            "203.0.113.9/24".parse().unwrap(),
            None,
            String::new(),
            "oncall".into(),
        );
        assert_eq!(
            net.network.to_string(),
            "203.0.113.0/24",
            "written as the network"
        );
        assert!(blocks.blocks(ip("203.0.113.7")));
        assert!(blocks.blocks(ip("::ffff:203.0.113.200")));
        assert!(!blocks.blocks(ip("203.0.114.1")));
        let one = blocks.block(
            "2001:db8::1/128".parse().unwrap(),
            None,
            String::new(),
            "oncall".into(),
        );
        assert!(blocks.blocks(ip("2001:db8::1")));
        assert!(!blocks.blocks(ip("2001:db8::2")));
        assert!(blocks.unblock(net.id).is_some());
        assert!(!blocks.blocks(ip("203.0.113.7")));
        blocks.unblock(one.id);
        assert!(!blocks.any.load(Ordering::Acquire));
    }
}
