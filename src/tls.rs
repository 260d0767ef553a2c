//! SIP over TLS (RFC 3261 section 26): our certificate and the CAs we
//! trust, read from PEM files and reloaded on SIGHUP, as the acceptor for
//! the TLS listener and the connector for the connections we open. The
//! driver owns the sockets; this only turns a TCP stream into a TLS one.
//!
//! A reload builds both configurations afresh and swaps them in only when
//! every file reads and parses: a bad file is logged and the certificate in
//! use stays. Connections already up keep the keys they were made with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Config(#[from] rustls::Error),
    #[error("{0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Where the keys come from (`sip.tls_*`).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// Our chain and key: needed to listen, offered to servers that ask.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// The CAs servers must be signed by; None: the system's roots.
    pub ca: Option<PathBuf>,
    /// The CAs clients must be signed by (mutual TLS); None: no client
    /// certificate is asked for.
    pub client_ca: Option<PathBuf>,
    /// The name `next_hop`'s certificate must carry, for that address.
    pub server_name: Option<(SocketAddr, String)>,
}

struct Configs {
    server: Option<Arc<ServerConfig>>,
    client: Arc<ClientConfig>,
}

/// `rtcgw_sip_tls_failures_total{direction, reason}`: TLS connections
/// that did not come up (in: clients of our listener; out: ours).
pub type TlsFailures = Family<Vec<(&'static str, &'static str)>, Counter>;

/// The TLS side of SIP: what the driver accepts and connects with.
pub struct SipTls {
    files: TlsFiles,
    current: RwLock<Arc<Configs>>,
    failures: TlsFailures,
}

impl std::fmt::Debug for SipTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipTls")
            .field("files", &self.files)
            .finish()
    }
}

impl SipTls {
    /// Reads every file once; an error names the file and what is wrong.
    pub fn load(files: TlsFiles, failures: TlsFailures) -> Result<Self, TlsError> {
        let configs = build(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(configs)),
            failures,
        })
    }

    /// Counts a connection that did not come up: `direction` "in" or
    /// "out", `reason` "handshake", "timeout" or "connect".
    pub fn failed(&self, direction: &'static str, reason: &'static str) {
        self.failures
            .get_or_create(&vec![("direction", direction), ("reason", reason)])
            .inc();
    }

    /// Reads the files again (SIGHUP); on error the keys in use stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = build(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(configs);
        Ok(())
    }

    fn configs(&self) -> Arc<Configs> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// For an accepted connection (None without a certificate: no
    /// listener then).
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.configs().server.clone().map(TlsAcceptor::from)
    }

    /// Opens TLS on a connection we made to `addr`: its certificate must
    /// name `sip.tls_server_name` (for `next_hop`) or its IP address.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = match &self.files.server_name {
            Some((a, n)) if *a == addr => ServerName::try_from(n.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            _ => ServerName::IpAddress(addr.ip().into()),
        };
        TlsConnector::from(self.configs().client.clone())
            .connect(name, tcp)
            .await
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(files: &TlsFiles) -> Result<Configs, TlsError> {
    let chain_and_key = match &files.cert {
        Some((cert, key)) => {
            let (chain, der) = (certs(cert, "sip.tls_cert")?, private_key(key)?);
            // A key rustls cannot use, or one of another certificate, is
            // said here with its file name, not at the first handshake.
            rustls::sign::CertifiedKey::from_der(chain.clone(), der.clone_key(), &provider())
                .map_err(|e| file_error("sip.tls_key", key, e))?;
            Some((chain, der))
        }
        None => None,
    };
    let server = match &chain_and_key {
        None => None,
        Some((chain, key)) => {
            let builder = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?;
            let builder = match &files.client_ca {
                Some(path) => builder.with_client_cert_verifier(
                    WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots(path, "sip.tls_client_ca")?),
                        provider(),
                    )
                    .build()?,
                ),
                None => builder.with_no_client_auth(),
            };
            Some(Arc::new(
                builder.with_single_cert(chain.clone(), key.clone_key())?,
            ))
        }
    };
    let roots = match &files.ca {
        Some(path) => roots(path, "sip.tls_ca")?,
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let client = match chain_and_key {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Configs {
        server,
        client: Arc::new(client),
    })
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("sip.tls_key", path, e))
}

fn roots(path: &Path, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(path, what)? {
        store
            .add(c)
            .map_err(|e| file_error(what, path, format!("not a CA certificate: {e}")))?;
    }
    Ok(store)
}

/// The system's CA certificates (what a trunk's public certificate is
/// signed by); unreadable ones are logged and skipped.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!("system CA certificates: {e}");
    }
    let mut store = RootCertStore::empty();
    let (_, skipped) = store.add_parsable_certificates(found.certs);
    if skipped > 0 {
        tracing::debug!(skipped, "system CA certificates that did not parse");
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("rtcgw-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let load_err = |f: TlsFiles| {
            SipTls::load(f, TlsFailures::default())
                .unwrap_err()
                .to_string()
        };
        let e = load_err(TlsFiles {
            cert: Some((dir.join("absent.pem"), garbage.clone())),
            ..TlsFiles::default()
        });
        assert!(
            e.starts_with("sip.tls_cert ") && e.contains("absent.pem"),
            "{e}"
        );
        let e = load_err(TlsFiles {
            ca: Some(garbage.clone()),
            ..TlsFiles::default()
        });
        assert!(
            e.contains("sip.tls_ca") && e.contains("no PEM certificate"),
            "{e}"
        );
        // Without any file: a client that trusts the system's roots.
        let tls = SipTls::load(TlsFiles::default(), TlsFailures::default()).unwrap();
        assert!(tls.acceptor().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
