//! The library's error type. The binary turns [`Error::is_bad_input`] errors into exit status 2.

use std::path::PathBuf;

/// Everything that can go wrong in skillit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input the user can fix: a flag, a config field, a file of the wrong shape. `origin` names where
    /// it came from (`command line` or a file path), `field` the flag or field, `message` what is
    /// allowed.
    #[error("{origin}: {field}: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
    /// A task could not produce what was asked (e.g. more distinct examples than exist).
    #[error(transparent)]
    Task(#[from] skillit_synthetic::Error),
    /// A run's loss became NaN or infinite; the run is recorded as failed.
    #[error("{run}: the run diverged: {reason}")]
    Diverged { run: String, reason: String },
    /// A check the user asked for did not hold (a rerun that does not reproduce its run).
    #[error("{origin}: {message}")]
    Check { origin: String, message: String },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A bad flag (`--k`, ...) on the command line.
    pub fn flag(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            origin: "command line".to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Whether the error is the user's input (exit status 2) rather than the environment's (1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Invalid { .. } | Error::Task(_) => true,
            Error::Io { .. } | Error::Diverged { .. } | Error::Check { .. } => false,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
