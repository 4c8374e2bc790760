//! Minion adapters: ingest from Kafka and Redis Streams, export to PostgreSQL. They talk to a server over its HTTP API like any client; none touches storage.

pub mod ingest;
pub mod postgres;
