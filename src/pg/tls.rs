//! TLS as libpq does it: `sslmode` decides whether to encrypt and how much of the server's
//! certificate to check; `sslrootcert` (default `~/.postgresql/root.crt`, or `system`)
//! says whom to trust; `sslcert`/`sslkey` (default `~/.postgresql/postgresql.crt`/`.key`)
//! are the client's own certificate. The checks are done here, by one verifier that does
//! exactly what was asked: nothing (encrypted only), the chain (`verify-ca`, or any mode
//! with a root certificate file present), or the chain and the host name (`verify-full`).
//! Every refusal is explained in a sentence that names the setting that fixes it.
//!
//! One file because the modes, the file lookups and the verifier are one set of rules
//! that must agree with each other (a third of it is their tests).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_cert::Certificate;
use x509_cert::der::Decode;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted roots come from.
#[derive(Debug, Clone)]
pub enum Roots {
    /// No root certificate file: `missing` is the file libpq looked for.
    None {
        missing: Option<PathBuf>,
    },
    File(PathBuf),
    /// `sslrootcert=system`: the system's trusted roots.
    System,
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::None { .. } => f.write_str("no root certificates"),
            Roots::File(p) => write!(f, "sslrootcert {}", p.display()),
            Roots::System => f.write_str("the system's trusted roots (sslrootcert=system)"),
        }
    }
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Encrypted, not verified (`allow`, `prefer`, `require` without a root file).
    Nothing,
    /// Signed by a trusted root (or the pinned certificate itself), not expired.
    Chain,
    /// [`Check::Chain`], and issued for the host connected to.
    ChainAndName,
}

/// The client's own certificate and key.
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The key as unencrypted PKCS#8 PEM when its file is encrypted (`sslpassword`), so
    /// pg_dump and pg_restore can be handed it in a private file instead of the passphrase
    /// on their command line.
    pub decrypted_pem: Option<pkcs8::der::zeroize::Zeroizing<String>>,
}

/// One side's TLS settings, loaded once when the connection string is read.
pub struct TlsSettings {
    pub mode: SslMode,
    pub roots: Roots,
    store: Arc<RootCertStore>,
    /// Every certificate of the root file: a self-signed server certificate given as
    /// `sslrootcert` is trusted as itself (OpenSSL does; webpki would not).
    pinned: Arc<Vec<CertificateDer<'static>>>,
    pub client: Option<ClientIdentity>,
    sni: bool,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TlsSettings(sslmode={}, {}, client certificate: {})",
            self.mode.name(),
            self.roots,
            self.client.is_some()
        )
    }
}

/// Where the settings come from, already resolved from the connection string, service
/// file and environment (no defaults applied yet).
pub struct TlsInput<'a> {
    pub sslmode: Option<&'a str>,
    pub sslrootcert: Option<&'a str>,
    pub sslcert: Option<&'a str>,
    pub sslkey: Option<&'a str>,
    pub sslpassword: Option<&'a str>,
    pub sslsni: bool,
    pub home: Option<&'a Path>,
}

