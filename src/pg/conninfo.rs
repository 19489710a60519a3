//! Connection strings as libpq reads them: `postgresql://` URIs and `key=value` strings,
//! completed, in libpq's order, from a connection service file (`service=`/`PGSERVICE`),
//! `PG*` environment variables, libpq's defaults and `.pgpass`. The password is kept apart
//! and never printed: [`ConnInfo`]'s `Display` and `redacted()` leave it out.
//!
//! One file because libpq's order of sources is one rule: URI and key=value parsing, the
//! service file, the environment and `.pgpass` each fill what the one before left, and
//! splitting them would spread that order over several files (its tests are a sixth).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::pg::tls::{Roots, SslMode, TlsInput, TlsSettings};

/// Connection keywords tsxfer understands (libpq's names).
const KNOWN_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "service",
    "options",
    "application_name",
    "fallback_application_name",
    "client_encoding",
    "connect_timeout",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslsni",
    "sslcompression",
    "gssencmode",
    "channel_binding",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
];

/// libpq keywords tsxfer does not support, with the reason given to the user.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    ("sslcrl", "certificate revocation lists are not checked"),
    ("sslcrldir", "certificate revocation lists are not checked"),
    (
        "sslcertmode",
        "the client certificate is sent when sslcert names one",
    ),
    (
        "sslnegotiation",
        "TLS is always negotiated the PostgreSQL way",
    ),
    (
        "ssl_min_protocol_version",
        "TLS 1.2 and 1.3 are always allowed",
    ),
    (
        "ssl_max_protocol_version",
        "TLS 1.2 and 1.3 are always allowed",
    ),
    (
        "requiressl",
        "it is deprecated in libpq: use sslmode=require",
    ),
    (
        "requirepeer",
        "peer credentials of a socket are not checked",
    ),
    (
        "require_auth",
        "the authentication method is not restricted",
    ),
    ("krbsrvname", "GSSAPI (Kerberos) is not supported"),
    ("gsslib", "GSSAPI (Kerberos) is not supported"),
    ("gssdelegation", "GSSAPI (Kerberos) is not supported"),
    ("load_balance_hosts", "hosts are tried in the order given"),
    ("replication", "tsxfer opens no replication connections"),
];

/// Environment variables libpq reads, and the keyword each one sets.
const ENV_DEFAULTS: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGOPTIONS", "options"),
    ("PGAPPNAME", "application_name"),
    ("PGCLIENTENCODING", "client_encoding"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGSSLSNI", "sslsni"),
    ("PGSSLCOMPRESSION", "sslcompression"),
    ("PGGSSENCMODE", "gssencmode"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
];

/// Environment variables of libpq that set an unsupported keyword.
const UNSUPPORTED_ENV: &[(&str, &str)] = &[
    ("PGSSLCRL", "sslcrl"),
    ("PGSSLCRLDIR", "sslcrldir"),
    ("PGSSLCERTMODE", "sslcertmode"),
    ("PGSSLNEGOTIATION", "sslnegotiation"),
    ("PGSSLMINPROTOCOLVERSION", "ssl_min_protocol_version"),
    ("PGSSLMAXPROTOCOLVERSION", "ssl_max_protocol_version"),
    ("PGREQUIRESSL", "requiressl"),
    ("PGREQUIREPEER", "requirepeer"),
    ("PGREQUIREAUTH", "require_auth"),
    ("PGKRBSRVNAME", "krbsrvname"),
    ("PGGSSLIB", "gsslib"),
    ("PGGSSDELEGATION", "gssdelegation"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
];

/// Where Debian's libpq looks for the system-wide service file when `PGSYSCONFDIR` is
/// not set.
const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// Where Debian's libpq looks for the server's socket when no host is given.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// TCP keepalive timing used when the connection string does not set it (libpq leaves
/// it to the system: two hours before the first probe). A peer that vanishes while a
/// COPY waits on it is then noticed in about two minutes.
const DEFAULT_KEEPALIVES_IDLE: u64 = 60;
const DEFAULT_KEEPALIVES_INTERVAL: u64 = 10;
const DEFAULT_KEEPALIVES_COUNT: u32 = 6;

/// libpq's `target_session_attrs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
    PreferStandby,
}

impl SessionAttrs {
    fn parse(s: &str) -> Option<SessionAttrs> {
        Some(match s {
            "any" => SessionAttrs::Any,
            "read-write" => SessionAttrs::ReadWrite,
            "read-only" => SessionAttrs::ReadOnly,
            "primary" => SessionAttrs::Primary,
            "standby" => SessionAttrs::Standby,
            "prefer-standby" => SessionAttrs::PreferStandby,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::ReadOnly => "read-only",
            SessionAttrs::Primary => "primary",
            SessionAttrs::Standby => "standby",
            SessionAttrs::PreferStandby => "prefer-standby",
        }
    }
}

/// Where the password comes from, which decides how pg_dump and pg_restore get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PasswordFrom {
    /// The connection string or a service file: handed over in a private password file.
    Given,
    /// `PGPASSWORD`: the user put it in the environment, so it goes on in the environment.
    Environment,
}

/// One server to try: a host name or socket directory, or an address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: Option<String>,
    pub hostaddr: Option<String>,
    pub port: u16,
}

