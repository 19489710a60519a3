//! One error type for the whole tool. The kind decides the exit code; the message is one
//! sentence a person can act on, and never holds a password. What caused it (a server's
//! SQLSTATE, a broken link, the driver's own refusal, tsxfer itself) is kept with it, and
//! [`decide`] alone turns that into "try again" or "give up": no decision reads a
//! message's text, which the server writes in its own language.

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

/// Where an error came from, which is what decides whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// tsxfer's own finding, a local file, a child process.
    Local,
    /// A server answered with an error: its SQLSTATE.
    Server(SqlState),
    /// A connection could not be made, broke, or was closed.
    Link,
    /// The driver refused something on this side: decoding or encoding a value, TLS
    /// verification, a bad setting.
    Client,
}

/// What to do about a failed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It may work on a new connection after a pause.
    Retry,
    /// It will fail again.
    GiveUp,
}

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    cause: Cause,
    /// The driver's error this one was made from, when there is one.
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            cause: Cause::Local,
            source: None,
        }
    }

    /// Whether [`decide`] says to try again.
    pub fn is_retryable(&self) -> bool {
        decide(self) == Decision::Retry
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn cause(&self) -> &Cause {
        &self.cause
    }

    /// The SQLSTATE of a server's error.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match &self.cause {
            Cause::Server(code) => Some(code),
            _ => None,
        }
    }

    /// Whether the server's error has one of `codes` as its SQLSTATE.
    pub fn has_sqlstate(&self, codes: &[SqlState]) -> bool {
        self.sqlstate().is_some_and(|c| codes.contains(c))
    }

    /// Prefixes the message with where it happened ("copying public.t: ...").
    pub fn context(self, what: impl fmt::Display) -> Error {
        Error {
            message: format!("{what}: {}", self.message),
            ..self
        }
    }

    /// Another message for the same failure (its kind and cause stay).
    pub fn reworded(self, message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            ..self
        }
    }

    /// The same failure, put down to a broken link: for a failure only reported as text
    /// (by a child process) when a check of its own found the server gone meanwhile.
    pub fn link_broken(self) -> Error {
        Error {
            cause: Cause::Link,
            ..self
        }
    }

    /// Same message, another kind (e.g. a database error met while copying is a copy
    /// failure, whatever its SQLSTATE class).
    pub fn with_kind(self, kind: ErrorKind) -> Error {
        Error { kind, ..self }
    }

    /// The SQLSTATE-derived kind of a database error, its cause, and its text without the
    /// driver's "db error:" noise.
    pub fn from_pg(err: tokio_postgres::Error) -> Error {
        let cause = cause_of(&err);
        let kind = match &cause {
            Cause::Server(code) => kind_of_sqlstate(code),
            _ => ErrorKind::Connection,
        };
        Error {
            kind,
            message: pg_message(&err),
            cause,
            source: Some(Box::new(err)),
        }
    }
}

/// Whether a failed step is worth another attempt: a broken or refused connection, a
/// server shutting down, restarting or starting up, out of connection slots, or a
/// serialization failure or deadlock. Bad usage, verification failures, interruptions and
/// tsxfer's own findings never are; neither is what the driver refused on this side (a
/// value it cannot decode will not decode the next time).
pub fn decide(e: &Error) -> Decision {
    if matches!(
        e.kind,
        ErrorKind::Usage | ErrorKind::Verify | ErrorKind::Interrupted
    ) {
        return Decision::GiveUp;
    }
    match &e.cause {
        Cause::Link => Decision::Retry,
        Cause::Server(code) if transient_sqlstate(code.code()) => Decision::Retry,
        Cause::Server(_) | Cause::Client | Cause::Local => Decision::GiveUp,
    }
}

fn transient_sqlstate(c: &str) -> bool {
    c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300")
}

/// The cause of a driver error: the server's SQLSTATE; a link failure when the connection
/// is closed or an I/O error broke it; else the driver's own refusal.
fn cause_of(err: &tokio_postgres::Error) -> Cause {
    if let Some(code) = err.code() {
        return Cause::Server(code.clone());
    }
    if err.is_closed() {
        return Cause::Link;
    }
    let io = std::error::Error::source(err).and_then(|s| s.downcast_ref::<std::io::Error>());
    match io.map(std::io::Error::kind) {
        Some(k) if link_failure(k) => Cause::Link,
        _ => Cause::Client,
    }
}

/// I/O errors of a server that is down, restarting or unreachable (a unix socket file is
/// missing while its server is stopped). Invalid data (a protocol or TLS verification
/// failure) is not one.
fn link_failure(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        kind,
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::TimedOut
            | K::NotFound
            | K::AddrNotAvailable
            | K::Interrupted
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
    )
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Error {
        Error::from_pg(err)
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
            "57P01", "57P03", "40001", "40P01", "53300", "08006", "08P01",
        ] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42501", "22021", "42P01", "28P01", "3D000"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }

    fn with_cause(kind: ErrorKind, cause: Cause) -> Error {
        Error {
            cause,
            ..Error::new(kind, "x")
        }
    }

    #[test]
    fn one_policy_decides_by_cause_and_kind_never_by_text() {
        let retry = |kind, cause| decide(&with_cause(kind, cause)) == Decision::Retry;
        assert!(retry(ErrorKind::Connection, Cause::Link));
        assert!(retry(ErrorKind::Preflight, Cause::Link));
        assert!(retry(
            ErrorKind::Copy,
            Cause::Server(SqlState::TOO_MANY_CONNECTIONS)
        ));
        assert!(retry(
            ErrorKind::Connection,
            Cause::Server(SqlState::CANNOT_CONNECT_NOW)
        ));
        assert!(!retry(ErrorKind::Copy, Cause::Client), "a decode error");
        assert!(!retry(ErrorKind::Internal, Cause::Local));
        assert!(!retry(
            ErrorKind::Copy,
            Cause::Server(SqlState::CHARACTER_NOT_IN_REPERTOIRE)
        ));
        assert!(!retry(ErrorKind::Interrupted, Cause::Link));
        assert!(!retry(ErrorKind::Usage, Cause::Link));
        // The message's words play no part.
        let e = Error::new(
            ErrorKind::Connection,
            "connection refused; server closed the connection",
        );
        assert_eq!(decide(&e), Decision::GiveUp);
    }

    #[test]
    fn io_failures_of_a_missing_server_are_link_failures_invalid_data_is_not() {
        assert!(link_failure(std::io::ErrorKind::ConnectionRefused));
        assert!(link_failure(std::io::ErrorKind::NotFound));
        assert!(link_failure(std::io::ErrorKind::UnexpectedEof));
        assert!(!link_failure(std::io::ErrorKind::InvalidData));
        assert!(!link_failure(std::io::ErrorKind::PermissionDenied));
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
