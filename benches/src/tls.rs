//! TLS for the bench's clients and the servers `compare` starts.
//!
//! `compare --tls` generates one self-signed certificate for `localhost` and `127.0.0.1` per
//! process ([`TlsFiles::generate`]), starts every server with it (`--tls --tlscert --tlskey`)
//! and makes its clients trust exactly that certificate. `run --tlscacert FILE` trusts the
//! certificates of a PEM file instead ([`trust_pem_file`]). Either way the client
//! configuration is process-wide: [`connect`](crate::connect) uses it for `tls://` URLs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::{BenchError, Result};

/// The generated certificate and its key, in PEM, and the client configuration that trusts
/// it.
#[derive(Debug)]
struct Identity {
    cert_pem: String,
    key_pem: String,
    client: Arc<ClientConfig>,
}

/// The certificate `compare` generates, once per process (every server gets the same one).
static IDENTITY: OnceLock<Identity> = OnceLock::new();
/// What `tls://` connections trust.
static CLIENT: OnceLock<Arc<ClientConfig>> = OnceLock::new();

fn tls_error(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Usage(format!("TLS: {what}: {e}"))
}

/// A client configuration that trusts exactly `certs` (ring, TLS 1.2 and 1.3).
fn client_config(certs: Vec<CertificateDer<'static>>) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| tls_error("not a usable certificate", e))?;
    }
    if roots.is_empty() {
        return Err(BenchError::Usage("TLS: no certificate to trust".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Installs `config` as what `tls://` connections trust; fails if a different trust was
/// installed before (the process's TLS trust is set once).
fn install(config: Arc<ClientConfig>, what: &str) -> Result<()> {
    let _ = CLIENT.set(config.clone());
    match CLIENT.get() {
        Some(c) if Arc::ptr_eq(c, &config) => Ok(()),
        _ => Err(BenchError::Usage(format!(
            "TLS: cannot trust {what}: this process already trusts other certificates"
        ))),
    }
}

/// Makes `tls://` connections trust the certificates (a CA or the server's own) in the PEM
/// file at `path`, for `run` against a TLS server started by hand.
pub fn trust_pem_file(path: &Path) -> Result<()> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| tls_error(&format!("reading {}", path.display()), e))?;
    install(Arc::new(client_config(certs)?), &path.display().to_string())
}

/// The client configuration of `tls://` connections: an error when no trust was installed
/// (`compare --tls` or `run --tlscacert`).
pub(crate) fn client() -> Result<Arc<ClientConfig>> {
    CLIENT.get().cloned().ok_or_else(|| {
        BenchError::Usage(
            "a tls:// URL needs certificates to trust (compare --tls, run --tlscacert)".into(),
        )
    })
}

/// The process's generated certificate, made on first use.
fn identity() -> Result<&'static Identity> {
    if let Some(id) = IDENTITY.get() {
        return Ok(id);
    }
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| tls_error("generating a certificate", e))?;
    let client = Arc::new(client_config(vec![made.cert.der().clone()])?);
    // Another thread may win the race: then its certificate is the one.
    let _ = IDENTITY.set(Identity {
        cert_pem: made.cert.pem(),
        key_pem: made.key_pair.serialize_pem(),
        client,
    });
    IDENTITY
        .get()
        .ok_or_else(|| BenchError::Usage("TLS: no certificate".into()))
}

/// The generated certificate and key written to a temporary directory, for servers'
/// `--tlscert` and `--tlskey`; the directory is removed on drop.
#[derive(Debug)]
pub struct TlsFiles {
    dir: PathBuf,
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Writes the process's certificate (generated on first use, for `localhost` and
    /// `127.0.0.1`) and key to a fresh temporary directory. From then on `tls://`
    /// connections trust that certificate.
    pub fn generate() -> Result<Self> {
        let id = identity()?;
        install(id.client.clone(), "the generated certificate")?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("starling-bench-tls-{}-{n}", std::process::id()));
        let io = |e| BenchError::io(format!("writing TLS files to {}", dir.display()), e);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let files = Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir: dir.clone(),
        };
        std::fs::write(&files.cert, &id.cert_pem).map_err(io)?;
        std::fs::write(&files.key, &id.key_pem).map_err(io)?;
        Ok(files)
    }

    /// nats-server's flags for a client listener with this certificate.
    pub fn server_flags(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            "--tlscert".into(),
            self.cert.display().to_string(),
            "--tlskey".into(),
            self.key.display().to_string(),
        ]
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