impl Endpoint {
    /// Whether this is a unix-domain socket (libpq uses no TLS there, whatever `sslmode`).
    pub fn is_unix(&self) -> bool {
        self.hostaddr.is_none() && self.host.as_deref().is_some_and(|h| h.starts_with('/'))
    }

    /// The name the server's certificate must carry under `verify-full`.
    pub fn tls_name(&self) -> &str {
        self.host
            .as_deref()
            .filter(|h| !h.is_empty())
            .or(self.hostaddr.as_deref())
            .unwrap_or("")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, &self.hostaddr) {
            (Some(h), Some(a)) => write!(f, "host {h} ({a}) port {}", self.port),
            (Some(h), None) => write!(f, "host {h} port {}", self.port),
            (None, Some(a)) => write!(f, "hostaddr {a} port {}", self.port),
            (None, None) => write!(f, "port {}", self.port),
        }
    }
}

/// A parsed, completed connection string.
#[derive(Clone)]
pub struct ConnInfo {
    params: BTreeMap<String, String>,
    /// "source" or "target".
    side: String,
    tls: Arc<TlsSettings>,
    password_from: Option<PasswordFrom>,
    /// The password file to look each host up in, when no password was given.
    passfile: Option<PathBuf>,
    /// Whether this side's TLS warning has been given (it is said once per side).
    tls_warned: Arc<AtomicBool>,
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnInfo({})", self.redacted())
    }
}

impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn bad(what: &str, detail: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Usage,
        format!("the {what} connection string is malformed: {detail}"),
    )
}

fn refuse(what: &str, detail: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Usage,
        format!("the {what} connection cannot be set up: {detail}"),
    )
}

/// Secrets a service file or connection string may hold; never printed.
const SECRET_KEYS: &[&str] = &["password", "sslpassword"];

impl ConnInfo {
    /// Parses `text` (a URI or `key=value` pairs), then fills what it leaves out from
    /// the service file, the environment, libpq's defaults and the password file. `what`
    /// names the side ("source", "target") in error messages.
    pub fn parse(text: &str, what: &str) -> Result<ConnInfo> {
        Self::parse_with_env(text, what, &|k| std::env::var(k).ok())
    }

