//! Tool pins shared through Redis (`[cluster]`): every instance holds the same pins, so a
//! tool that one instance saw change is held on all of them, and one approval releases
//! it everywhere.
//!
//! Redis holds one hash, `portcullis:pins`, whose fields are `["route","tool"]` (JSON, so
//! that no pair of names can be mistaken for another) and whose values are the tools'
//! [`PinEntry`] as JSON; a counter, `portcullis:pins:generation`, that every write moves
//! on; and an epoch, `portcullis:pins:epoch`, a random value set by the first write, so
//! that a Redis emptied and written again is not taken for the one the counter counted.
//! An instance reads the whole hash at start, then keeps its copy in step: every
//! [`RELOAD_CHECK`] it reads the counter and the epoch (a [`Stamp`]), and the hash again
//! when another writer moved them. Requests only ever read the copy in memory. An
//! instance that finds the epoch changed writes its copy back where Redis has nothing:
//! pins outlive a Redis restarted without persistence while one instance holds them.
//!
//! Writes are compare-and-set (a Lua script): an entry is replaced only while it is what
//! this instance last read. When another instance (or the CLI) wrote it first, the write
//! is refused, the hash is read again, and what this instance saw is judged again against
//! it: two instances that see one tool at once pin one definition between them, and the
//! other is held as a drift, as on a single instance. Changes made while Redis is
//! unreachable wait and are written when it is back; meanwhile each instance goes on
//! with its own copy (a tool it holds stays held).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use super::{Observed, Pin, PinEntry, PinFile, PinPolicy, PinStore, RELOAD_CHECK};

/// Replaces one entry of the hash if it is still what the writer read, and moves the
/// counter on. KEYS: the hash, the counter, the epoch. ARGV: the field, the value read
/// (`""`: none), the new value, an epoch for a Redis that has none. Answers the counter
/// after the write and the epoch, or `{0, ""}` when the entry had changed.
const REPLACE: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current == false then current = '' end
if current ~= ARGV[2] then return {0, ''} end
redis.call('SET', KEYS[3], ARGV[4], 'NX')
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {redis.call('INCR', KEYS[2]), redis.call('GET', KEYS[3])}
";

/// Where Redis's pins stand: they changed if this did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    /// Set by the first write to an empty Redis (empty: none yet).
    pub epoch: String,
    /// Moved on by every write.
    pub count: i64,
}

impl Stamp {
    fn of(epoch: Option<String>, count: Option<i64>) -> Self {
        Self {
            epoch: epoch.unwrap_or_default(),
            count: count.unwrap_or(0),
        }
    }
}

/// How often a failing Redis is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A route and one of its tools.
type Key = (String, String);

/// The pins in Redis.
#[derive(Clone)]
pub struct SharedPins {
    connection: ConnectionManager,
    replace: redis::Script,
    timeout: Duration,
    hash: String,
    counter: String,
    epoch: String,
}

impl std::fmt::Debug for SharedPins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPins")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Every pin in Redis at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// Where the pins stood when they were read.
    pub stamp: Stamp,
    pub pins: PinFile,
    /// Each entry as Redis holds it (what a compare-and-set compares with).
    pub raw: HashMap<Key, String>,
    /// Entries that are not pins (written by something else): left alone.
    pub unreadable: usize,
}