impl TlsSettings {
    /// Applies libpq's defaults and loads the files. `Err` is one sentence.
    pub fn load(input: &TlsInput<'_>) -> Result<TlsSettings, String> {
        let system = input.sslrootcert == Some("system");
        let mode = match input.sslmode {
            Some(m) => SslMode::parse(m)
                .ok_or_else(|| format!("sslmode \"{m}\" is not one libpq knows"))?,
            None if system => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if system && mode != SslMode::VerifyFull {
            return Err(format!(
                "sslrootcert=system trusts every authority the system trusts, so it needs \
                 sslmode=verify-full (not \"{}\")",
                mode.name()
            ));
        }
        let postgresql_dir = input.home.map(|h| h.join(".postgresql"));
        let roots = if system {
            Roots::System
        } else {
            let file = match input.sslrootcert {
                Some(f) if !f.is_empty() => Some(PathBuf::from(f)),
                _ => postgresql_dir.as_ref().map(|d| d.join("root.crt")),
            };
            match file {
                Some(f) if f.exists() => Roots::File(f),
                missing => Roots::None { missing },
            }
        };
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull)
            && let Roots::None { missing } = &roots
        {
            let file = missing
                .as_ref()
                .map(|m| format!(" \"{}\"", m.display()))
                .unwrap_or_default();
            return Err(format!(
                "sslmode={} needs a root certificate file, and{file} does not exist: give the \
                 file of the certificate authority (or the server's own self-signed \
                 certificate) as sslrootcert=FILE, use sslrootcert=system for the system's \
                 trusted roots, or use sslmode=require to encrypt without verifying",
                mode.name()
            ));
        }
        let mut store = RootCertStore::empty();
        let mut pinned = Vec::new();
        match &roots {
            Roots::File(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert
                        .map_err(|e| format!("sslrootcert {} is not PEM: {e}", path.display()))?;
                    // A certificate webpki cannot use as an anchor (an old v1 one, say)
                    // can still be pinned.
                    let _ = store.add(cert.clone());
                    pinned.push(cert);
                }
                if pinned.is_empty() {
                    return Err(format!(
                        "sslrootcert {} holds no PEM certificate",
                        path.display()
                    ));
                }
            }
            Roots::System => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = store.add(cert);
                }
                if store.is_empty() {
                    return Err("sslrootcert=system, but the system has no trusted roots \
                                (install the ca-certificates package)"
                        .into());
                }
            }
            Roots::None { .. } => {}
        }
        let client = if mode == SslMode::Disable {
            None
        } else {
            load_identity(input, postgresql_dir.as_deref())?
        };
        let settings = TlsSettings {
            mode,
            roots,
            store: Arc::new(store),
            pinned: Arc::new(pinned),
            client,
            sni: input.sslsni,
        };
        if mode != SslMode::Disable {
            settings.connector(Check::Nothing, "localhost")?;
        }
        Ok(settings)
    }

    /// What `mode` checks, given the roots found (libpq checks the chain in every mode
    /// once a root certificate file exists).
    pub fn check(&self) -> Check {
        match (self.mode, &self.roots) {
            (SslMode::VerifyFull, _) => Check::ChainAndName,
            (SslMode::VerifyCa, _) => Check::Chain,
            (_, Roots::None { .. }) => Check::Nothing,
            _ => Check::Chain,
        }
    }

    /// A connector for one attempt on `host` (the name checked by `verify-full`), and
    /// the slot where its verifier says what it found.
    pub fn connector(
        &self,
        check: Check,
        host: &str,
    ) -> Result<(tokio_postgres_rustls::MakeRustlsConnect, Outcome), String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let outcome = Outcome::default();
        let verifier = Arc::new(Verifier {
            check,
            host: host.to_string(),
            store: self.store.clone(),
            pinned: self.pinned.clone(),
            roots: self.roots.clone(),
            provider: provider.clone(),
            outcome: outcome.clone(),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up failed: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.client {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| {
                    format!(
                        "the client certificate {} and key {} cannot be used: {e}",
                        id.cert_file.display(),
                        id.key_file.display()
                    )
                })?,
            None => builder.with_no_client_auth(),
        };
        // Every connection's certificate goes through the verifier, none is resumed.
        config.resumption = rustls::client::Resumption::disabled();
        config.enable_sni = self.sni;
        Ok((
            tokio_postgres_rustls::MakeRustlsConnect::new(config),
            outcome,
        ))
    }
}

