//! Authentication: stage 7 of the request path (see `stack.rs`).
//!
//! A request that reaches this stage carries a JWT bearer token, an API key or an mTLS
//! client certificate; whichever proves who the caller is yields a [`Principal`] that
//! later stages (per-user rate limit, session binding, authorization, audit) read from
//! the request extensions. A request that proves nothing is answered with 401 and a
//! `WWW-Authenticate` challenge.
//!
//! Groundwork only so far: nothing here is wired into the stack or the config yet.

pub mod apikey;
pub mod cache;
pub mod challenge;
pub mod jwks;
pub mod jwt;
pub mod metadata;
pub mod principal;

pub use apikey::{ApiKeyEntry, ApiKeyError, ApiKeyStore, KeyHash, hash_key};
pub use principal::{AuthMethod, Principal};
