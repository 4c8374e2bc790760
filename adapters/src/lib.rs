//! Minion adapters. They talk to a server over its HTTP API like any client; none touches storage.

pub mod postgres;
