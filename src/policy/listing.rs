//! What one caller may see of a route's lists (stage 13): the route's rules narrowed once
//! to the caller, so that each item of a list costs a lookup, not a decision.
//!
//! [`RoutePolicy::lists`] decides one item: it looks at every rule that could name it and
//! asks of each whether the caller is who it is about, through the roles' permissions.
//! A list of 500 tools asked that 500 times, a quarter of a millisecond with 100 rules.
//! What depends on the caller (its roles, permissions and scopes) is the same for every
//! item, so [`Listing`] settles it once per caller and keeps, per kind of item, only what
//! names do: the names rules about the caller allow or deny, and their wildcard patterns.
//! [`Listings`] keeps them per route by the list cache's viewer key (roles and scopes).
//!
//! The same decision as [`RoutePolicy::lists`], item for item: an item is hidden by a deny
//! rule about the caller that names it (deny rules with argument conditions set aside,
//! since they refuse only some calls); otherwise shown by an allow rule about the caller
//! that names it and whose scopes the caller has (or, where the route does step-up, could
//! get), or by the route's default allow.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Kind, Roles, RoutePolicy, Rule};
use crate::config::policy::{DefaultPolicy, Effect};
use crate::glob::{Glob, Shape};
use crate::request::Principal;

/// The route's rules as they bear on one caller's lists.
#[derive(Debug, Default)]
pub struct Listing {
    /// Per kind: tools, prompts, resources.
    kinds: [KindListing; 3],
}

type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Default)]
struct KindListing {
    /// A deny rule about the caller names every item (or none in particular).
    deny_all: bool,
    /// Items no rule names are shown: an allow rule about the caller names every item,
    /// or the route allows by default.
    show_all: bool,
    /// Names rules about the caller name literally: `false` if a deny rule does (it
    /// wins), `true` if only allow rules do.
    names: Names,
    /// Wildcard patterns of deny rules, then of allow rules, about the caller.
    deny: Patterns,
    show: Patterns,
}

/// Texts up to this long are looked up as one number: hashed and compared as a word,
/// not as a slice (tool names and the prefixes of their families mostly are).
const WORD: usize = 16;

/// `text` as a number, if it is short enough: its first and its last bytes, read as two
/// words that overlap in the middle (every byte is in one of them, so texts of one
/// length are different numbers).
fn word(text: &[u8]) -> Option<u128> {
    let (first, last) = match text.len() {
        8..=WORD => (
            u64::from_le_bytes(*text.first_chunk()?),
            u64::from_le_bytes(*text.last_chunk()?),
        ),
        4..=7 => (
            u64::from(u32::from_le_bytes(*text.first_chunk()?)),
            u64::from(u32::from_le_bytes(*text.last_chunk()?)),
        ),
        0 => (0, 0),
        len @ 1..=3 => (
            u64::from_le_bytes([
                *text.first()?,
                *text.get(len / 2)?,
                *text.last()?,
                0,
                0,
                0,
                0,
                0,
            ]),
            0,
        ),
        _ => return None,
    };
    Some(u128::from(first) | u128::from(last) << 64)
}

/// The names rules name literally, with what they decide.
#[derive(Debug, Default)]
struct Names {
    /// With their length: texts of different lengths may be the same number.
    short: HashMap<(u128, u8), bool, Hasher>,
    long: HashMap<Box<str>, bool, Hasher>,
}

impl Names {
    fn get(&self, name: &str) -> Option<bool> {
        match (word(name.as_bytes()), u8::try_from(name.len())) {
            (Some(word), Ok(len)) => self.short.get(&(word, len)).copied(),
            _ => self.long.get(name).copied(),
        }
    }

    /// `shown`, unless a deny rule named `name` already (it wins).
    fn insert(&mut self, name: &str, shown: bool) {
        let entry = match (word(name.as_bytes()), u8::try_from(name.len())) {
            (Some(word), Ok(len)) => self.short.entry((word, len)).or_insert(shown),
            _ => self.long.entry(name.into()).or_insert(shown),
        };
        *entry &= shown;
    }
}

/// Texts of one length.
#[derive(Debug)]
enum SameLength {
    Short(HashSet<u128, Hasher>),
    Long(HashSet<Box<[u8]>, Hasher>),
}

impl SameLength {
    fn contains(&self, text: &[u8]) -> bool {
        match self {
            Self::Short(set) => word(text).is_some_and(|word| set.contains(&word)),
            Self::Long(set) => set.contains(text),
        }
    }

