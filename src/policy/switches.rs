//! Kill switches: an operator turns off a whole route, or the tools, prompts or resources
//! of a route that match a pattern, until turned on again (or an expiry). A call of what
//! is off is refused with a JSON-RPC error that says so, whatever the route's rules allow;
//! what is off is left out of lists. Set through the admin API.
//!
//! The check costs one atomic load while no switch is off; otherwise a read lock and a
//! look through the (short) list.

use std::time::SystemTime;

use serde::Serialize;

use crate::inforce::{Entry, InForce};

use super::Kind;
use crate::glob::Glob;

/// What a switch turns off.
#[derive(Debug, Clone)]
pub struct Item {
    pub kind: Kind,
    /// As the operator wrote it (`*` and `?` patterns, as in the rules).
    pub pattern: String,
    glob: Glob,
}

impl Item {
    pub fn new(kind: Kind, pattern: &str) -> Self {
        Self {
            kind,
            pattern: pattern.to_owned(),
            glob: Glob::new(pattern),
        }
    }
}

/// One switch turned off.
#[derive(Debug, Clone)]
pub struct Switch {
    pub id: u64,
    /// The route's name.
    pub route: String,
    /// `None`: the whole route.
    pub item: Option<Item>,
    pub until: Option<SystemTime>,
    pub reason: String,
    /// The admin credential's name.
    pub by: String,
    pub at: SystemTime,
}

impl Entry for Switch {
    fn id(&self) -> u64 {
        self.id
    }
    fn until(&self) -> Option<SystemTime> {
        self.until
    }
}

impl Switch {
    /// A switch as [`Serialize`] wrote it (the shared store's copy); `None` if it is not
    /// one.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str);
        let item = [
            ("tool", Kind::Tool),
            ("prompt", Kind::Prompt),
            ("resource", Kind::Resource),
        ]
        .into_iter()
        .find_map(|(key, kind)| Some(Item::new(kind, text(key)?)));
        Some(Self {
            id: value.get("id")?.as_u64()?,
            route: text("route")?.to_owned(),
            item,
            until: match text("until") {
                Some(until) => Some(humantime::parse_rfc3339(until).ok()?),
                None => None,
            },
            reason: text("reason").unwrap_or_default().to_owned(),
            by: text("by").unwrap_or_default().to_owned(),
            at: humantime::parse_rfc3339(text("at")?).ok()?,
        })
    }

    /// What the client is told: what is off, and why.
    pub fn message(&self, what: &str) -> String {
        if self.reason.is_empty() {
            format!("{what} is disabled by an operator")
        } else {
            format!("{what} is disabled by an operator: {}", self.reason)
        }
    }
}

impl Serialize for Switch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("route", &self.route)?;
        if let Some(item) = &self.item {
            let kind = match item.kind {
                Kind::Tool => "tool",
                Kind::Prompt => "prompt",
                Kind::Resource => "resource",
            };
            map.serialize_entry(kind, &item.pattern)?;
        }
        if let Some(until) = self.until {
            map.serialize_entry("until", &time(until))?;
        }
        map.serialize_entry("reason", &self.reason)?;
        map.serialize_entry("by", &self.by)?;
        map.serialize_entry("at", &time(self.at))?;
        map.end()
    }
}

/// Every switch turned off.
#[derive(Debug, Default)]
pub struct Switches(InForce<Switch>);

impl Switches {
    /// Whether any switch is off (on any route).
    pub fn any(&self) -> bool {
        self.0.any()
    }

    /// The switch that turns `route` off whole, if one is in force.
    pub fn route_off(&self, route: &str) -> Option<Switch> {
        self.0
            .find_map(|s| (s.route == route && s.item.is_none()).then(|| s.clone()))
    }

    /// The switch that turns off the `kind` named `name` on `route`, if one is in force.
    pub fn item_off(&self, route: &str, kind: Kind, name: &str) -> Option<Switch> {
        self.0.find_map(|s| {
            let off = s.route == route
                && s.item
                    .as_ref()
                    .is_some_and(|i| i.kind == kind && i.glob.matches(name));
            off.then(|| s.clone())
        })
    }

    /// Turns `item` (or the whole route) of `route` off, with an id of this instance's;
    /// the switch.
    pub fn turn_off(
        &self,
        route: String,
        item: Option<Item>,
        until: Option<SystemTime>,
        reason: String,
        by: String,
    ) -> Switch {
        let switch = Switch {
            id: self.next_id(),
            route,
            item,
            until,
            reason,
            by,
            at: SystemTime::now(),
        };
        self.insert(switch.clone());
        switch
    }

    /// An id for a new one, of this instance's.
    pub fn next_id(&self) -> u64 {
        self.0.next_id()
    }

    /// Adds a switch (its id given here or by the shared store).
    pub fn insert(&self, switch: Switch) {
        self.0.insert(switch);
    }

    /// Replaces every switch with `list` (the shared store's, as read).
    pub fn replace_all(&self, list: Vec<Switch>) {
        self.0.replace_all(list);
    }

    /// Turns switch `id` on again; the switch, if it was off.
    pub fn turn_on(&self, id: u64) -> Option<Switch> {
        self.0.remove(id)
    }

    /// Every switch off (expired ones are forgotten).
    pub fn list(&self) -> Vec<Switch> {
        self.0.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_turns_off_what_it_names_on_its_route_only() {
        let switches = Switches::default();
        assert!(switches.item_off("a", Kind::Tool, "delete_repo").is_none());
        let tools = switches.turn_off(
            "a".into(),
            Some(Item::new(Kind::Tool, "delete_*")),
            None,
            "incident 42".into(),
            "oncall".into(),
        );
        assert_eq!(
            switches
                .item_off("a", Kind::Tool, "delete_repo")
                .map(|s| s.id),
            Some(tools.id)
        );
        assert!(switches.item_off("a", Kind::Tool, "create_repo").is_none());
        assert!(
            switches
                .item_off("a", Kind::Prompt, "delete_repo")
                .is_none()
        );
        assert!(switches.item_off("b", Kind::Tool, "delete_repo").is_none());
        assert!(
            switches.route_off("a").is_none(),
            "a tool switch is not the route's"
        );
        let route = switches.turn_off("b".into(), None, None, String::new(), "oncall".into());
        assert_eq!(switches.route_off("b").map(|s| s.id), Some(route.id));
        assert_eq!(
            tools.message("tool `delete_repo`"),
            "tool `delete_repo` is disabled by an operator: incident 42"
        );
        assert!(switches.turn_on(tools.id).is_some());
        assert!(switches.item_off("a", Kind::Tool, "delete_repo").is_none());
        assert!(switches.turn_on(tools.id).is_none(), "on once");
        switches.turn_on(route.id);
        assert!(!switches.any(), "the fast path is back");
    }
}
