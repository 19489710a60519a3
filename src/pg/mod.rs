//! Connections. `Source` and `Target` are distinct types so a write cannot be sent to the
//! source by mistake: the source only reads, inside read-only transactions.

pub mod budget;
pub mod conninfo;
pub mod retry;
pub mod tls;

use bytes::Bytes;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSqlOwned, ToSql};
use tokio_postgres::{Client, CopyInSink, CopyOutStream, NoTls, Row, Statement, ToStatement};

use crate::error::{Error, ErrorKind, Result};
use crate::pg::conninfo::{ConnInfo, Endpoint, SessionAttrs};
use crate::pg::tls::{Found, Roots, SslMode};

/// Who a database is, for telling whether a recorded run came from it: the cluster's
/// system identifier where the role may read it, else host and port, and the database.
pub const IDENTITY_SQL: &str = "SELECT COALESCE(
     CASE WHEN pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
          THEN (SELECT system_identifier::text FROM pg_catalog.pg_control_system()) END,
     COALESCE(pg_catalog.host(pg_catalog.inet_server_addr()), 'local') || ':' || pg_catalog.current_setting('port'))
     || '/' || pg_catalog.current_database()";

/// Opens a connection as libpq would: each server of the connection string in turn, with
/// TLS as `sslmode` says, until one accepts and is the kind `target_session_attrs` asks
/// for. `side` ("source"/"target") and `role` (what this connection does) go into
/// `application_name` and error messages.
async fn connect(info: &ConnInfo, side: &str, role: &str) -> Result<Client> {
    connect_with(info, side, role, None).await
}

/// Why one server was not used: the error, with its cause (which decides whether the
/// connection is tried again) and one sentence.
type Failure = Error;

