//! Protocol knowledge: MCP header names, the JSON-RPC envelope, the protocol eras.
//!
//! Nothing here does I/O; the stages of the request path (see `stack.rs`) call into it.

pub mod answer;
pub mod call;
pub mod headers;
pub mod jsonrpc;
pub mod limits;
pub mod list;
pub mod message;
pub mod methods;
pub mod session;
pub mod sse;
pub mod tasks;
