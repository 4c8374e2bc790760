//! Minion's v1 HTTP API for Rust: the wire types the server itself reads and writes
//! ([`wire`]), and a typed async [`Client`] on them — several nodes with failover, bearer tokens,
//! a private CA, and retries only where a retry cannot do a write twice.

pub mod auth;
pub mod client;
pub mod error;
pub mod events;
pub mod servers;
mod submit_body;
pub mod wire;

pub use auth::ClientAuth;
pub use client::Client;
pub use error::{Code, Error, Result};
pub use events::{Event, EventStream};
pub use servers::Servers;
