//! The MCP parse's shape limits of a POSTed JSON body — how deep it nests,
//! how long its strings are, how many elements its arrays (and members its objects) hold.
//!
//! The parse (`mcp::message`) spends a [`Budget`] as it reads, so a hostile body (10 000
//! nested arrays, a million-element array, a long string) is refused with a precise
//! reason as soon as it breaks a limit, before more of it is read or kept. The depth
//! limit stays below serde_json's own recursion limit (128), so it is always the one
//! that speaks.

use std::cell::Cell;
use std::fmt;

use serde::de;

/// The limits of one route (`[routes.guard]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Arrays and objects nested deeper than this are refused (the body itself is 1).
    pub max_depth: usize,
    /// A string (key or value) longer than this many bytes (as read: escapes decoded) is
    /// refused.
    pub max_string: usize,
    /// An array with more elements, or an object with more members, is refused.
    pub max_elements: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_string: 1024 * 1024,
            max_elements: 10_000,
        }
    }
}

/// The first limit a body broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    Depth(usize),
    String(usize),
    Elements(usize),
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Depth(limit) => write!(f, "JSON nested deeper than {limit} levels"),
            Self::String(limit) => write!(f, "a JSON string longer than {limit} bytes"),
            Self::Elements(limit) => {
                write!(f, "a JSON array or object with more than {limit} elements")
            }
        }
    }
}

/// The limits as one parse spends them, and which one broke (the parser's error says it
/// in text; this says which).
#[derive(Debug)]
pub struct Budget {
    limits: InputLimits,
    broken: Cell<Option<LimitExceeded>>,
}

impl Budget {
    pub fn new(limits: InputLimits) -> Self {
        Self {
            limits,
            broken: Cell::new(None),
        }
    }

    pub fn max_depth(&self) -> usize {
        self.limits.max_depth
    }

    /// The limit the parse broke, if it broke one.
    pub fn broken(&self) -> Option<LimitExceeded> {
        self.broken.get()
    }

    fn exceeded<E: de::Error>(&self, limit: LimitExceeded) -> E {
        self.broken.set(Some(limit));
        E::custom(limit)
    }

    /// An array or object at `depth` (the body is 1).
    pub fn container<E: de::Error>(&self, depth: usize) -> Result<(), E> {
        if depth > self.limits.max_depth {
            return Err(self.exceeded(LimitExceeded::Depth(self.limits.max_depth)));
        }
        Ok(())
    }

    /// A string (key or value) of `length` bytes.
    pub fn string<E: de::Error>(&self, length: usize) -> Result<(), E> {
        if length > self.limits.max_string {
            return Err(self.exceeded(LimitExceeded::String(self.limits.max_string)));
        }
        Ok(())
    }

    /// The `count`th element of an array, or member of an object.
    pub fn elements<E: de::Error>(&self, count: usize) -> Result<(), E> {
        if count > self.limits.max_elements {
            return Err(self.exceeded(LimitExceeded::Elements(self.limits.max_elements)));
        }
        Ok(())
    }
}