impl SharedPins {
    /// A lazy connection to `url`; every call has `timeout` as its deadline.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            connection: crate::cluster::connect(url, timeout)?,
            replace: redis::Script::new(REPLACE),
            timeout,
            hash: format!("{}pins", crate::cluster::PREFIX),
            counter: format!("{}pins:generation", crate::cluster::PREFIX),
            epoch: format!("{}pins:epoch", crate::cluster::PREFIX),
        })
    }

    fn field(route: &str, tool: &str) -> String {
        serde_json::Value::from(vec![route, tool]).to_string()
    }

    /// Reads every pin (and the counter with them, in one transaction).
    pub async fn load(&self) -> Result<Snapshot, String> {
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .get(&self.epoch)
            .get(&self.counter)
            .hgetall(&self.hash);
        let (epoch, count, entries): (Option<String>, Option<i64>, HashMap<String, String>) =
            crate::cluster::within(self.timeout, pipe.query_async(&mut connection)).await?;
        let mut snapshot = Snapshot {
            stamp: Stamp::of(epoch, count),
            pins: PinFile {
                version: 1,
                routes: BTreeMap::new(),
            },
            raw: HashMap::with_capacity(entries.len()),
            unreadable: 0,
        };
        for (field, value) in entries {
            let key = serde_json::from_str::<Key>(&field);
            let entry = serde_json::from_str::<PinEntry>(&value);
            let (Ok((route, tool)), Ok(entry)) = (key, entry) else {
                snapshot.unreadable += 1;
                continue;
            };
            snapshot
                .pins
                .routes
                .entry(route.clone())
                .or_default()
                .insert(tool.clone(), entry);
            snapshot.raw.insert((route, tool), value);
        }
        Ok(snapshot)
    }

    /// Where the pins stand: the stamp moved on if anyone wrote since it was last read.
    pub async fn stamp(&self) -> Result<Stamp, String> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("MGET");
        command.arg(&self.epoch).arg(&self.counter);
        let (epoch, count): (Option<String>, Option<i64>) =
            crate::cluster::within(self.timeout, command.query_async(&mut connection)).await?;
        Ok(Stamp::of(epoch, count))
    }

    /// Writes `entry` as the pins of `tool` of `route` if Redis still holds `expected`
    /// (`None`: nothing) for them. Answers where the pins stand after the write, or
    /// `None` when someone else wrote them first.
    pub async fn replace(
        &self,
        route: &str,
        tool: &str,
        expected: Option<&str>,
        entry: &str,
    ) -> Result<Option<Stamp>, String> {
        let mut invocation = self.replace.key(&self.hash);
        invocation
            .key(&self.counter)
            .key(&self.epoch)
            .arg(Self::field(route, tool))
            .arg(expected.unwrap_or(""))
            .arg(entry)
            .arg(new_epoch());
        let mut connection = self.connection.clone();
        let (count, epoch): (i64, String) =
            crate::cluster::within(self.timeout, invocation.invoke_async(&mut connection)).await?;
        Ok((count > 0).then_some(Stamp { epoch, count }))
    }
}

impl SharedPins {
    /// Approves the held definitions of `chosen` (route, tool), each written with
    /// compare-and-set against the entry as `reviewed` holds it (as read when the choice
    /// was made), else as Redis holds it now; the ones approved. Refused (with those
    /// before it approved) when another writer changed a tool's pins meanwhile: what was
    /// reviewed is not what would be approved.
    pub async fn approve(
        &self,
        chosen: &[(String, String)],
        reviewed: Option<&HashMap<Key, String>>,
    ) -> Result<Vec<Key>, String> {
        let snapshot = self
            .load()
            .await
            .map_err(|e| format!("cannot read the pins from Redis: {e}"))?;
        let mut approved = Vec::new();
        for (route, tool) in chosen {
            let entry = snapshot.pins.routes.get(route).and_then(|t| t.get(tool));
            let Some(mut entry) = entry.filter(|e| e.held()).cloned() else {
                continue;
            };
            entry.approve();
            let text = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
            let key = (route.clone(), tool.clone());
            let expected = reviewed.unwrap_or(&snapshot.raw).get(&key);
            let written = self
                .replace(route, tool, expected.map(String::as_str), &text)
                .await
                .map_err(|e| format!("cannot write the pins to Redis: {e}"))?;
            if written.is_none() {
                return Err(format!(
                    "the pins of tool `{}` on route `{route}` changed in Redis meanwhile; \
                     look again (pins diff) and approve again",
                    tool.escape_default()
                ));
            }
            approved.push((route.clone(), tool.clone()));
        }
        Ok(approved)
    }
}

/// A random epoch (128 bits, hex), new for every write: whoever writes first to an empty
/// Redis sets one nobody has seen.
fn new_epoch() -> String {
    let mut bytes = [0u8; 16];
    // The system's randomness failing leaves a fixed epoch: a restarted Redis then goes
    // unnoticed only if its counter comes back to the same count.
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes);
    crate::hex::encode(&bytes)
}

/// A change this instance made to its copy, on its way to Redis.
#[derive(Debug, Clone)]
pub(super) enum Change {
    /// A definition the upstream listed, as judged by [`PinEntry::observe`]; judged again
    /// if Redis turns out to hold something else. `shadowed`: another tool of its name was
    /// listed beside it. `alerted`: it raised an alert already.
    Observed {
        pin: Pin,
        policy: PinPolicy,
        shadowed: bool,
        alerted: bool,
    },
    /// The operator's pin file: written where Redis has nothing for the tool.
    Seed(PinEntry),
}

/// One change of one tool's pins.
#[derive(Debug)]
pub(super) struct Intent {
    pub route: String,
    pub tool: String,
    pub change: Change,
}

