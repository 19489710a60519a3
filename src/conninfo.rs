//! Connection strings as libpq reads them: `postgresql://` URIs and `key=value` strings,
//! completed from `PG*` environment variables and `.pgpass`. The password is kept apart
//! and never printed: [`ConnInfo`]'s `Display` and `redacted()` leave it out.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// Connection keywords tsxfer understands (libpq's names).
const KNOWN_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "options",
    "application_name",
    "connect_timeout",
    "sslmode",
    "sslrootcert",
    "keepalives",
    "keepalives_idle",
    "target_session_attrs",
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
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
];

/// What kind of TLS the connection asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
}

/// A parsed, completed connection string.
#[derive(Clone)]
pub struct ConnInfo {
    params: BTreeMap<String, String>,
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

impl ConnInfo {
    /// Parses `text` (a URI or `key=value` pairs), then fills what it leaves out from
    /// the environment, libpq's defaults and the password file. `what` names the side
    /// ("source", "target") in error messages.
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
        for key in params.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                return Err(bad(what, format!("unknown option \"{key}\"")));
            }
        }
        for (var, key) in ENV_DEFAULTS {
            if !params.contains_key(*key)
                && let Some(v) = env(var).filter(|v| !v.is_empty())
            {
                params.insert((*key).to_string(), v);
            }
        }
        if !params.contains_key("host") && !params.contains_key("hostaddr") {
            params.insert("host".into(), "/var/run/postgresql".into());
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
        let mut info = ConnInfo { params };
        info.validate(what)?;
        if !info.params.contains_key("password") {
            let file = info
                .params
                .get("passfile")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| Path::new(&h).join(".pgpass")));
            if let Some(file) = file
                && let Some(pw) = password_from_file(&file, &info)
            {
                info.params.insert("password".into(), pw);
            }
        }
        Ok(info)
    }

    fn validate(&self, what: &str) -> Result<()> {
        for port in self.get("port").unwrap_or("").split(',') {
            if port.parse::<u16>().is_err() {
                return Err(bad(what, format!("port \"{port}\" is not a number")));
            }
        }
        if let Some(mode) = self.get("sslmode")
            && !matches!(
                mode,
                "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full"
            )
        {
            return Err(bad(
                what,
                format!("sslmode \"{mode}\" is not one libpq knows"),
            ));
        }
        if let Some(t) = self.get("connect_timeout")
            && t.parse::<u64>().is_err()
        {
            return Err(bad(
                what,
                format!("connect_timeout \"{t}\" is not a number"),
            ));
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    pub fn password(&self) -> Option<&str> {
        self.get("password")
    }

    pub fn dbname(&self) -> &str {
        self.get("dbname").unwrap_or("")
    }

    pub fn user(&self) -> &str {
        self.get("user").unwrap_or("")
    }

    pub fn tls_mode(&self) -> TlsMode {
        match self.get("sslmode").unwrap_or("prefer") {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            _ => TlsMode::Require,
        }
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

    /// Every parameter but the password, as a libpq `key=value` string.
    pub fn redacted(&self) -> String {
        self.params
            .iter()
            .filter(|(k, _)| k.as_str() != "password")
            .map(|(k, v)| format!("{k}={}", quote_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The string handed to pg_dump/pg_restore: no password (that goes in `PGPASSWORD`),
    /// and the given application name so the DBA can tell the sessions apart.
    pub fn libpq_string(&self, application_name: &str) -> String {
        let mut s = self.redacted();
        if !self.params.contains_key("application_name") {
            s.push_str(&format!(
                " application_name={}",
                quote_value(application_name)
            ));
        }
        s
    }

    /// A tokio-postgres configuration for this connection.
    pub fn pg_config(&self, application_name: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        for host in self
            .get("host")
            .unwrap_or("")
            .split(',')
            .filter(|h| !h.is_empty())
        {
            if host.starts_with('/') {
                cfg.host_path(host);
            } else {
                cfg.host(host);
            }
        }
        if let Some(addrs) = self.get("hostaddr") {
            for a in addrs.split(',') {
                if let Ok(ip) = a.parse() {
                    cfg.hostaddr(ip);
                }
            }
        }
        for port in self.get("port").unwrap_or("5432").split(',') {
            cfg.port(port.parse().unwrap_or(5432));
        }
        cfg.user(self.user()).dbname(self.dbname());
        if let Some(pw) = self.password() {
            cfg.password(pw);
        }
        if let Some(o) = self.get("options") {
            cfg.options(o);
        }
        cfg.application_name(self.get("application_name").unwrap_or(application_name));
        if let Some(t) = self
            .get("connect_timeout")
            .and_then(|t| t.parse::<u64>().ok())
            && t > 0
        {
            cfg.connect_timeout(std::time::Duration::from_secs(t));
        }
        cfg.ssl_mode(match self.tls_mode() {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            TlsMode::Require => tokio_postgres::config::SslMode::Require,
        });
        cfg
    }
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

/// Looks the connection up in a libpq password file. Like libpq, a file that others
/// can read is ignored.
fn password_from_file(file: &Path, info: &ConnInfo) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} is readable by others; ignoring it (chmod 0600 it)",
            file.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let host = info.get("host").unwrap_or("localhost");
    let host = if host.starts_with('/') || host.is_empty() {
        "localhost"
    } else {
        host
    };
    let wanted = [
        host,
        info.get("port").unwrap_or("5432"),
        info.dbname(),
        info.user(),
    ];
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
        assert_eq!(c.tls_mode(), TlsMode::Require);
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
}