    fn insert(&mut self, text: &[u8]) {
        match self {
            Self::Short(set) => {
                set.extend(word(text));
            }
            Self::Long(set) => {
                set.insert(text.into());
            }
        }
    }
}

/// Wildcard patterns, looked up together: the prefixes (`query_*`) and suffixes
/// (`*_admin`) rules mostly are in sets by length, a lookup per length instead of a
/// comparison per pattern; the others one by one.
#[derive(Debug, Default)]
struct Patterns {
    any: bool,
    prefixes: Vec<(usize, SameLength)>,
    suffixes: Vec<(usize, SameLength)>,
    general: Vec<Glob>,
}

impl Patterns {
    fn add(&mut self, glob: &Glob) {
        let by_length = |sets: &mut Vec<(usize, SameLength)>, text: &str| {
            let set = match sets.iter_mut().position(|(len, _)| *len == text.len()) {
                Some(at) => sets.get_mut(at),
                None => {
                    let set = if text.len() <= WORD {
                        SameLength::Short(HashSet::default())
                    } else {
                        SameLength::Long(HashSet::default())
                    };
                    sets.push((text.len(), set));
                    sets.last_mut()
                }
            };
            if let Some((_, set)) = set {
                set.insert(text.as_bytes());
            }
        };
        match glob.shape() {
            Shape::Any => self.any = true,
            Shape::Prefix(prefix) => by_length(&mut self.prefixes, prefix),
            Shape::Suffix(suffix) => by_length(&mut self.suffixes, suffix),
            Shape::Exact(_) | Shape::General => self.general.push(glob.clone()),
        }
    }

    /// Whether a pattern matches `name`. A prefix of `len` bytes that would end inside a
    /// character is no prefix of it (no pattern ends there), and so for suffixes.
    fn match_any(&self, name: &str) -> bool {
        self.any
            || self.prefixes.iter().any(|(len, set)| {
                name.get(..*len)
                    .is_some_and(|head| set.contains(head.as_bytes()))
            })
            || self.suffixes.iter().any(|(len, set)| {
                name.len()
                    .checked_sub(*len)
                    .and_then(|from| name.get(from..))
                    .is_some_and(|tail| set.contains(tail.as_bytes()))
            })
            || self.general.iter().any(|glob| glob.matches(name))
    }
}

impl KindListing {
    fn shows(&self, name: &str) -> bool {
        if self.deny_all {
            return false;
        }
        let named = self.names.get(name);
        if named == Some(false) || self.deny.match_any(name) {
            return false;
        }
        self.show_all || named == Some(true) || self.show.match_any(name)
    }

    /// Takes in `rule`, about the caller and fit to list this kind, with its patterns
    /// (`None`: it names no target, so every item).
    fn add(&mut self, effect: Effect, patterns: Option<&[Glob]>) {
        let deny = effect == Effect::Deny;
        let Some(patterns) = patterns else {
            if deny {
                self.deny_all = true;
            } else {
                self.show_all = true;
            }
            return;
        };
        for glob in patterns {
            if glob.is_literal() {
                self.names.insert(glob.as_str(), !deny);
            } else if deny {
                self.deny.add(glob);
            } else {
                self.show.add(glob);
            }
        }
    }
}

/// Bytes a hash table of `capacity` entries of `T` holds (its control bytes too).
fn table_bytes<T>(capacity: usize) -> usize {
    capacity * (size_of::<T>() + 1)
}

impl Names {
    fn weight(&self) -> usize {
        table_bytes::<((u128, u8), bool)>(self.short.capacity())
            + table_bytes::<(Box<str>, bool)>(self.long.capacity())
            + self.long.keys().map(|name| name.len()).sum::<usize>()
    }
}

impl SameLength {
    fn weight(&self) -> usize {
        match self {
            Self::Short(set) => table_bytes::<u128>(set.capacity()),
            Self::Long(set) => {
                table_bytes::<Box<[u8]>>(set.capacity())
                    + set.iter().map(|text| text.len()).sum::<usize>()
            }
        }
    }
}

