//! Addresses an operator blocked: single addresses or networks (CIDR), until an expiry or
//! for good. A request from one is refused (403) before anything else is looked at — the
//! audit record excepted. Set through the admin API.
//!
//! The check costs one atomic load while nothing is blocked.

use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use serde::Serialize;

use crate::inforce::{Entry, InForce};

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

impl Entry for Block {
    fn id(&self) -> u64 {
        self.id
    }
    fn until(&self) -> Option<SystemTime> {
        self.until
    }
}

impl Block {
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
pub struct Blocks(InForce<Block>);

impl Blocks {
    /// Whether `ip` is blocked (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn blocks(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0
            .find_map(|b| b.network.contains(&ip).then_some(()))
            .is_some()
    }

    /// Blocks `network`, with an id of this instance's; the block.
    pub fn block(
        &self,
        network: IpNet,
        until: Option<SystemTime>,
        reason: String,
        by: String,
    ) -> Block {
        let block = Block {
            id: self.next_id(),
            network: network.trunc(),
            until,
            reason,
            by,
            at: SystemTime::now(),
        };
        self.insert(block.clone());
        block
    }

    /// An id for a new one, of this instance's.
    pub fn next_id(&self) -> u64 {
        self.0.next_id()
    }

    /// Adds a block (its id given here or by the shared store).
    pub fn insert(&self, block: Block) {
        self.0.insert(block);
    }

    /// Replaces every block with `list` (the shared store's, as read).
    pub fn replace_all(&self, list: Vec<Block>) {
        self.0.replace_all(list);
    }

    /// Lifts block `id`; the block, if it was in force.
    pub fn unblock(&self, id: u64) -> Option<Block> {
        self.0.remove(id)
    }

    /// Every block in force (expired ones are forgotten).
    pub fn list(&self) -> Vec<Block> {
        self.0.list()
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
        assert!(!blocks.0.any());
    }
}