    /// As [`ConnInfo::parse`], with the environment given as a function (for tests).
    pub fn parse_with_env(
        text: &str,
        what: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnInfo> {
        let trimmed = text.trim();
        let mut params =
            if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
                parse_uri(trimmed).map_err(|e| bad(what, e))?
            } else {
                parse_key_values(trimmed).map_err(|e| bad(what, e))?
            };
        check_keys(&params).map_err(|e| bad(what, e))?;
        for (var, key) in UNSUPPORTED_ENV {
            if env(var).is_some_and(|v| !v.is_empty()) {
                let why = UNSUPPORTED_KEYS
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or("", |(_, w)| *w);
                return Err(refuse(
                    what,
                    format!("{var} is set, but tsxfer does not support libpq's {key}: {why}"),
                ));
            }
        }
        let home = env("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let service = params
            .get("service")
            .cloned()
            .or_else(|| env("PGSERVICE").filter(|s| !s.is_empty()));
        if let Some(service) = service {
            let found =
                service_params(&service, env, home.as_deref()).map_err(|e| refuse(what, e))?;
            for (k, v) in found {
                params.entry(k).or_insert(v);
            }
        }
        params.remove("service");
        let mut password_from = params
            .contains_key("password")
            .then_some(PasswordFrom::Given);
        for (var, key) in ENV_DEFAULTS {
            if !params.contains_key(*key)
                && let Some(v) = env(var).filter(|v| !v.is_empty())
            {
                if *key == "password" {
                    password_from = Some(PasswordFrom::Environment);
                }
                params.insert((*key).to_string(), v);
            }
        }
        if !params.contains_key("host") && !params.contains_key("hostaddr") {
            params.insert("host".into(), DEFAULT_SOCKET_DIR.into());
        }
        params.entry("port".into()).or_insert_with(|| "5432".into());
        if !params.contains_key("user") {
            let user = env("USER")
                .or_else(|| env("LOGNAME"))
                .ok_or_else(|| bad(what, "no user given (set user=... or PGUSER)"))?;
            params.insert("user".into(), user);
        }
        if !params.contains_key("dbname") {
            let user = params["user"].clone();
            params.insert("dbname".into(), user);
        }
        validate(&params, what)?;
        // Over a unix socket there is no TLS, whatever sslmode says (libpq's rule), so
        // its files are not looked at either.
        let only_sockets = endpoints_of(&params)
            .map_err(|e| bad(what, e))?
            .iter()
            .all(Endpoint::is_unix);
        let tls = TlsSettings::load(&TlsInput {
            sslmode: if only_sockets {
                Some("disable")
            } else {
                params.get("sslmode").map(String::as_str)
            },
            sslrootcert: params
                .get("sslrootcert")
                .map(String::as_str)
                .filter(|_| !only_sockets),
            sslcert: params.get("sslcert").map(String::as_str),
            sslkey: params.get("sslkey").map(String::as_str),
            sslpassword: params.get("sslpassword").map(String::as_str),
            sslsni: params.get("sslsni").is_none_or(|v| v != "0"),
            home: home.as_deref(),
        })
        .map_err(|e| refuse(what, e))?;
        let passfile = if password_from.is_none() {
            params
                .get("passfile")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".pgpass")))
                .filter(|f| passfile_usable(f))
        } else {
            None
        };
        let info = ConnInfo {
            params,
            side: what.to_string(),
            tls: Arc::new(tls),
            password_from,
            passfile,
            tls_warned: Arc::new(AtomicBool::new(false)),
        };
        Ok(info)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// The password given in the connection string, a service file or `PGPASSWORD`
    /// (a `.pgpass` password is looked up per host, see [`ConnInfo::password_for`]).
    pub fn password(&self) -> Option<&str> {
        self.get("password")
    }

    /// The password for one server: the one given, else the password file's line for it.
    pub fn password_for(&self, endpoint: &Endpoint) -> Option<String> {
        if let Some(pw) = self.password() {
            return Some(pw.to_string());
        }
        let file = self.passfile.as_ref()?;
        password_from_file(file, endpoint, self.dbname(), self.user())
    }

    pub fn dbname(&self) -> &str {
        self.get("dbname").unwrap_or("")
    }

    pub fn user(&self) -> &str {
        self.get("user").unwrap_or("")
    }

    /// "source" or "target".
    pub fn side(&self) -> &str {
        &self.side
    }

    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    /// Whether this side's TLS warning is still to be said; true only the first time.
    pub fn first_tls_warning(&self) -> bool {
        !self.tls_warned.swap(true, Ordering::Relaxed)
    }

    /// What the session must be: the user's `target_session_attrs`, or `read-write` for
    /// the target (it is written to) and `any` for the source.
    pub fn session_attrs(&self) -> SessionAttrs {
        self.get("target_session_attrs")
            .and_then(SessionAttrs::parse)
            .unwrap_or(if self.side == "target" {
                SessionAttrs::ReadWrite
            } else {
                SessionAttrs::Any
            })
    }

    /// The servers to try, in order (libpq's rules for pairing hosts, addresses, ports).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.endpoints_checked().unwrap_or_default()
    }

    fn endpoints_checked(&self) -> std::result::Result<Vec<Endpoint>, String> {
        endpoints_of(&self.params)
    }

    /// Host, port, database and user: enough for a person to know which server is meant.
    pub fn describe(&self) -> String {
        let host = self.get("host").or(self.get("hostaddr")).unwrap_or("");
        format!(
            "host={} port={} dbname={} user={}",
            host,
            self.get("port").unwrap_or(""),
            self.dbname(),
            self.user()
        )
    }

    /// Every parameter but the secrets, as a libpq `key=value` string.
    pub fn redacted(&self) -> String {
        self.params
            .iter()
            .filter(|(k, _)| !SECRET_KEYS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={}", quote_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The string handed to pg_dump/pg_restore: the same servers and TLS settings as
    /// tsxfer's own connections (defaults made explicit), no secrets (those go through
    /// [`ConnInfo::child_env`]), and `application_name` so the DBA can tell sessions apart.
    pub fn libpq_string(&self, application_name: &str) -> String {
        let mut p = self.params.clone();
        for k in SECRET_KEYS {
            p.remove(*k);
        }
        if self.password_from == Some(PasswordFrom::Given) {
            p.remove("passfile");
        }
        p.insert("sslmode".into(), self.tls.mode.name().into());
        match &self.tls.roots {
            Roots::File(f) => {
                p.insert("sslrootcert".into(), f.display().to_string());
            }
            Roots::System => {
                if let Some(f) = crate::pg::tls::system_roots_file() {
                    p.insert("sslrootcert".into(), f.display().to_string());
                }
            }
            Roots::None { .. } => {}
        }
        if let Some(id) = &self.tls.client {
            p.insert("sslcert".into(), id.cert_file.display().to_string());
            if id.decrypted_pem.is_some() {
                p.remove("sslkey");
            } else {
                p.insert("sslkey".into(), id.key_file.display().to_string());
            }
        }
        p.insert("gssencmode".into(), "disable".into());
        p.entry("keepalives_idle".into())
            .or_insert_with(|| DEFAULT_KEEPALIVES_IDLE.to_string());
        p.entry("keepalives_interval".into())
            .or_insert_with(|| DEFAULT_KEEPALIVES_INTERVAL.to_string());
        p.entry("keepalives_count".into())
            .or_insert_with(|| DEFAULT_KEEPALIVES_COUNT.to_string());
        p.insert(
            "target_session_attrs".into(),
            self.session_attrs().name().into(),
        );
        p.entry("application_name".into())
            .or_insert_with(|| application_name.to_string());
        p.iter()
            .map(|(k, v)| format!("{k}={}", quote_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The environment pg_dump/pg_restore need for this connection: a password given in
    /// the connection string goes in a private password file (mode 0600, removed when
    /// the returned value is dropped), one from `PGPASSWORD` stays in `PGPASSWORD`; a key
    /// decrypted with `sslpassword` goes in a private file too.
    pub fn child_env(&self) -> Result<ChildEnv> {
        let mut env = ChildEnv {
            vars: Vec::new(),
            dir: None,
        };
        let private = |env: &mut ChildEnv| -> Result<PathBuf> {
            if env.dir.is_none() {
                env.dir = Some(tempfile::Builder::new().prefix("tsxfer-libpq-").tempdir()?);
            }
            Ok(env.dir.as_ref().expect("just made").path().to_path_buf())
        };
        match (self.password_from, self.password()) {
            (Some(PasswordFrom::Environment), Some(pw)) => {
                env.vars.push(("PGPASSWORD", pw.to_string()));
            }
            (Some(PasswordFrom::Given), Some(pw)) => {
                let file = private(&mut env)?.join("pgpass");
                let escaped = pw.replace('\\', "\\\\").replace(':', "\\:");
                write_private(&file, format!("*:*:*:*:{escaped}\n").as_bytes())?;
                env.vars.push(("PGPASSFILE", file.display().to_string()));
            }
            _ => {}
        }
        if let Some(id) = &self.tls.client
            && let Some(pem) = &id.decrypted_pem
        {
            let file = private(&mut env)?.join("client.key");
            write_private(&file, pem.as_bytes())?;
            env.vars.push(("PGSSLKEY", file.display().to_string()));
        }
        Ok(env)
    }

    /// A tokio-postgres configuration for one server of this connection.
    pub fn pg_config(&self, endpoint: &Endpoint, application_name: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        match (&endpoint.host, &endpoint.hostaddr) {
            (Some(h), _) if h.starts_with('/') && endpoint.hostaddr.is_none() => {
                cfg.host_path(h);
            }
            (Some(h), Some(a)) => {
                cfg.host(h);
                if let Ok(ip) = a.parse() {
                    cfg.hostaddr(ip);
                }
            }
            (Some(h), None) => {
                cfg.host(h);
            }
            (None, Some(a)) => {
                // tokio-postgres wants a host name for TLS; the address stands for it.
                cfg.host(a);
                if let Ok(ip) = a.parse() {
                    cfg.hostaddr(ip);
                }
            }
            (None, None) => {
                cfg.host_path(DEFAULT_SOCKET_DIR);
            }
        }
        cfg.port(endpoint.port);
        cfg.user(self.user()).dbname(self.dbname());
        if let Some(pw) = self.password_for(endpoint) {
            cfg.password(pw);
        }
        if let Some(o) = self.get("options") {
            cfg.options(o);
        }
        cfg.application_name(
            self.get("application_name")
                .or(self.get("fallback_application_name"))
                .unwrap_or(application_name),
        );
        let secs = |k: &str| self.get(k).and_then(|t| t.parse::<u64>().ok());
        if let Some(t) = secs("connect_timeout")
            && t > 0
        {
            // libpq treats 1 as 2 seconds.
            cfg.connect_timeout(Duration::from_secs(t.max(2)));
        }
        let keepalives = self.get("keepalives").is_none_or(|v| v != "0");
        cfg.keepalives(keepalives);
        if keepalives {
            cfg.keepalives_idle(Duration::from_secs(
                secs("keepalives_idle")
                    .filter(|s| *s > 0)
                    .unwrap_or(DEFAULT_KEEPALIVES_IDLE),
            ));
            cfg.keepalives_interval(Duration::from_secs(
                secs("keepalives_interval")
                    .filter(|s| *s > 0)
                    .unwrap_or(DEFAULT_KEEPALIVES_INTERVAL),
            ));
            cfg.keepalives_retries(
                secs("keepalives_count")
                    .filter(|s| *s > 0)
                    .map_or(DEFAULT_KEEPALIVES_COUNT, |c| c as u32),
            );
        }
        if let Some(ms) = secs("tcp_user_timeout")
            && ms > 0
        {
            cfg.tcp_user_timeout(Duration::from_millis(ms));
        }
        cfg.channel_binding(match self.get("channel_binding") {
            Some("disable") => tokio_postgres::config::ChannelBinding::Disable,
            Some("require") => tokio_postgres::config::ChannelBinding::Require,
            _ => tokio_postgres::config::ChannelBinding::Prefer,
        });
        cfg
    }
}

/// What pg_dump/pg_restore get in their environment for one connection; the private
/// files it names are removed when it is dropped.
pub struct ChildEnv {
    pub vars: Vec<(&'static str, String)>,
    dir: Option<tempfile::TempDir>,
}

fn write_private(file: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    f.write_all(bytes)?;
    Ok(())
}

/// The servers a connection string names, in order (libpq's rules for pairing hosts,
/// addresses and ports).
fn endpoints_of(params: &BTreeMap<String, String>) -> std::result::Result<Vec<Endpoint>, String> {
    let split = |k: &str| -> Vec<String> {
        params
            .get(k)
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let hosts = split("host");
    let addrs = split("hostaddr");
    let ports = split("port");
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(format!(
            "{} host names cannot be matched to {} hostaddr values",
            hosts.len(),
            addrs.len()
        ));
    }
    let n = hosts.len().max(addrs.len()).max(1);
    if ports.len() > 1 && ports.len() != n {
        return Err(format!(
            "{} port numbers cannot be matched to {n} hosts",
            ports.len()
        ));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let host = hosts.get(i).filter(|h| !h.is_empty()).cloned();
        let hostaddr = addrs.get(i).filter(|a| !a.is_empty()).cloned();
        if let Some(a) = &hostaddr
            && a.parse::<std::net::IpAddr>().is_err()
        {
            return Err(format!("hostaddr \"{a}\" is not an IP address"));
        }
        let port = ports
            .get(i)
            .or(ports.first())
            .filter(|p| !p.is_empty())
            .map_or(Ok(5432), |p| {
                p.parse::<u16>()
                    .map_err(|_| format!("port \"{p}\" is not a number"))
            })?;
        let host = if host.is_none() && hostaddr.is_none() {
            Some(DEFAULT_SOCKET_DIR.to_string())
        } else {
            host
        };
        out.push(Endpoint {
            host,
            hostaddr,
            port,
        });
    }
    Ok(out)
}

/// Refuses keywords libpq does not know and those tsxfer does not support.
fn check_keys(params: &BTreeMap<String, String>) -> std::result::Result<(), String> {
    for key in params.keys() {
        if let Some((_, why)) = UNSUPPORTED_KEYS.iter().find(|(k, _)| k == key) {
            return Err(format!(
                "libpq's option \"{key}\" is not supported by tsxfer: {why}"
            ));
        }
        if !KNOWN_KEYS.contains(&key.as_str()) {
            return Err(format!("unknown option \"{key}\""));
        }
    }
    Ok(())
}

fn validate(params: &BTreeMap<String, String>, what: &str) -> Result<()> {
    let get = |k: &str| params.get(k).map(String::as_str);
    let one_of = |key: &str, allowed: &[&str]| -> Result<()> {
        match get(key) {
            Some(v) if !allowed.contains(&v) => Err(bad(
                what,
                format!("{key} \"{v}\" is not one of {}", allowed.join(", ")),
            )),
            _ => Ok(()),
        }
    };
    if let Some(mode) = get("sslmode")
        && SslMode::parse(mode).is_none()
    {
        return Err(bad(
            what,
            format!("sslmode \"{mode}\" is not one libpq knows"),
        ));
    }
    for key in [
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    ] {
        if let Some(t) = get(key)
            && t.parse::<u64>().is_err()
        {
            return Err(bad(what, format!("{key} \"{t}\" is not a number")));
        }
    }
    one_of("sslsni", &["0", "1"])?;
    one_of("sslcompression", &["0", "1"])?;
    one_of("channel_binding", &["disable", "prefer", "require"])?;
    one_of("gssencmode", &["disable", "allow", "prefer", "require"])?;
    if get("gssencmode") == Some("require") {
        return Err(refuse(
            what,
            "gssencmode=require asks for GSSAPI encryption, which tsxfer does not do; use \
             sslmode for encryption (and gssencmode=disable or prefer)",
        ));
    }
    if let Some(enc) = get("client_encoding")
        && !["utf8", "utf-8", "unicode", "auto"].contains(&enc.to_ascii_lowercase().as_str())
    {
        return Err(refuse(
            what,
            format!(
                "client_encoding \"{enc}\": tsxfer always talks UTF8 (the data is copied as the server stores it)"
            ),
        ));
    }
    if let Some(t) = get("target_session_attrs") {
        let Some(attrs) = SessionAttrs::parse(t) else {
            return Err(bad(
                what,
                format!(
                    "target_session_attrs \"{t}\" is not one of any, read-write, read-only, \
                     primary, standby, prefer-standby"
                ),
            ));
        };
        if what == "target"
            && matches!(
                attrs,
                SessionAttrs::ReadOnly | SessionAttrs::Standby | SessionAttrs::PreferStandby
            )
        {
            return Err(refuse(
                what,
                format!(
                    "target_session_attrs={t} would pick a server that cannot be written; \
                     the target needs read-write (or primary)"
                ),
            ));
        }
    }
    Ok(())
}

/// The keywords of `service` in libpq's service files: `PGSERVICEFILE` (or
/// `~/.pg_service.conf`) first, then `PGSYSCONFDIR/pg_service.conf` when the first does
/// not define it.
fn service_params(
    service: &str,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let user_file = env("PGSERVICEFILE")
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".pg_service.conf")));
    let sysconf = env("PGSYSCONFDIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| DEFAULT_SYSCONFDIR.to_string());
    let system_file = Path::new(&sysconf).join("pg_service.conf");
    for file in user_file.iter().chain(std::iter::once(&system_file)) {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if let Some(found) = parse_service_file(&text, service, file)? {
            return Ok(found);
        }
    }
    let looked: Vec<String> = user_file
        .iter()
        .chain(std::iter::once(&system_file))
        .map(|f| f.display().to_string())
        .collect();
    Err(format!(
        "the service \"{service}\" is defined in no service file (looked in {})",
        looked.join(" and ")
    ))
}

/// One service file's section for `service`, if it has one.
fn parse_service_file(
    text: &str,
    service: &str,
    file: &Path,
) -> std::result::Result<Option<BTreeMap<String, String>>, String> {
    let mut in_group = false;
    let mut found: Option<BTreeMap<String, String>> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            if in_group {
                break;
            }
            let name = rest.strip_suffix(']').unwrap_or(rest);
            in_group = name == service;
            if in_group {
                found = Some(BTreeMap::new());
            }
            continue;
        }
        if !in_group {
            continue;
        }
        let syntax = || {
            format!(
                "line {} of the service file {} is not key=value",
                n + 1,
                file.display()
            )
        };
        let (key, value) = line.split_once('=').ok_or_else(syntax)?;
        let (key, value) = (key.trim(), value.trim());
        if key == "service" {
            return Err(format!(
                "the service file {} nests a service in \"{service}\" (line {}), which libpq does not allow",
                file.display(),
                n + 1
            ));
        }
        let mut one = BTreeMap::new();
        one.insert(key.to_string(), value.to_string());
        check_keys(&one).map_err(|e| {
            format!(
                "service \"{service}\" in {} (line {}): {e}",
                file.display(),
                n + 1
            )
        })?;
        if let Some(f) = found.as_mut() {
            f.entry(key.to_string())
                .or_insert_with(|| value.to_string());
        }
    }
    Ok(found)
}

fn quote_value(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '\'', '\\', '\t', '\n']) {
        return v.to_string();
    }
    let mut out = String::from("'");
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn parse_key_values(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("\"{key}\" is not followed by \"=\""));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("the value of \"{key}\" has no closing quote")),
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(format!("the value of \"{key}\" ends in a backslash")),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if key.is_empty() {
            return Err("an option has no name".into());
        }
        params.insert(key, value);
    }
    Ok(params)
}

fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a \"%\" escape is not followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape does not decode to UTF-8".to_string())
}

fn parse_uri(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let rest = text
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or("no \"://\" after the scheme")?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let mut params = BTreeMap::new();
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            match userinfo.split_once(':') {
                Some((u, p)) => {
                    params.insert("user".to_string(), percent_decode(u)?);
                    params.insert("password".to_string(), percent_decode(p)?);
                }
                None => {
                    params.insert("user".to_string(), percent_decode(userinfo)?);
                }
            }
            hp
        }
        None => authority,
    };
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for item in hostport.split(',').filter(|i| !i.is_empty()) {
        let (host, port) = if let Some(stripped) = item.strip_prefix('[') {
            let (h, after) = stripped
                .split_once(']')
                .ok_or("an IPv6 address has no closing \"]\"")?;
            (h.to_string(), after.strip_prefix(':').map(str::to_string))
        } else {
            match item.rsplit_once(':') {
                Some((h, p)) => (percent_decode(h)?, Some(p.to_string())),
                None => (percent_decode(item)?, None),
            }
        };
        hosts.push(host);
        ports.push(port);
    }
    if !hosts.is_empty() && hosts.iter().any(|h| !h.is_empty()) {
        params.insert("host".into(), hosts.join(","));
    }
    if ports.iter().any(Option::is_some) {
        let ports: Vec<String> = ports
            .into_iter()
            .map(|p| p.unwrap_or_else(|| "5432".into()))
            .collect();
        params.insert("port".into(), ports.join(","));
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        params.insert("dbname".into(), percent_decode(db)?);
    }
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("query parameter \"{pair}\" has no \"=\""))?;
            params.insert(percent_decode(k)?, percent_decode(v)?);
        }
    }
    Ok(params)
}

