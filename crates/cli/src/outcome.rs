//! How a command ends: its exit code, the same for every command so that scripts can branch on it, and the one
//! message on stderr that says why.

use std::future::Future;
use std::process::ExitCode;

/// Exit codes a script can branch on.
pub mod exit {
    pub const ERROR: u8 = 1;
    /// Refused: an invalid job, a reply queue not the deployment's, an id taken by another request, an
    /// instruction the executor refused.
    pub const REJECTED: u8 = 3;
    pub const FAILED: u8 = 4;
    /// Not done in the time given (a job still running, an instruction not applied yet); it goes on.
    pub const TIMED_OUT: u8 = 5;
    pub const CANCELLED: u8 = 6;
}

/// An error that ends the command with its exit code.
#[derive(Debug)]
pub struct Failure(pub u8, pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(exit::ERROR, e.to_string())
    }
}

/// Runs a command's future to its exit code on a single-threaded runtime.
pub fn run(command: impl Future<Output = Result<u8, Failure>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gameforge: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(command) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, message)) => {
            eprintln!("gameforge: {message}");
            ExitCode::from(code)
        }
    }
}