/// [`connect`], with session settings for the `options` startup parameter.
async fn connect_with(
    info: &ConnInfo,
    side: &str,
    role: &str,
    options: Option<&str>,
) -> Result<Client> {
    let app = format!("tsxfer {side} {role}");
    let endpoints = info.endpoints();
    let wanted = info.session_attrs();
    let passes: &[SessionAttrs] = if wanted == SessionAttrs::PreferStandby {
        &[SessionAttrs::Standby, SessionAttrs::Any]
    } else {
        std::slice::from_ref(&wanted)
    };
    let mut failures: Vec<(String, Failure)> = Vec::new();
    for want in passes {
        for ep in &endpoints {
            let mut cfg = info.pg_config(ep, &app);
            if let Some(o) = options {
                cfg.options(o);
            }
            let failure = match connect_endpoint(info, ep, &cfg).await {
                Ok(client) => match session_is(&client, *want).await {
                    Ok(None) => return Ok(client),
                    Ok(Some(what)) => Error::new(
                        ErrorKind::Preflight,
                        format!(
                            "the server is {what}, and target_session_attrs={} was asked",
                            want.name()
                        ),
                    ),
                    Err(e) => e,
                },
                Err(f) => f,
            };
            failures.push((ep.to_string(), failure));
        }
    }
    let said = if failures.len() == 1 {
        failures
            .last()
            .map(|(_, f)| f.message().to_string())
            .unwrap_or_default()
    } else {
        failures
            .iter()
            .map(|(ep, f)| format!("{ep}: {}", f.message()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let last = failures
        .pop()
        .map(|(_, f)| f)
        .unwrap_or_else(|| Error::new(ErrorKind::Connection, "no server to connect to"));
    Err(last.reworded(format!(
        "cannot connect to the {side} ({}): {said}",
        info.describe()
    )))
}

/// Whether the session is what `want` asks; `Some(what it is)` when not.
async fn session_is(client: &Client, want: SessionAttrs) -> Result<Option<&'static str>> {
    let recovery = || async {
        let row = client
            .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
            .await?;
        Ok::<bool, Error>(row.get(0))
    };
    let read_only = || async {
        let row = client
            .query_one(
                "SELECT pg_catalog.current_setting('transaction_read_only') = 'on'",
                &[],
            )
            .await?;
        Ok::<bool, Error>(row.get(0))
    };
    Ok(match want {
        SessionAttrs::Any => None,
        SessionAttrs::ReadWrite => read_only().await?.then_some("read-only"),
        SessionAttrs::ReadOnly => (!read_only().await?).then_some("read-write"),
        SessionAttrs::Primary => recovery().await?.then_some("a standby"),
        SessionAttrs::Standby | SessionAttrs::PreferStandby => {
            (!recovery().await?).then_some("a primary")
        }
    })
}

/// One server, with `sslmode`'s attempts: `allow` tries without TLS first, `prefer` with
/// TLS first; either tries the other way when the first is refused. No TLS on a unix
/// socket (libpq's rule).
async fn connect_endpoint(
    info: &ConnInfo,
    ep: &Endpoint,
    cfg: &tokio_postgres::Config,
) -> std::result::Result<Client, Failure> {
    let mode = info.ssl_mode();
    if ep.is_unix() || mode == SslMode::Disable {
        return plain(cfg).await;
    }
    match mode {
        SslMode::Allow => match plain(cfg).await {
            Ok(c) => Ok(c),
            Err(first) if first.kind() != ErrorKind::Connection => {
                encrypted(info, ep, cfg, SslMode::Require)
                    .await
                    .map_err(|f| {
                        let said = format!(
                            "{}; then with TLS: {}",
                            first.message(),
                            f.failure.message()
                        );
                        f.failure.reworded(said)
                    })
            }
            Err(first) => Err(first),
        },
        SslMode::Prefer => match encrypted(info, ep, cfg, SslMode::Prefer).await {
            Ok(c) => Ok(c),
            Err(Tried {
                tls_used: true,
                failure,
            }) => match plain(cfg).await {
                Ok(c) => {
                    if info.first_tls_warning() {
                        tracing::warn!(
                            "the {} connection is not encrypted: with TLS it failed ({}), so \
                             it went on without, as sslmode=prefer allows; sslmode=require \
                             refuses that",
                            info.side(),
                            failure.message()
                        );
                    }
                    Ok(c)
                }
                Err(f) => {
                    let said = format!("with TLS: {}; without: {}", failure.message(), f.message());
                    Err(f.reworded(said))
                }
            },
            Err(t) => Err(t.failure),
        },
        _ => encrypted(info, ep, cfg, SslMode::Require)
            .await
            .map_err(|t| t.failure),
    }
}

/// A failed TLS attempt, and whether TLS got as far as a handshake (so that `prefer`
/// may try again without).
struct Tried {
    tls_used: bool,
    failure: Failure,
}

async fn plain(cfg: &tokio_postgres::Config) -> std::result::Result<Client, Failure> {
    let mut cfg = cfg.clone();
    cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
    match cfg.connect(NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        }
        Err(e) => Err(driver_failure(e)),
    }
}

async fn encrypted(
    info: &ConnInfo,
    ep: &Endpoint,
    cfg: &tokio_postgres::Config,
    mode: SslMode,
) -> std::result::Result<Client, Tried> {
    let tls = info.tls();
    let check = tls.check();
    let (connector, outcome) = tls.connector(check, ep.tls_name()).map_err(|e| Tried {
        tls_used: false,
        failure: Error::new(ErrorKind::Usage, e),
    })?;
    let mut cfg = cfg.clone();
    cfg.ssl_mode(if mode == SslMode::Prefer {
        tokio_postgres::config::SslMode::Prefer
    } else {
        tokio_postgres::config::SslMode::Require
    });
    match cfg.connect(connector).await {
        Ok((client, conn)) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            if outcome.get() == Some(Found::Unverified) && info.first_tls_warning() {
                tracing::warn!(
                    "the {} connection is encrypted, but the server's certificate is not \
                     verified (sslmode={}{}): to verify it, give the certificate of the \
                     authority that signed it (or the server's own self-signed certificate) \
                     as sslrootcert=FILE and use sslmode=verify-full",
                    info.side(),
                    info.ssl_mode().name(),
                    match &tls.roots {
                        Roots::None { missing: Some(f) } => format!(", no {}", f.display()),
                        _ => String::new(),
                    }
                );
            }
            Ok(client)
        }
        Err(e) => {
            let found = outcome.get();
            let rustls_error = tls_error(&e);
            let tls_used = found.is_some() || rustls_error.is_some();
            let refused = if let Some(Found::Refused(sentence)) = found {
                Some(format!("TLS refused: {sentence}"))
            } else {
                rustls_error.map(|err| tls_sentence(err, info))
            };
            let no_client_cert = tls.client.is_none()
                && e.code()
                    == Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
            let mut failure = driver_failure(e);
            if no_client_cert {
                let said = format!(
                    "{} (no client certificate was sent: give one as sslcert=FILE with its \
                     sslkey=FILE, or put them in ~/.postgresql/postgresql.crt and .key)",
                    failure.message()
                );
                failure = failure.reworded(said);
            }
            if let Some(sentence) = refused {
                failure = Error::new(ErrorKind::Preflight, sentence);
            }
            Err(Tried { tls_used, failure })
        }
    }
}

