//! The fleet's records in AWS, shared by the executor and the operators' CLI: the ledger table (the engine's
//! [`LedgerStore`](gameforge_engine::ports::LedgerStore), which `gameforge fleet` reads) and the FIFO control queue
//! (which the signal path and `gameforge fleet` send to).

pub mod control;
pub mod ledger;

pub use control::ControlQueue;
pub use ledger::DynamoLedger;