/// Loads `sslcert`/`sslkey` as libpq does: a missing certificate file means no client
/// certificate; a present one needs its key, which others may not read.
fn load_identity(
    input: &TlsInput<'_>,
    postgresql_dir: Option<&Path>,
) -> Result<Option<ClientIdentity>, String> {
    let cert_file = match input.sslcert {
        Some(f) if !f.is_empty() => PathBuf::from(f),
        _ => match postgresql_dir {
            Some(d) => d.join("postgresql.crt"),
            None => return Ok(None),
        },
    };
    if !cert_file.exists() {
        return Ok(None);
    }
    let key_file = match input.sslkey {
        Some(f) if !f.is_empty() => PathBuf::from(f),
        _ => match postgresql_dir {
            Some(d) => d.join("postgresql.key"),
            None => cert_file.with_extension("key"),
        },
    };
    let pem = std::fs::read(&cert_file).map_err(|e| {
        format!(
            "cannot read the client certificate sslcert {}: {e}",
            cert_file.display()
        )
    })?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslcert {} is not PEM: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "sslcert {} holds no PEM certificate",
            cert_file.display()
        ));
    }
    key_permissions_ok(&key_file)?;
    let text = std::fs::read(&key_file).map_err(|e| {
        format!(
            "the client certificate {} is there, but its key sslkey {} cannot be read: {e}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    let (key, decrypted_pem) = parse_key(&text, &key_file, input.sslpassword)?;
    Ok(Some(ClientIdentity {
        cert_file,
        key_file,
        chain,
        key,
        decrypted_pem,
    }))
}

type ParsedKey = (
    PrivateKeyDer<'static>,
    Option<pkcs8::der::zeroize::Zeroizing<String>>,
);

fn parse_key(text: &[u8], file: &Path, password: Option<&str>) -> Result<ParsedKey, String> {
    let shown = file.display();
    let as_str = String::from_utf8_lossy(text);
    if as_str.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            return Err(format!(
                "the private key sslkey {shown} is encrypted: give its passphrase as sslpassword"
            ));
        };
        let (_, doc) = pkcs8::der::Document::from_pem(as_str.trim())
            .map_err(|e| format!("the private key sslkey {shown} is not PEM: {e}"))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| format!("the private key sslkey {shown} cannot be read: {e}"))?;
        let plain = info.decrypt(password).map_err(|_| {
            format!("the private key sslkey {shown} cannot be decrypted with the sslpassword given")
        })?;
        let pem = plain
            .to_pem("PRIVATE KEY", pkcs8::LineEnding::LF)
            .map_err(|e| format!("the private key sslkey {shown} cannot be re-encoded: {e}"))?;
        let key = PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into());
        return Ok((key, Some(pem)));
    }
    if as_str.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(format!(
            "the private key sslkey {shown} uses OpenSSL's old PEM encryption, which tsxfer \
             cannot read: convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD -out NEW`"
        ));
    }
    match rustls_pemfile::private_key(&mut &text[..]) {
        Ok(Some(key)) => Ok((key, None)),
        Ok(None) => Err(format!("sslkey {shown} holds no PEM private key")),
        Err(e) => Err(format!("sslkey {shown} is not PEM: {e}")),
    }
}

/// libpq's rule for a private key file: owned by us with no access for group or others,
/// or owned by root with at most read access for the group.
fn key_permissions_ok(file: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(file) else {
        return Ok(());
    };
    let me = effective_uid();
    let mode = meta.mode();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "the private key sslkey {} must be owned by the current user or root",
            file.display()
        ));
    }
    let too_open = if meta.uid() == me {
        mode & 0o077 != 0
    } else {
        mode & 0o037 != 0
    };
    if too_open {
        return Err(format!(
            "the private key sslkey {} can be read by others (mode {:o}); like libpq, tsxfer \
             refuses it: chmod 0600 it (or 0640 if root owns it)",
            file.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

/// The effective user id, read from `/proc` (no `unsafe` libc call needed).
fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// A file holding the system's trusted roots, for pg_dump/pg_restore given
/// `sslrootcert=system` (libpq before 16 reads that word as a file name).
pub fn system_roots_file() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from)
        && f.exists()
    {
        return Some(f);
    }
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// What one attempt's verifier found.
#[derive(Debug, Clone, Default)]
pub struct Outcome(Arc<Mutex<Option<Found>>>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The certificate was accepted without being checked.
    Unverified,
    Verified,
    /// Refused, with the sentence saying why and what to change.
    Refused(String),
}

impl Outcome {
    pub fn get(&self) -> Option<Found> {
        self.0.lock().map(|g| g.clone()).unwrap_or(None)
    }

    fn set(&self, found: Found) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(found);
        }
    }
}

