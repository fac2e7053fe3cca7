//! Every integration and interop test, in one test binary: one link instead of one per
//! file, and one copy of the shared kit ([`support`]) on disk. Each module holds the tests
//! of one concern; `cargo test --test it <module>::` runs one of them. `tests/otlp.rs`
//! alone is a binary of its own: it installs the process-wide log subscriber.
#![cfg(test)]

mod support;

mod admin;
mod audit;
mod auth;
mod auth_server;
mod cli;
mod clients;
mod config;
mod conformance;
mod deploy;
mod docs;
mod edge;
mod envelope_props;
mod failures;
mod guard;
mod interop_policy;
mod interop_python;
mod layers;
mod legacy;
mod listener;
mod mtls;
mod policy;
mod proxy;
mod ratelimit;
mod reload;
mod sessions;
mod stdio;
mod streaming;
mod tasks;
mod tool_search;
mod upstream_pool;
mod upstream_tls;
mod virtual_servers;
