//! The audit trail (DESIGN.md stage 2 and `audit/`). So far: the hash chain that makes it
//! tamper-evident and its verifier (`portcullis audit verify`), and what a record keeps of
//! a call's arguments; the events, sinks and the security monitor come with it.

pub mod arguments;
pub mod chain;
