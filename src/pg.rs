//! Connections. `Source` and `Target` are distinct types so a write cannot be sent to the
//! source by mistake: the source only reads, inside read-only transactions.

use std::sync::Arc;

use bytes::Bytes;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, CopyInSink, CopyOutStream, NoTls, Row};

use crate::conninfo::{ConnInfo, TlsMode};
use crate::error::{Error, ErrorKind, Result, pg_message};

/// Opens a connection, with certificate-verifying TLS unless `sslmode=disable`.
/// `side` ("source"/"target") and `role` (what this connection does) go into
/// `application_name` and error messages.
async fn connect(info: &ConnInfo, side: &str, role: &str) -> Result<Client> {
    connect_with(info, side, role, None).await
}

/// [`connect`], with session settings for the `options` startup parameter.
async fn connect_with(
    info: &ConnInfo,
    side: &str,
    role: &str,
    options: Option<&str>,
) -> Result<Client> {
    let app = format!("tsxfer {side} {role}");
    let mut cfg = info.pg_config(&app);
    if let Some(o) = options {
        cfg.options(o);
    }
    let connected = if info.tls_mode() == TlsMode::Disable {
        cfg.connect(NoTls).await.map(|(client, conn)| {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
        })
    } else {
        let tls = tls_connector(info, side)?;
        cfg.connect(tls).await.map(|(client, conn)| {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
        })
    };
    connected.map_err(|e| connect_error(&e, info, side))
}

/// One sentence for a failed connection: which server, and what the server or network said.
fn connect_error(err: &tokio_postgres::Error, info: &ConnInfo, side: &str) -> Error {
    let kind = if err.as_db_error().is_some() {
        ErrorKind::Preflight
    } else {
        ErrorKind::Connection
    };
    Error::new(
        kind,
        format!(
            "cannot connect to the {side} ({}): {}",
            info.describe(),
            pg_message(err)
        ),
    )
}

fn tls_connector(info: &ConnInfo, side: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = info.get("sslrootcert") {
        let pem = std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorKind::Usage,
                format!("cannot read the {side}'s sslrootcert {path}: {e}"),
            )
        })?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| {
                Error::new(
                    ErrorKind::Usage,
                    format!("the {side}'s sslrootcert {path} is not PEM: {e}"),
                )
            })?;
            roots.add(cert).map_err(|e| {
                Error::new(
                    ErrorKind::Usage,
                    format!("the {side}'s sslrootcert {path} holds a bad certificate: {e}"),
                )
            })?;
        }
    } else {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A connection to the source database. Only reads are offered.
pub struct Source {
    client: Client,
}

impl Source {
    pub async fn connect(info: &ConnInfo, role: &str) -> Result<Source> {
        let client = connect(info, "source", role).await?;
        // A COPY of a huge table must not be cut by a server-side timeout meant for
        // interactive users; with only pg_catalog on the search path, object names that
        // the catalog prints (regprocedure, regclass) come out schema-qualified.
        client
            .batch_execute(
                "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; \
                 SET search_path = pg_catalog",
            )
            .await?;
        Ok(Source { client })
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

    pub async fn copy_out(&self, sql: &str) -> Result<CopyOutStream> {
        Ok(self.client.copy_out(sql).await?)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// A connection to the target database.
pub struct Target {
    client: Client,
}

impl Target {
    pub async fn connect(info: &ConnInfo, role: &str) -> Result<Target> {
        let client = connect(info, "target", role).await?;
        client
            .batch_execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
            .await?;
        Ok(Target { client })
    }

    pub async fn execute(&self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).await?;
        Ok(())
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
            Err(e) if e.message().contains("unsupported startup parameter") => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        Ok(self.client.query(sql, params).await?)
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        Ok(self.client.query_one(sql, params).await?)
    }

    pub async fn copy_in(&self, sql: &str) -> Result<CopyInSink<Bytes>> {
        Ok(self.client.copy_in(sql).await?)
    }

    /// Reads rows back (verification only).
    pub async fn copy_out(&self, sql: &str) -> Result<CopyOutStream> {
        Ok(self.client.copy_out(sql).await?)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