/// The in-memory pins' tie to Redis.
#[derive(Debug)]
pub(super) struct Link {
    redis: SharedPins,
    state: Mutex<LinkState>,
    /// Rung when a change is queued: it is written at once, not at the next tick.
    wake: tokio::sync::Notify,
    /// Whether the pins were read from Redis at least once.
    loaded: tokio::sync::watch::Sender<bool>,
    /// Held by whoever talks to Redis: a read of everything must not overtake a write on
    /// its way (the copy would miss it).
    turn: tokio::sync::Mutex<()>,
    /// How long a request waits for the copy to catch up ([`Link::catch_up`]).
    patience: Duration,
}

#[derive(Debug, Default)]
struct LinkState {
    /// Each entry as last read from or written to Redis.
    remote: HashMap<Key, String>,
    /// Changes not written yet (the latest per tool).
    outbox: BTreeMap<Key, Change>,
    /// Where Redis stood as of the copy in memory.
    seen: Option<Stamp>,
    /// A write was refused: read everything again.
    stale: bool,
    warned: Option<Instant>,
}

impl Link {
    /// `patience`: how long a request waits for the copy to catch up.
    pub fn new(redis: SharedPins, patience: Duration) -> Self {
        Self {
            redis,
            state: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            loaded: tokio::sync::watch::Sender::new(false),
            turn: tokio::sync::Mutex::new(()),
            patience,
        }
    }

    /// Approves `chosen` in Redis ([`SharedPins::approve`]), then brings the copy in step
    /// so that the approval holds here from the next request on (the other instances
    /// follow within their tick).
    pub async fn approve(&self, store: &PinStore, chosen: &[Key]) -> Result<Vec<Key>, String> {
        let approved = {
            let _turn = self.turn.lock().await;
            // What this instance saw and has not written yet is in Redis before the
            // approval reads it there.
            self.flush(store).await?;
            self.redis.approve(chosen, None).await?
        };
        self.catch_up(store).await;
        Ok(approved)
    }