/// The rustls error inside a driver error, if the failure was TLS's.
fn tls_error(err: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        source = e.source();
    }
    None
}

/// A TLS failure that is not about the server's certificate, in words.
fn tls_sentence(err: &rustls::Error, info: &ConnInfo) -> String {
    match err {
        rustls::Error::AlertReceived(alert) => {
            let client = match &info.tls().client {
                Some(id) => format!("the client certificate sent was {}", id.cert_file.display()),
                None => "no client certificate was sent (give one as sslcert=FILE and \
                         sslkey=FILE)"
                    .to_string(),
            };
            format!("the server ended the TLS handshake ({alert:?}); {client}")
        }
        other => format!("TLS failed: {other}"),
    }
}

/// A driver error in one sentence, its cause kept: a refusal the server will repeat (a
/// bad password, a missing database) is a preflight failure; [`crate::error::decide`]
/// retries the rest.
fn driver_failure(err: tokio_postgres::Error) -> Failure {
    let e = Error::from_pg(err);
    if e.sqlstate().is_some() && !e.is_retryable() {
        e.with_kind(ErrorKind::Preflight)
    } else {
        e.with_kind(ErrorKind::Connection)
    }
}

/// What every tsxfer session sets first. A COPY of a huge table must not be cut by a
/// server-side timeout meant for interactive users, nor a DDL statement by a
/// `lock_timeout`: tsxfer's own sessions wait for each other on purpose (each chunk table
/// of a hypertable locks the parent), as pg_dump and pg_restore set it to 0 for theirs.
/// JIT compilation pays for itself on
/// long analytic queries, and tsxfer runs none: its catalog queries over thousands of
/// chunks look expensive to the planner and would spend longer compiling than running
/// (at 9,000 chunk tables, the chunk DDL query took 1.44 s with JIT, 0.59 s without, 0.80 s
/// of the 1.44 compiling); COPY and `count(*)` gain nothing measurable from it.
const SESSION_SETTINGS: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; SET jit = off";

/// A connection to the source database. Only reads are offered.
pub struct Source {
    client: Client,
    /// Units read in the snapshot transaction open for them ([`Source::enter_snapshot`]);
    /// 0 when none is open.
    units_in_snapshot: std::sync::atomic::AtomicU32,
}

/// Units one snapshot transaction of a copy stream reads before it is renewed: sharing it
/// saves two round trips a unit, and renewing it lets go of the locks it holds (one for
/// each table read, until the transaction ends). As many as a batch of small units
/// ([`crate::copy::BATCH_UNITS`]): it is renewed between batches only.
const UNITS_PER_SNAPSHOT: u32 = 64;

