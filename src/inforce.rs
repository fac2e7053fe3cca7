//! A list of things an operator put in force until an expiry or for good — revocations,
//! kill switches, blocks — behind one "anything in force?" flag, so that a request pays
//! one atomic load while the list is empty. Each concern keeps its own list of its own
//! kind and decides what an entry covers; this is only the list.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockWriteGuard};
use std::time::SystemTime;

/// One entry: its id, and when it lifts itself (`None`: never).
pub trait Entry: Clone {
    fn id(&self) -> u64;
    fn until(&self) -> Option<SystemTime>;

    fn in_force(&self, now: SystemTime) -> bool {
        self.until().is_none_or(|until| now < until)
    }
}

/// The entries in force.
#[derive(Debug)]
pub struct InForce<T> {
    /// Whether there is any: the fast path.
    any: AtomicBool,
    list: RwLock<Vec<T>>,
    next_id: AtomicU64,
}

impl<T> Default for InForce<T> {
    fn default() -> Self {
        Self {
            any: AtomicBool::new(false),
            list: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<T: Entry> InForce<T> {
    fn write(&self) -> RwLockWriteGuard<'_, Vec<T>> {
        self.list
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether any entry is in the list (expired ones included until the next [`list`]).
    ///
    /// [`list`]: InForce::list
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// The first entry in force for which `found` says something.
    pub fn find_map<R>(&self, found: impl Fn(&T) -> Option<R>) -> Option<R> {
        if !self.any() {
            return None;
        }
        let now = SystemTime::now();
        self.list
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|entry| entry.in_force(now))
            .find_map(found)
    }

    /// An id for a new entry, of this instance's.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds `entry` (replacing one of its id); ids given elsewhere are not given again.
    pub fn insert(&self, entry: T) {
        self.next_id.fetch_max(entry.id(), Ordering::Relaxed);
        let mut list = self.write();
        list.retain(|e| e.id() != entry.id());
        list.push(entry);
        self.any.store(true, Ordering::Release);
    }

    /// Replaces every entry with `entries` (the shared store's, as read).
    pub fn replace_all(&self, entries: Vec<T>) {
        if let Some(max) = entries.iter().map(Entry::id).max() {
            self.next_id.fetch_max(max, Ordering::Relaxed);
        }
        let mut list = self.write();
        *list = entries;
        self.any.store(!list.is_empty(), Ordering::Release);
    }

    /// Removes entry `id`; the entry, if it was in force.
    pub fn remove(&self, id: u64) -> Option<T> {
        let mut list = self.write();
        let position = list.iter().position(|e| e.id() == id)?;
        let entry = list.remove(position);
        self.any.store(!list.is_empty(), Ordering::Release);
        Some(entry).filter(|e| e.in_force(SystemTime::now()))
    }

    /// Every entry in force (the expired ones are forgotten).
    pub fn list(&self) -> Vec<T> {
        let now = SystemTime::now();
        let mut list = self.write();
        list.retain(|e| e.in_force(now));
        self.any.store(!list.is_empty(), Ordering::Release);
        list.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Note(u64, Option<SystemTime>);

    impl Entry for Note {
        fn id(&self) -> u64 {
            self.0
        }
        fn until(&self) -> Option<SystemTime> {
            self.1
        }
    }

    #[test]
    fn entries_are_found_while_in_force_and_the_flag_follows_the_list() {
        let notes = InForce::default();
        assert!(!notes.any());
        let id = notes.next_id();
        notes.insert(Note(id, None));
        notes.insert(Note(7, Some(SystemTime::now() - Duration::from_secs(1))));
        assert_eq!(
            notes.find_map(|n| Some(n.0)),
            Some(id),
            "the expired one is passed over"
        );
        assert_eq!(
            notes.next_id(),
            8,
            "ids given elsewhere are not given again"
        );
        assert_eq!(
            notes.list(),
            [Note(id, None)],
            "the expired one is forgotten"
        );
        assert_eq!(notes.remove(id), Some(Note(id, None)));
        assert!(notes.remove(id).is_none(), "removed once");
        assert!(!notes.any(), "the fast path is back");
        notes.replace_all(vec![Note(3, None)]);
        assert!(notes.any());
        notes.replace_all(Vec::new());
        assert!(!notes.any());
    }
}