impl Patterns {
    fn weight(&self) -> usize {
        let by_length = |sets: &[(usize, SameLength)]| {
            sets.iter()
                .map(|(_, set)| size_of::<(usize, SameLength)>() + set.weight())
                .sum::<usize>()
        };
        by_length(&self.prefixes)
            + by_length(&self.suffixes)
            + self
                .general
                .iter()
                .map(|glob| size_of::<Glob>() + glob.as_str().len())
                .sum::<usize>()
    }
}

impl Listing {
    /// Bytes it holds, about: to bound the memory of a route's listings.
    pub fn weight(&self) -> usize {
        size_of::<Self>()
            + self
                .kinds
                .iter()
                .map(|kind| kind.names.weight() + kind.deny.weight() + kind.show.weight())
                .sum::<usize>()
    }

    /// Whether an item of kind `kind` called `name` is listed.
    pub fn shows(&self, kind: Kind, name: &str) -> bool {
        self.kinds
            .get(kind.slot())
            .is_some_and(|listing| listing.shows(name))
    }
}

impl RoutePolicy {
    /// The route's rules narrowed to `principal` (see the module).
    pub fn listing(&self, roles: &Roles, principal: &Principal) -> Listing {
        let mut listing = Listing::default();
        for slot in &mut listing.kinds {
            slot.show_all = self.default == DefaultPolicy::Allow;
        }
        for rule in &self.rules {
            if !rule.about(roles, principal) {
                continue;
            }
            for kind in [Kind::Tool, Kind::Prompt, Kind::Resource] {
                let Some(slot) = listing.kinds.get_mut(kind.slot()) else {
                    continue;
                };
                if !listable(rule, kind, self.step_up, principal) {
                    continue;
                }
                match rule.patterns(kind) {
                    Some(patterns) => slot.add(rule.effect, Some(patterns)),
                    // A rule naming targets of other kinds only names no item of this one.
                    None if rule.has_targets() => {}
                    None => slot.add(rule.effect, None),
                }
            }
        }
        listing
    }
}

/// Whether `rule`, about `principal`, bears on its lists of `kind`: it judges the call
/// that uses such an item; an allow rule whose scopes the principal lacks only where the
/// route does step-up; a deny rule only without conditions.
fn listable(rule: &Rule, kind: Kind, step_up: bool, principal: &Principal) -> bool {
    let method = match kind {
        Kind::Tool => "tools/call",
        Kind::Prompt => "prompts/get",
        Kind::Resource => "resources/read",
    };
    let judged = rule
        .methods
        .as_ref()
        .is_none_or(|methods| methods.iter().any(|m| m == method));
    let effective = match rule.effect {
        Effect::Deny => rule.when.is_empty(),
        Effect::Allow => step_up || rule.scopes.iter().all(|s| principal.scopes.contains(s)),
    };
    judged && effective
}

/// Each route's [`Listing`]s, by the viewer key of the list cache (the caller's roles and
/// scopes): made on a caller's first list, kept for its next ones and for every caller
/// with the same roles and scopes. Bounded by bytes (a listing grows with the rules about
/// its caller); one that goes is made again.
#[derive(Debug)]
pub struct Listings {
    cache: quick_cache::sync::Cache<Arc<str>, Arc<Listing>, ListingWeight>,
}

#[derive(Debug, Clone, Copy)]
struct ListingWeight;

impl quick_cache::Weighter<Arc<str>, Arc<Listing>> for ListingWeight {
    fn weight(&self, viewer: &Arc<str>, listing: &Arc<Listing>) -> u64 {
        (viewer.len() + listing.weight()) as u64
    }
}

impl Listings {
    /// About how many kinds of caller a route sees (the cache's first size).
    const VIEWERS: usize = 4096;
    /// Bytes of listings a route keeps at most: 4096 listings of a dozen rules each, or
    /// some hundreds of listings of a policy of hundreds of rules about every caller.
    const BYTES: u64 = 8 * 1024 * 1024;

    pub fn new() -> Self {
        Self {
            cache: quick_cache::sync::Cache::with_weighter(
                Self::VIEWERS,
                Self::BYTES,
                ListingWeight,
            ),
        }
    }

    /// The listing for the caller `viewer` stands for, made by `make` if it is not kept.
    pub fn get_or_make(&self, viewer: &Arc<str>, make: impl FnOnce() -> Listing) -> Arc<Listing> {
        if let Some(listing) = self.cache.get(viewer) {
            return listing;
        }
        let listing = Arc::new(make());
        self.cache.insert(Arc::clone(viewer), Arc::clone(&listing));
        listing
    }
}

