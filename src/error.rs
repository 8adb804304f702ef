//! Typed errors of the library. Only `main` turns them into messages and exit codes.
//!
//! [`ConfigError`] is bad input (a scenario, a flag, an output path): exit code 2. Its `Display`
//! is one line naming the file, the line:column when the YAML parser knows it, the field path
//! (`workload[0].arrival.rate_per_s`), what is wrong, and how to fix it.
//! [`RunError`] is a run that hit a limit or broke an invariant: it carries the seed and a
//! copy-pasteable command that reproduces it.

use std::fmt;
use std::path::PathBuf;

/// Where in a scenario something went wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// 1-based line, when known.
    pub line: usize,
    /// 1-based column, when known.
    pub column: usize,
}

/// Bad input: an invalid scenario, flag or path.
#[derive(Debug, thiserror::Error, PartialEq)]
pub struct ConfigError {
    /// The file the input came from (`<command line>` for flags).
    pub file: String,
    /// Line and column in the file, if the parser knows them.
    pub location: Option<Location>,
    /// Dotted field path such as `workload[0].arrival.rate_per_s`; empty for whole-file errors.
    pub path: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl ConfigError {
    /// An error about the field at `path` in `file`.
    pub fn field(file: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            location: None,
            path: path.into(),
            message: message.into(),
        }
    }

    /// An error about a command-line flag.
    pub fn flag(flag: &str, message: impl Into<String>) -> Self {
        ConfigError::field("<command line>", flag, message)
    }

    /// An error about a whole file (missing, unreadable, not YAML).
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        ConfigError::field(file, "", message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(loc) = &self.location {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
            // "field = value: why" reads better than "field: = value: why".
            if self.message.starts_with("= ") {
                return write!(f, " {}", self.message);
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// What stopped a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFailure {
    /// More events than `limits.max_events`: a livelock or a far too long run.
    EventLimit(u64),
    /// More requests in flight than `limits.max_in_flight`: an overload that would exhaust memory.
    InFlightLimit(u64),
    /// An end-of-run invariant check failed.
    Invariant(String),
}

impl fmt::Display for RunFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunFailure::EventLimit(n) => write!(
                f,
                "event limit of {n} reached (raise limits.max_events or shorten the horizon)"
            ),
            RunFailure::InFlightLimit(n) => write!(
                f,
                "more than {n} requests in flight: the cluster is overloaded without bound \
                 (add a timeout_s or queue_capacity, lower the load, or raise limits.max_in_flight)"
            ),
            RunFailure::Invariant(msg) => write!(f, "invariant violated: {msg}"),
        }
    }
}

/// A run that could not complete; carries what is needed to reproduce it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{scenario} / {policy} / replication {replication} (run seed {run_seed:#x}): {failure}; reproduce: {repro}")]
pub struct RunError {
    /// Scenario name.
    pub scenario: String,
    /// Policy label.
    pub policy: String,
    /// Replication index.
    pub replication: u32,
    /// The run seed derived from the scenario seed and the replication.
    pub run_seed: u64,
    /// What went wrong.
    pub failure: RunFailure,
    /// A command line that reruns exactly this run.
    pub repro: String,
}

/// Errors writing results.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Creating the output directory or writing a file failed.
    #[error("{path}: {source} (check that the directory is writable, or pass --out DIR)")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