#[derive(Debug)]
struct Verifier {
    check: Check,
    host: String,
    store: Arc<RootCertStore>,
    pinned: Arc<Vec<CertificateDer<'static>>>,
    roots: Roots,
    provider: Arc<CryptoProvider>,
    outcome: Outcome,
}

impl Verifier {
    fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), (CertificateError, String)> {
        let parsed = Certificate::from_der(leaf.as_ref()).map_err(|e| {
            (
                CertificateError::BadEncoding,
                format!("the server's certificate cannot be read: {e}"),
            )
        })?;
        let tbs = &parsed.tbs_certificate;
        if self.pinned.iter().any(|p| p.as_ref() == leaf.as_ref()) {
            let not_before = tbs.validity.not_before.to_unix_duration().as_secs();
            let not_after = tbs.validity.not_after.to_unix_duration().as_secs();
            if now.as_secs() > not_after {
                return Err((CertificateError::Expired, expired(&parsed)));
            }
            if now.as_secs() < not_before {
                return Err((CertificateError::NotValidYet, not_yet(&parsed)));
            }
        } else {
            let ee = rustls::server::ParsedCertificate::try_from(leaf).map_err(|e| {
                (
                    CertificateError::BadEncoding,
                    format!("the server's certificate cannot be read: {e}"),
                )
            })?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &ee,
                &self.store,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )
            .map_err(|e| self.explain(e, &parsed))?;
        }
        if self.check == Check::ChainAndName {
            name_matches(&parsed, &self.host).map_err(|names| {
                (
                    CertificateError::NotValidForName,
                    format!(
                        "the server's certificate is for {}, not for host \"{}\": connect \
                         with one of those names as host, or use sslmode=verify-ca to check \
                         the certificate without the host name",
                        if names.is_empty() {
                            "no host name".to_string()
                        } else {
                            names
                                .iter()
                                .map(|n| format!("\"{n}\""))
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                        self.host
                    ),
                )
            })?;
        }
        Ok(())
    }

    fn explain(&self, err: rustls::Error, cert: &Certificate) -> (CertificateError, String) {
        let tbs = &cert.tbs_certificate;
        let kind = match err {
            rustls::Error::InvalidCertificate(k) => k,
            other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
        };
        let sentence = match &kind {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => expired(cert),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                not_yet(cert)
            }
            _ if tbs.issuer == tbs.subject => {
                format!(
                    "the server's certificate is self-signed (\"{}\") and is not in {}: to \
                     trust it, give a copy of it (the server's ssl_cert_file) as \
                     sslrootcert=FILE, or use sslmode=require to encrypt without verifying",
                    tbs.subject, self.roots
                )
            }
            CertificateError::UnknownIssuer => format!(
                "the server's certificate was issued by \"{}\", which is not in {}: give that \
                 authority's certificate as sslrootcert=FILE, or use sslmode=require to \
                 encrypt without verifying",
                tbs.issuer, self.roots
            ),
            CertificateError::Revoked => "the server's certificate has been revoked".into(),
            other => format!(
                "the server's certificate (\"{}\", issued by \"{}\") was refused: {other:?}; \
                 sslmode=require encrypts without verifying",
                tbs.subject, tbs.issuer
            ),
        };
        (kind, sentence)
    }
}

fn expired(cert: &Certificate) -> String {
    format!(
        "the server's certificate expired on {}: the server needs a new one (ssl_cert_file), \
         or use sslmode=require to encrypt without verifying",
        cert.tbs_certificate.validity.not_after
    )
}

fn not_yet(cert: &Certificate) -> String {
    format!(
        "the server's certificate is not valid before {} (check this machine's clock), or \
         use sslmode=require to encrypt without verifying",
        cert.tbs_certificate.validity.not_before
    )
}