impl Default for Listings {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::policy::{ConditionConfig, RuleConfig};
    use crate::request::AuthMethod;

    /// A small deterministic generator: the same rules on every run.
    struct Draw(u64);

    impl Draw {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 33) as usize % n
        }

        fn some(&mut self, from: &[&str], most: usize) -> Vec<String> {
            (0..self.next(most + 1))
                .map(|_| from[self.next(from.len())].to_owned())
                .collect()
        }
    }

    const NAMES: &[&str] = &[
        "query_a",
        "query_b",
        "export_a",
        "danger_a",
        "a",
        "file:///etc/x",
        "file:///tmp/y",
        "é_a",
        "日本_a",
        "日",
        "a\0",
        "a_very_long_tool_name_over_16",
        "a_very_long_tool_game_over_16",
        "a_very_long_tool_other",
    ];
    const PATTERNS: &[&str] = &[
        "query_a",
        "export_a",
        "a",
        "query_*",
        "*_a",
        "*",
        "q?ery_b",
        "file:///tmp/*",
        "file:///etc/x",
        "nothing",
        "é*",
        "*本_a",
        "日*",
        "*y",
        "a_very_long_tool_*",
        "*_name_over_16",
        "a_very_long_tool_name_over_16",
    ];
    const ROLES: &[&str] = &["analyst", "admin", "ops", "guest"];
    const PERMISSIONS: &[&str] = &["read:db", "write:db", "use:export"];
    const SCOPES: &[&str] = &["mcp:read", "mcp:write"];
    const METHODS: &[&str] = &[
        "tools/call",
        "prompts/get",
        "resources/read",
        "completion/complete",
        "resources/subscribe",
    ];

    fn rule(draw: &mut Draw) -> RuleConfig {
        let mut targets = || match draw.next(3) {
            0 => None,
            _ => Some(draw.some(PATTERNS, 3)),
        };
        let (tools, prompts, resources) = (targets(), targets(), targets());
        let effect = if draw.next(3) == 0 {
            Effect::Deny
        } else {
            Effect::Allow
        };
        let methods = (draw.next(3) == 0).then(|| draw.some(METHODS, 2));
        RuleConfig {
            effect,
            methods,
            tools,
            prompts,
            resources,
            roles: draw.some(ROLES, 2),
            require: draw.some(PERMISSIONS, 1),
            scopes: if effect == Effect::Allow {
                draw.some(SCOPES, 1)
            } else {
                Vec::new()
            },
            when: (draw.next(4) == 0)
                .then(|| ConditionConfig {
                    argument: "/limit".into(),
                    max: Some(10.0),
                    ..ConditionConfig::default()
                })
                .into_iter()
                .collect(),
        }
    }

    /// A caller's listing shows what [`RoutePolicy::lists`] lists, item by item, for
    /// random rules (deny and allow, globs and literals, methods, roles, permissions,
    /// scopes, conditions, step-up, either default) and random callers.
    #[test]
    fn a_listing_shows_what_the_policy_lists() {
        let roles = Roles::new(&BTreeMap::from([
            ("analyst".to_owned(), vec!["read:*".to_owned()]),
            ("admin".to_owned(), vec!["*".to_owned()]),
            (
                "ops".to_owned(),
                vec!["write:db".to_owned(), "use:export".to_owned()],
            ),
        ]));
        let mut draw = Draw(0x2545_f491_4f6c_dd1d);
        let (mut shown, mut hidden) = (0, 0);
        for _ in 0..400 {
            let rules: Vec<RuleConfig> = (0..1 + draw.next(8)).map(|_| rule(&mut draw)).collect();
            let default = if draw.next(3) == 0 {
                DefaultPolicy::Allow
            } else {
                DefaultPolicy::Deny
            };
            let step_up = draw.next(2) == 0;
            let Ok(policy) = RoutePolicy::new(&rules, default, step_up) else {
                panic!("rules that do not compile: {rules:?}");
            };
            for _ in 0..6 {
                let mut caller = Principal::new("alice", AuthMethod::Jwt);
                caller.roles = draw.some(ROLES, 2);
                caller.scopes = draw.some(SCOPES, 2);
                let listing = policy.listing(&roles, &caller);
                for kind in [Kind::Tool, Kind::Prompt, Kind::Resource] {
                    for name in NAMES {
                        let lists = policy.lists(&roles, &caller, kind, name);
                        assert_eq!(
                            listing.shows(kind, name),
                            lists,
                            "{kind:?} {name} for {:?} {:?}, default {default:?}, step-up \
                             {step_up}: {rules:#?}",
                            caller.roles,
                            caller.scopes,
                        );
                        if lists {
                            shown += 1;
                        } else {
                            hidden += 1;
                        }
                    }
                }
            }
        }
        // Both answers are common: the comparison is not of one answer against itself.
        assert!(
            shown > 2000 && hidden > 2000,
            "{shown} shown, {hidden} hidden"
        );
    }

    #[test]
    fn listings_are_kept_per_viewer() {
        let listings = Listings::new();
        let (one, two): (Arc<str>, Arc<str>) = (Arc::from("one"), Arc::from("two"));
        let mut made = 0;
        let mut make = || {
            made += 1;
            Listing::default()
        };
        let first = listings.get_or_make(&one, &mut make);
        let again = listings.get_or_make(&one, &mut make);
        assert!(Arc::ptr_eq(&first, &again));
        let other = listings.get_or_make(&two, &mut make);
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(made, 2);
    }

    /// Texts of one length up to [`WORD`] bytes are different numbers; longer ones are none
    /// (they are looked up as texts).
    #[test]
    fn short_texts_are_words_and_long_ones_are_not() {
        let mut seen = HashSet::<(u128, usize)>::new();
        let bytes = [b'a', b'b', 0xc3, 0xa9];
        for len in 0..=6 {
            // Every text of `len` bytes drawn from `bytes`.
            for mut n in 0..bytes.len().pow(u32::try_from(len).unwrap_or(0)) {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        let byte = bytes[n % bytes.len()];
                        n /= bytes.len();
                        byte
                    })
                    .collect();
                let Some(word) = word(&text) else {
                    panic!("{text:?} is short");
                };
                assert!(seen.insert((word, len)), "{text:?} is another's number");
            }
        }
        let long = "tool_0000_with_a_long_name";
        for len in [WORD - 1, WORD] {
            let (one, two) = (&long.as_bytes()[..len], &long.as_bytes()[1..=len]);
            assert_ne!(word(one), word(two));
            assert!(word(one).is_some());
        }
        for len in WORD + 1..=long.len() {
            assert_eq!(word(&long.as_bytes()[..len]), None, "{len} bytes");
        }
    }

    /// A listing weighs more the more names and patterns it holds, and a route keeps no
    /// more than [`Listings::BYTES`] of them however many kinds of caller it sees.
    #[test]
    fn listings_are_bounded_by_their_bytes() {
        let caller = Principal::new("alice", AuthMethod::Jwt);
        let listing_of = |tools: Vec<String>| {
            let rule = RuleConfig {
                tools: Some(tools),
                ..RuleConfig::default()
            };
            let Ok(policy) = RoutePolicy::new(&[rule], DefaultPolicy::Deny, false) else {
                panic!("an allow rule for every caller compiles");
            };
            policy.listing(&Roles::new(&BTreeMap::new()), &caller)
        };
        let names = |n: usize| {
            (0..n)
                .map(|i| format!("tool_{i:04}_with_a_long_name"))
                .collect()
        };
        let small = listing_of(names(2));
        let large = listing_of(names(2000));
        assert!(large.shows(Kind::Tool, "tool_1999_with_a_long_name"));
        assert!(!large.shows(Kind::Tool, "tool_2000_with_a_long_name"));
        assert!(!large.shows(Kind::Tool, "tool_1999_with_a_lung_name"));
        assert!(
            large.weight() > small.weight() + 2000 * 26,
            "{} vs {}",
            large.weight(),
            small.weight()
        );

        let listings = Listings::new();
        let kept = |listings: &Listings| {
            (0..200)
                .filter(|i| {
                    listings
                        .cache
                        .get(&Arc::from(format!("viewer {i}")))
                        .is_some()
                })
                .count()
        };
        for i in 0..200 {
            listings.get_or_make(&Arc::from(format!("viewer {i}")), || {
                listing_of(names(2000))
            });
        }
        assert!(listings.cache.weight() <= Listings::BYTES);
        let most = usize::try_from(Listings::BYTES).unwrap_or(usize::MAX) / large.weight();
        assert!(kept(&listings) <= most, "{} kept", kept(&listings));
        assert!(kept(&listings) > 0);
    }
}