impl Source {
    pub async fn connect(info: &ConnInfo, role: &str) -> Result<Source> {
        let client = connect(info, "source", role).await?;
        // With only pg_catalog on the search path, object names that the catalog prints
        // (regprocedure, regclass) come out schema-qualified.
        client
            .batch_execute(&format!("{SESSION_SETTINGS}; SET search_path = pg_catalog"))
            .await?;
        Ok(Source {
            client,
            units_in_snapshot: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Before a unit: the read-only transaction on `snapshot` that the stream's units
    /// share, opened unless it already is.
    pub async fn enter_snapshot(&self, snapshot: &str) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.units_in_snapshot.load(Ordering::SeqCst) == 0 {
            self.begin_snapshot(Some(snapshot)).await?;
        }
        self.units_in_snapshot.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// After a unit was read whole: ends the shared transaction once it has read
    /// [`UNITS_PER_SNAPSHOT`] units.
    pub async fn unit_read(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.units_in_snapshot.load(Ordering::SeqCst) >= UNITS_PER_SNAPSHOT {
            self.units_in_snapshot.store(0, Ordering::SeqCst);
            self.end().await?;
        }
        Ok(())
    }

    /// Starts a read-only repeatable-read transaction, on `snapshot` when given.
    pub async fn begin_snapshot(&self, snapshot: Option<&str>) -> Result<()> {
        let mut sql = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
        if let Some(s) = snapshot {
            sql.push_str(&format!(
                "; SET TRANSACTION SNAPSHOT {}",
                crate::quote::literal(s)
            ));
        }
        self.client.batch_execute(&sql).await?;
        Ok(())
    }

    /// Ends the read-only transaction.
    pub async fn end(&self) -> Result<()> {
        self.client.batch_execute("COMMIT").await?;
        Ok(())
    }

    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        Ok(self.client.query(sql, params).await?)
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        Ok(self.client.query_one(sql, params).await?)
    }

    /// The rows of `sql` (no parameters), each its first two columns.
    pub async fn pairs<A: FromSqlOwned, B: FromSqlOwned>(&self, sql: &str) -> Result<Vec<(A, B)>> {
        let rows = self.client.query(sql, &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// A COPY's text, or a statement [`Source::prepare`] made of it.
    pub async fn copy_out<T: ?Sized + ToStatement>(&self, statement: &T) -> Result<CopyOutStream> {
        Ok(self.client.copy_out(statement).await?)
    }

    /// Prepares `sql` without running it: one round trip, shared by all the statements
    /// prepared at once (the driver pipelines requests that are awaited together).
    pub async fn prepare(&self, sql: &str) -> Result<Statement> {
        Ok(self.client.prepare(sql).await?)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Takes a session-level advisory lock on a random key and returns the key. The lock
    /// writes nothing; it shows in `pg_locks` for sessions of this very database of this
    /// very server, however their connection strings reach it
    /// ([`Target::sees_marker`]).
    pub async fn hold_marker(&self) -> Result<i64> {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let key = h.finish() as i64;
        self.client
            .query_one("SELECT pg_catalog.pg_advisory_lock($1)", &[&key])
            .await?;
        Ok(key)
    }

    pub async fn release_marker(&self, key: i64) -> Result<()> {
        self.client
            .query_one("SELECT pg_catalog.pg_advisory_unlock($1)", &[&key])
            .await?;
        Ok(())
    }
}

/// The statements a target session runs, whether in a transaction of its own
/// ([`Target`]) or in one it has open ([`TargetTx`]): the same methods over the driver's
/// `Client` and `Transaction`, which offer the same ones.
macro_rules! target_statements {
    ($($field:ident).+) => {
        /// Runs `sql` (any number of statements, no parameters) in one round trip;
        /// returns the rows, their values as text.
        pub async fn simple_rows(&self, sql: &str) -> Result<Vec<tokio_postgres::SimpleQueryRow>> {
            Ok(self
                .$($field).+
                .simple_query(sql)
                .await?
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                    _ => None,
                })
                .collect())
        }

        /// Runs `sql` (any number of statements, no parameters) in one round trip.
        pub async fn execute(&self, sql: &str) -> Result<()> {
            self.$($field).+.batch_execute(sql).await?;
            Ok(())
        }

        pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
            Ok(self.$($field).+.query(sql, params).await?)
        }

        pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
            Ok(self.$($field).+.query_one(sql, params).await?)
        }

        /// A COPY's text, or a statement `prepare` made of it.
        pub async fn copy_in<T: ?Sized + ToStatement>(
            &self,
            statement: &T,
        ) -> Result<CopyInSink<Bytes>> {
            Ok(self.$($field).+.copy_in(statement).await?)
        }

        /// Prepares `sql` without running it ([`Source::prepare`]).
        pub async fn prepare(&self, sql: &str) -> Result<Statement> {
            Ok(self.$($field).+.prepare(sql).await?)
        }

        /// Reads rows back (verification only).
        pub async fn copy_out(&self, sql: &str) -> Result<CopyOutStream> {
            Ok(self.$($field).+.copy_out(sql).await?)
        }
    };
}

/// A connection to the target database.
pub struct Target {
    client: Client,
}

impl Target {
    target_statements!(client);

