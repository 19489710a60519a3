//! One error type for the whole tool. The kind decides the exit code; the message is one
//! sentence a person can act on, and never holds a password.

use std::fmt;

use tokio_postgres::error::SqlState;

/// What went wrong, in the terms the exit code reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad flags or connection strings: nothing was attempted.
    Usage,
    /// A check before the migration refused to go on: nothing was changed.
    Preflight,
    /// A server could not be reached or dropped the connection.
    Connection,
    /// Roles, schema or post-data DDL failed on the target.
    Schema,
    /// Copying data failed.
    Copy,
    /// The data arrived but does not match the source.
    Verify,
    /// Stopped by the operator.
    Interrupted,
    /// Anything else (a bug, an I/O error on a local file).
    Internal,
}

impl ErrorKind {
    /// The process exit code for this kind (documented in README.md).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Preflight => 3,
            ErrorKind::Connection | ErrorKind::Schema | ErrorKind::Copy => 4,
            ErrorKind::Verify => 5,
            ErrorKind::Interrupted => 130,
        }
    }
}

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// Whether trying again may succeed (a dropped connection, a server restart, a
    /// serialization failure), as opposed to a refusal that will recur.
    retryable: bool,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            retryable: false,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Marks the error as worth retrying (or not).
    pub fn retryable(self, retryable: bool) -> Error {
        Error { retryable, ..self }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with where it happened ("copying public.t: ...").
    pub fn context(self, what: impl fmt::Display) -> Error {
        Error {
            message: format!("{what}: {}", self.message),
            ..self
        }
    }

    /// Same message, another kind (e.g. a database error met while copying is a copy
    /// failure, whatever its SQLSTATE class).
    pub fn with_kind(self, kind: ErrorKind) -> Error {
        Error { kind, ..self }
    }

    /// The SQLSTATE-derived kind of a database error, and its text without the
    /// driver's "db error:" noise.
    pub fn from_pg(err: &tokio_postgres::Error) -> Error {
        let kind = match err.code() {
            Some(code) => kind_of_sqlstate(code),
            None => ErrorKind::Connection,
        };
        Error::new(kind, pg_message(err)).retryable(is_transient(err))
    }
}

/// Errors that a new attempt may not meet again: the connection broke (no SQLSTATE), the
/// server is shutting down or restarting, a serialization failure or deadlock, or the
/// server is out of connections.
pub fn is_transient(err: &tokio_postgres::Error) -> bool {
    transient_sqlstate(err.code().map(SqlState::code))
}

fn transient_sqlstate(code: Option<&str>) -> bool {
    match code {
        None => true,
        Some(c) => {
            c.starts_with("08")
                || matches!(c, "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300")
        }
    }
}

/// A readable text of a driver error: the server's message, detail and hint when there
/// is one, else the driver's own words (and what caused them).
pub fn pg_message(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut s = db.message().to_string();
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        s.push_str(&format!(": {e}"));
        source = e.source();
    }
    s
}

fn kind_of_sqlstate(code: &SqlState) -> ErrorKind {
    let c = code.code();
    if c.starts_with("08") || c.starts_with("57") || c.starts_with("53") {
        ErrorKind::Connection
    } else if c.starts_with("28") || *code == SqlState::INVALID_CATALOG_NAME {
        ErrorKind::Preflight
    } else {
        ErrorKind::Schema
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Error {
        Error::from_pg(&err)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        Error::new(ErrorKind::Internal, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_per_outcome() {
        let codes = [
            ErrorKind::Usage.exit_code(),
            ErrorKind::Preflight.exit_code(),
            ErrorKind::Copy.exit_code(),
            ErrorKind::Verify.exit_code(),
            ErrorKind::Internal.exit_code(),
        ];
        let mut sorted = codes.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
        assert!(codes.iter().all(|&c| c != 0));
    }

    #[test]
    fn transient_sqlstates_are_the_ones_worth_retrying() {
        for code in [
            None,
            Some("57P01"),
            Some("40001"),
            Some("40P01"),
            Some("53300"),
            Some("08006"),
        ] {
            assert!(transient_sqlstate(code), "{code:?}");
        }
        for code in ["23505", "42501", "22021", "42P01"] {
            assert!(!transient_sqlstate(Some(code)), "{code}");
        }
    }

    #[test]
    fn sqlstates_map_to_kinds() {
        assert_eq!(
            kind_of_sqlstate(&SqlState::ADMIN_SHUTDOWN),
            ErrorKind::Connection
        );
        assert_eq!(
            kind_of_sqlstate(&SqlState::INVALID_PASSWORD),
            ErrorKind::Preflight
        );
        assert_eq!(
            kind_of_sqlstate(&SqlState::UNIQUE_VIOLATION),
            ErrorKind::Schema
        );
    }
}
