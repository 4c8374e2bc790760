//! What a call can fail with: the API's refusal (a status and a code from its fixed list), or a
//! transport failure, or an answer that is not what the API promises.

use crate::wire::ErrorBody;

/// The API's error codes (`{"error": {"code"}}`); codes a newer server adds are `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    InvalidRequest,
    InvalidJson,
    Unauthorized,
    Forbidden,
    NotFound,
    /// The lease token is not the task's current lease (expired, released, or another's).
    StaleLease,
    /// The task is not in a state that allows the call (finished, cancelled).
    WrongState,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    /// No leader right now (an election is under way).
    NotLeader,
    CommitTimeout,
    Unavailable,
    ShuttingDown,
    TooManyStreams,
    TooManyConnections,
    /// The change feed no longer holds the position asked for.
    Compacted,
    Storage,
    Internal,
    Other(String),
}

impl Code {
    /// The code as the API writes it.
    pub fn as_str(&self) -> &str {
        match self {
            Code::InvalidRequest => "invalid_request",
            Code::InvalidJson => "invalid_json",
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::StaleLease => "stale_lease",
            Code::WrongState => "wrong_state",
            Code::Conflict => "conflict",
            Code::PayloadTooLarge => "payload_too_large",
            Code::RateLimited => "rate_limited",
            Code::NotLeader => "not_leader",
            Code::CommitTimeout => "commit_timeout",
            Code::Unavailable => "unavailable",
            Code::ShuttingDown => "shutting_down",
            Code::TooManyStreams => "too_many_streams",
            Code::TooManyConnections => "too_many_connections",
            Code::Compacted => "compacted",
            Code::Storage => "storage",
            Code::Internal => "internal",
            Code::Other(s) => s,
        }
    }

    pub fn parse(code: &str) -> Code {
        match code {
            "invalid_request" => Code::InvalidRequest,
            "invalid_json" => Code::InvalidJson,
            "unauthorized" => Code::Unauthorized,
            "forbidden" => Code::Forbidden,
            "not_found" => Code::NotFound,
            "stale_lease" => Code::StaleLease,
            "wrong_state" => Code::WrongState,
            "conflict" => Code::Conflict,
            "payload_too_large" => Code::PayloadTooLarge,
            "rate_limited" => Code::RateLimited,
            "not_leader" => Code::NotLeader,
            "commit_timeout" => Code::CommitTimeout,
            "unavailable" => Code::Unavailable,
            "shutting_down" => Code::ShuttingDown,
            "too_many_streams" => Code::TooManyStreams,
            "too_many_connections" => Code::TooManyConnections,
            "compacted" => Code::Compacted,
            "storage" => Code::Storage,
            "internal" => Code::Internal,
            other => Code::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the call.
    #[error("server answered {status}: {code}: {message}")]
    Api { status: u16, code: Code, message: String },
    /// No answer: the nodes could not be reached, or the connection failed.
    #[error("contacting {server}: {message}")]
    Transport { server: String, message: String },
    /// An answer that does not decode as the API's.
    #[error("the answer to {what} does not decode: {message}")]
    Decode { what: String, message: String },
    /// A request the client could not build (a bad URL list, a token a header cannot carry).
    #[error("{0}")]
    Config(String),
}

impl Error {
    pub(crate) fn api(status: u16, body: Option<ErrorBody>, text: &str) -> Error {
        match body {
            Some(b) => Error::Api { status, code: Code::parse(&b.code), message: b.message },
            None => Error::Api { status, code: Code::Other(String::new()), message: text.chars().take(500).collect() },
        }
    }

    /// The API's code, when the server refused the call.
    pub fn code(&self) -> Option<&Code> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the lease is gone: the agent must stop working on the task.
    pub fn lease_lost(&self) -> bool {
        matches!(self.code(), Some(Code::StaleLease | Code::WrongState | Code::NotFound))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