    pub async fn connect(info: &ConnInfo, role: &str) -> Result<Target> {
        let client = connect(info, "target", role).await?;
        client.batch_execute(SESSION_SETTINGS).await?;
        Ok(Target { client })
    }

    /// Opens a transaction (read committed, read-write): what it writes lands with
    /// [`TargetTx::commit`], and is rolled back if it is dropped before, whatever
    /// failed in between.
    pub async fn begin(&mut self) -> Result<TargetTx<'_>> {
        Ok(TargetTx {
            tx: self.client.transaction().await?,
        })
    }

    /// Opens a read-only repeatable-read transaction, on `snapshot` when given (one that
    /// another session of this database exported).
    pub async fn begin_reading(&mut self, snapshot: Option<&str>) -> Result<TargetTx<'_>> {
        let tx = self
            .client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        if let Some(s) = snapshot {
            tx.batch_execute(&format!(
                "SET TRANSACTION SNAPSHOT {}",
                crate::quote::literal(s)
            ))
            .await?;
        }
        Ok(TargetTx { tx })
    }

    /// Whether settings given when a session opens (the `options` startup parameter, as
    /// pg_restore gets them from PGOPTIONS) reach the server's session. A pooler such as
    /// pgbouncer refuses that parameter, or drops it when told to ignore it; then
    /// sessions are not the target's own either.
    pub async fn options_reach_session(info: &ConnInfo) -> Result<bool> {
        let probe = "tsxfer.session_probe";
        match connect_with(info, "target", "probe", Some(&format!("-c {probe}=on"))).await {
            Ok(client) => {
                let row = client
                    .query_one("SELECT pg_catalog.current_setting($1, true)", &[&probe])
                    .await?;
                Ok(row.get::<_, Option<String>>(0).as_deref() == Some("on"))
            }
            // A pooler that refuses the parameter says so as a protocol violation.
            Err(e) if e.has_sqlstate(&[SqlState::PROTOCOL_VIOLATION]) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Whether this session's database holds the advisory lock [`Source::hold_marker`]
    /// took: then this target is that source database.
    pub async fn sees_marker(&self, key: i64) -> Result<bool> {
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                                JOIN pg_catalog.pg_database d ON d.oid = l.database
                                WHERE l.locktype = 'advisory' AND l.objsubid = 1
                                  AND d.datname = pg_catalog.current_database()
                                  AND l.classid::int8 = ($1::int8 >> 32) & 4294967295
                                  AND l.objid::int8 = $1::int8 & 4294967295)",
                &[&key],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Who this database is ([`IDENTITY_SQL`]).
    pub async fn identity(&self) -> Result<String> {
        Ok(self.client.query_one(IDENTITY_SQL, &[]).await?.get(0))
    }
}

/// A transaction open on a [`Target`] session, the driver's own: dropped before
/// [`TargetTx::commit`] (an error returned with `?`, a task cancelled), it is rolled back
/// before the session runs anything else.
pub struct TargetTx<'a> {
    tx: tokio_postgres::Transaction<'a>,
}

impl TargetTx<'_> {
    target_statements!(tx);

    pub async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }

    /// Rolls back now, waiting for the server to say so (dropping rolls back too,
    /// without waiting).
    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}