    /// Brings the copy in step with Redis now, if another writer moved it on, waiting at
    /// most the link's patience (then the copy stays as it is, at most a tick behind).
    /// For requests whose answer is judged against the pins: a list is never taken for a
    /// first sight when another instance pinned the tool already.
    pub async fn catch_up(&self, store: &PinStore) {
        let caught_up = tokio::time::timeout(self.patience, async {
            // Cancel-safe: the copy is only changed once Redis answered everything.
            let _turn = self.turn.lock().await;
            let stamp = self.redis.stamp().await?;
            if self.state().seen.as_ref() != Some(&stamp) {
                self.reload(store).await?;
            }
            Ok::<(), String>(())
        })
        .await;
        match caught_up {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.warn(&e),
            Err(_) => self.warn(&format!("no answer within {:?}", self.patience)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a change of the copy in memory (made under its lock) for Redis.
    pub fn queue(&self, intent: Intent) {
        self.state()
            .outbox
            .insert((intent.route, intent.tool), intent.change);
        self.wake.notify_one();
    }

    /// Queues an entry of the operator's pin file.
    pub fn seed(&self, route: &str, tool: &str, entry: PinEntry) {
        self.state()
            .outbox
            .insert((route.to_owned(), tool.to_owned()), Change::Seed(entry));
    }

    pub async fn loaded(&self, deadline: Duration) -> bool {
        let mut loaded = self.loaded.subscribe();
        tokio::time::timeout(deadline, loaded.wait_for(|loaded| *loaded))
            .await
            .is_ok_and(|answer| answer.is_ok())
    }

    /// One round: read everything the first time, write what is queued, and read again
    /// when someone else wrote.
    async fn round(&self, store: &PinStore) -> Result<(), String> {
        if !*self.loaded.borrow() {
            self.reload(store).await?;
        }
        self.flush(store).await?;
        let stamp = self.redis.stamp().await?;
        let stale = {
            let state = self.state();
            state.stale || state.seen.as_ref() != Some(&stamp)
        };
        if stale {
            self.reload(store).await?;
        }
        Ok(())
    }

    /// Writes the queued changes: each tool's entry as the copy in memory has it now.
    async fn flush(&self, store: &PinStore) -> Result<(), String> {
        let queued = std::mem::take(&mut self.state().outbox);
        let mut queued = queued.into_iter();
        while let Some((key, change)) = queued.next() {
            let entry = store
                .read()
                .routes
                .get(&key.0)
                .and_then(|tools| tools.get(&key.1))
                .map(serde_json::to_string);
            let Some(Ok(entry)) = entry else {
                continue;
            };
            let expected = self.state().remote.get(&key).cloned();
            if expected.as_deref() == Some(entry.as_str()) {
                continue;
            }
            match self
                .redis
                .replace(&key.0, &key.1, expected.as_deref(), &entry)
                .await
            {
                Ok(Some(stamp)) => {
                    let mut state = self.state();
                    state.remote.insert(key, entry);
                    // Nobody else wrote in between: the copy is as fresh as Redis.
                    let before = Stamp {
                        count: stamp.count - 1,
                        ..stamp.clone()
                    };
                    if state.seen.as_ref() == Some(&before) {
                        state.seen = Some(stamp);
                    }
                }
                Ok(None) => {
                    tracing::info!(route = %key.0, tool = %key.1.escape_default(), "Another instance changed these tool pins first; reading them again");
                    let mut state = self.state();
                    state.stale = true;
                    state.outbox.entry(key).or_insert(change);
                }
                Err(e) => {
                    let mut state = self.state();
                    state.outbox.entry(key).or_insert(change);
                    for (key, change) in queued {
                        state.outbox.entry(key).or_insert(change);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Reads every pin from Redis into the copy in memory, then judges the changes still
    /// queued against it again.
    async fn reload(&self, store: &PinStore) -> Result<(), String> {
        let snapshot = self.redis.load().await?;
        if snapshot.unreadable > 0 {
            tracing::warn!(
                entries = snapshot.unreadable,
                "Some entries of the tool pins in Redis are not pins; ignored"
            );
        }
        let mut alerts = Vec::new();
        {
            let mut pins = store.write();
            let mut state = self.state();
            if state
                .seen
                .as_ref()
                .is_some_and(|seen| !seen.epoch.is_empty() && seen.epoch != snapshot.stamp.epoch)
            {
                // Redis was emptied (restarted without persistence): the pins are not lost
                // while an instance holds them.
                tracing::warn!(
                    "Redis lost the tool pins (restarted or emptied); writing this instance's copy back where it has none"
                );
                for (route, tools) in &pins.routes {
                    for (tool, entry) in tools {
                        state
                            .outbox
                            .entry((route.clone(), tool.clone()))
                            .or_insert_with(|| Change::Seed(entry.clone()));
                    }
                }
            }
            let mut file = snapshot.pins;
            for (key, change) in std::mem::take(&mut state.outbox) {
                let tools = file.routes.entry(key.0.clone()).or_default();
                let keep = match &change {
                    Change::Seed(entry) => {
                        if tools.contains_key(&key.1) {
                            false
                        } else {
                            tools.insert(key.1.clone(), entry.clone());
                            true
                        }
                    }
                    Change::Observed {
                        pin,
                        policy,
                        shadowed,
                        alerted,
                    } => {
                        let entry = tools.entry(key.1.clone()).or_default();
                        let (observed, changed) = entry.observe(pin.clone(), *policy, *shadowed);
                        if !alerted && matches!(observed, Observed::Drifted | Observed::Flagged(_))
                        {
                            alerts.push((key.clone(), observed, *policy));
                        }
                        changed
                    }
                };
                if keep {
                    state.outbox.insert(key, change);
                }
            }
            file.routes.retain(|_, tools| !tools.is_empty());
            if *pins != file {
                *pins = file;
                store
                    .generation
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            state.remote = snapshot.raw;
            state.seen = Some(snapshot.stamp);
            state.stale = false;
            if !state.outbox.is_empty() {
                self.wake.notify_one();
            }
        }
        self.loaded.send_replace(true);
        if let Some(audit) = store.audit.get() {
            for ((route, tool), observed, policy) in alerts {
                crate::guard::alert(audit.as_ref(), &route, &tool, &observed, policy);
            }
        }
        Ok(())
    }

    fn warn(&self, error: &str) {
        let mut state = self.state();
        if state.warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        state.warned = Some(Instant::now());
        tracing::warn!(error = %error, queued = state.outbox.len(), "Cannot reach Redis for the tool pins; this instance goes on with its own copy");
    }
}

/// Keeps `store`'s copy in step with Redis until the store is dropped.
pub(super) async fn keep_in_step(store: Weak<PinStore>) {
    loop {
        let Some(strong) = store.upgrade() else {
            return;
        };
        let Some(link) = strong.link.clone() else {
            return;
        };
        let done = {
            let _turn = link.turn.lock().await;
            link.round(&strong).await
        };
        if let Err(e) = done {
            link.warn(&e);
        }
        drop(strong);
        tokio::select! {
            () = link.wake.notified() => {}
            () = tokio::time::sleep(RELOAD_CHECK) => {}
        }
    }
}