/// libpq's host name check: the subjectAltName entries of the host's kind (DNS name or
/// IP address); the Common Name only when there is none of that kind. A leading `*.`
/// matches one label. Returns the names seen when none matches.
pub fn name_matches(cert: &Certificate, host: &str) -> Result<(), Vec<String>> {
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let host_ip: Option<IpAddr> = host.parse().ok();
    let mut names = Vec::new();
    let mut same_kind = false;
    let tbs = &cert.tbs_certificate;
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id != const_oid_san() {
            continue;
        }
        let Ok(san) = SubjectAltName::from_der(ext.extn_value.as_bytes()) else {
            continue;
        };
        for name in san.0 {
            match name {
                GeneralName::DnsName(d) => {
                    let d = d.as_str().to_string();
                    if host_ip.is_none() {
                        same_kind = true;
                        if dns_name_matches(&d, host) {
                            return Ok(());
                        }
                    }
                    names.push(d);
                }
                GeneralName::IpAddress(o) => {
                    let ip = match o.as_bytes().len() {
                        4 => <[u8; 4]>::try_from(o.as_bytes()).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(o.as_bytes()).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        if host_ip.is_some() {
                            same_kind = true;
                            if Some(ip) == host_ip {
                                return Ok(());
                            }
                        }
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if !same_kind {
        for cn in common_names(cert) {
            if dns_name_matches(&cn, host) {
                return Ok(());
            }
            names.push(cn);
        }
    }
    Err(names)
}

fn const_oid_san() -> x509_cert::der::oid::ObjectIdentifier {
    x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME
}

fn common_names(cert: &Certificate) -> Vec<String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
    let mut out = Vec::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid != x509_cert::der::oid::db::rfc4519::CN {
                continue;
            }
            let v = &atv.value;
            let s = v
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    v.decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .or_else(|_| {
                    v.decode_as::<Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .or_else(|_| {
                    v.decode_as::<TeletexStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                });
            if let Ok(s) = s {
                out.push(s);
            }
        }
    }
    out
}

/// Case-insensitive; `*.example.com` matches `db.example.com`, not `example.com` nor
/// `a.b.example.com`.
fn dns_name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return match host.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest == suffix,
            None => false,
        };
    }
    pattern == host
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::Nothing {
            self.outcome.set(Found::Unverified);
            return Ok(ServerCertVerified::assertion());
        }
        match self.verify(end_entity, intermediates, now) {
            Ok(()) => {
                self.outcome.set(Found::Verified);
                Ok(ServerCertVerified::assertion())
            }
            Err((kind, sentence)) => {
                self.outcome.set(Found::Refused(sentence));
                Err(rustls::Error::InvalidCertificate(kind))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_label() {
        assert!(dns_name_matches("*.example.com", "DB.example.com"));
        assert!(!dns_name_matches("*.example.com", "example.com"));
        assert!(!dns_name_matches("*.example.com", "a.b.example.com"));
        assert!(dns_name_matches("db.example.com", "db.EXAMPLE.com"));
    }

    #[test]
    fn verifying_modes_need_a_root_file() {
        let input = |mode| TlsInput {
            sslmode: Some(mode),
            sslrootcert: Some("/nonexistent/root.crt"),
            sslcert: None,
            sslkey: None,
            sslpassword: None,
            sslsni: true,
            home: None,
        };
        for mode in ["verify-ca", "verify-full"] {
            let e = TlsSettings::load(&input(mode)).unwrap_err();
            assert!(e.contains("/nonexistent/root.crt"), "{e}");
        }
        let s = TlsSettings::load(&input("require")).unwrap();
        assert_eq!(s.check(), Check::Nothing);
        let weak = TlsInput {
            sslrootcert: Some("system"),
            ..input("require")
        };
        assert!(
            TlsSettings::load(&weak)
                .unwrap_err()
                .contains("verify-full")
        );
    }
}