/// Whether a password file may be used; like libpq, one that others can read is ignored
/// (and said so, once).
fn passfile_usable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(file) else {
        return false;
    };
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} is readable by others; ignoring it (chmod 0600 it)",
            file.display()
        );
        return false;
    }
    true
}

/// Looks one server up in a libpq password file: a socket in the default directory
/// matches `localhost`, and a server given only by address matches that address.
fn password_from_file(
    file: &Path,
    endpoint: &Endpoint,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let host = endpoint
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .or(endpoint.hostaddr.as_deref())
        .unwrap_or("localhost");
    let host = if host == DEFAULT_SOCKET_DIR {
        "localhost"
    } else {
        host
    };
    let port = endpoint.port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass_line(line);
        if fields.len() < 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(wanted.iter())
            .all(|(f, w)| f == "*" || f == w)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut().expect("never empty").push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut().expect("never empty").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn uri_with_everything() {
        let c = ConnInfo::parse_with_env(
            "postgresql://al%40ice:p%3Ass@db.example.com:6543/my%20db?sslmode=require&application_name=x",
            "source",
            &no_env,
        )
        .unwrap();
        assert_eq!(c.user(), "al@ice");
        assert_eq!(c.password(), Some("p:ss"));
        assert_eq!(c.get("host"), Some("db.example.com"));
        assert_eq!(c.get("port"), Some("6543"));
        assert_eq!(c.dbname(), "my db");
        assert_eq!(c.ssl_mode(), SslMode::Require);
        assert!(!c.redacted().contains("p:ss"));
        assert!(!format!("{c} {c:?}").contains("p:ss"));
    }

    #[test]
    fn key_values_with_quotes_and_env_defaults() {
        let env = |k: &str| match k {
            "PGPORT" => Some("5555".to_string()),
            "PGUSER" => Some("bob".to_string()),
            _ => None,
        };
        let c = ConnInfo::parse_with_env(
            "host=/tmp/sock dbname='my \\'db' password = 'se cret'",
            "target",
            &env,
        )
        .unwrap();
        assert_eq!(c.dbname(), "my 'db");
        assert_eq!(c.get("port"), Some("5555"));
        assert_eq!(c.user(), "bob");
        assert_eq!(c.password(), Some("se cret"));
        let s = c.libpq_string("tsxfer");
        assert!(!s.contains("se cret"));
        assert!(s.contains("dbname='my \\'db'"));
        assert!(s.contains("application_name=tsxfer"));
    }

    #[test]
    fn malformed_strings_are_refused_without_echoing_secrets() {
        for bad in [
            "host=x port=abc user=u",
            "host=x nonsense user=u",
            "host=x password='unterminated",
            "host=x frobnicate=1 user=u",
            "postgresql://u:pw@h:notaport/db",
        ] {
            let e = ConnInfo::parse_with_env(bad, "source", &no_env).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad}");
            assert!(!e.to_string().contains("unterminated"), "{e}");
        }
    }

    #[test]
    fn pgpass_lines_with_escapes() {
        assert_eq!(
            split_pgpass_line("h:5432:db:u:pa\\:ss:word"),
            vec!["h", "5432", "db", "u", "pa:ss:word"]
        );
    }

    #[test]
    fn service_sections_as_libpq_reads_them() {
        let text = "# comment\n[a]\nport=1\n\n[b]\n  host = h.example\nport=2\n[c]\nport=3\n";
        let file = Path::new("/x/pg_service.conf");
        let b = parse_service_file(text, "b", file).unwrap().unwrap();
        assert_eq!(b.get("host").map(String::as_str), Some("h.example"));
        assert_eq!(b.get("port").map(String::as_str), Some("2"));
        assert!(parse_service_file(text, "zz", file).unwrap().is_none());
        let nested = parse_service_file("[b]\nservice=a\n", "b", file).unwrap_err();
        assert!(nested.contains("nests"), "{nested}");
        let unknown = parse_service_file("[b]\nfrobnicate=1\n", "b", file).unwrap_err();
        assert!(unknown.contains("frobnicate"), "{unknown}");
    }

    #[test]
    fn several_hosts_pair_with_ports_as_in_libpq() {
        let c =
            ConnInfo::parse_with_env("postgresql://u@a:1,[::1]:2,c/db", "source", &no_env).unwrap();
        let eps = c.endpoints();
        assert_eq!(eps.len(), 3);
        assert_eq!((eps[0].host.as_deref(), eps[0].port), (Some("a"), 1));
        assert_eq!((eps[1].host.as_deref(), eps[1].port), (Some("::1"), 2));
        assert_eq!((eps[2].host.as_deref(), eps[2].port), (Some("c"), 5432));
        let one_port = ConnInfo::parse_with_env("host=a,b port=7 user=u", "source", &no_env)
            .unwrap()
            .endpoints();
        assert!(one_port.iter().all(|e| e.port == 7));
        for bad in [
            "host=a,b port=1,2,3 user=u",
            "host=a,b hostaddr=1.2.3.4 user=u",
        ] {
            let e = ConnInfo::parse_with_env(bad, "source", &no_env).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad}");
        }
        let t = ConnInfo::parse_with_env("host=a user=u", "target", &no_env).unwrap();
        assert_eq!(t.session_attrs(), SessionAttrs::ReadWrite);
        let e = ConnInfo::parse_with_env(
            "host=a user=u target_session_attrs=standby",
            "target",
            &no_env,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
    }

    #[test]
    fn child_strings_hold_no_secrets_and_the_settings_made_explicit() {
        let c = ConnInfo::parse_with_env(
            "host=a user=u password=pw sslpassword=kp passfile=/p",
            "target",
            &no_env,
        )
        .unwrap();
        let s = c.libpq_string("tsxfer pg_restore");
        for secret in ["=pw", "=kp", "passfile", "sslpassword"] {
            assert!(!s.contains(secret), "{secret}: {s}");
        }
        for wanted in [
            "sslmode=prefer",
            "gssencmode=disable",
            "target_session_attrs=read-write",
            "keepalives_idle=60",
        ] {
            assert!(s.contains(wanted), "{wanted}: {s}");
        }
        let env = c.child_env().unwrap();
        let (var, file) = &env.vars[0];
        assert_eq!(*var, "PGPASSFILE");
        let text = std::fs::read_to_string(file).unwrap();
        assert_eq!(text, "*:*:*:*:pw\n");
        let file = PathBuf::from(file);
        drop(env);
        assert!(!file.exists());
    }

    #[test]
    fn sockets_take_no_tls_so_its_files_are_not_needed() {
        let socket = "host=/tmp user=u sslmode=verify-full sslrootcert=/nonexistent.crt";
        assert!(ConnInfo::parse_with_env(socket, "source", &no_env).is_ok());
        let tcp = "host=db.example user=u sslmode=verify-full sslrootcert=/nonexistent.crt";
        let e = ConnInfo::parse_with_env(tcp, "source", &no_env).unwrap_err();
        assert!(e.to_string().contains("/nonexistent.crt"), "{e}");
    }
}
