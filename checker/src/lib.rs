//! A history checker for Minion, in the manner of Jepsen's: clients record every operation they
//! invoke with its invocation and completion time and its outcome (ok, failed, or unknown), and
//! after the run [`check`] compares that history with the final ledger.
//!
//! - [`exactly_once`]: every acknowledged submit is in the ledger exactly once per idempotency key.
//! - [`leases`]: the fencing of leases: no two leases for one attempt, tokens rise with attempts
//!   and with real time, no operation under an earlier token succeeds after a later lease was
//!   handed out, no lease of a finished task, every acknowledged lease is in the ledger.
//! - [`linear`] and [`task_model`]: the task state every client saw is linearizable: there is one
//!   order of the operations on each task, consistent with real time, in which a sequential task
//!   state machine gives every observed answer (a Wing–Gong search with memoised states, as
//!   Porcupine does; unknown outcomes may take effect at any point after their invocation, or
//!   never).
//!
//! Linearizability is checked per task (it composes over independent objects); a claim that
//! leased several tasks is checked as one lease on each.

pub mod exactly_once;
pub mod history;
pub mod leases;
pub mod linear;
pub mod report;
pub mod task_model;

pub use history::{Call, FinalTask, Granted, Ledger, Op, Outcome, Recorder, Ret, View};
pub use report::{check, Anomaly, Kind, Report};
