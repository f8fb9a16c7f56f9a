//! TLS with rustls and its ring provider: the configuration embedders (and the config file's
//! `tls {}` block) give, the acceptor built from it, rebuilt from the files on reload, and what
//! a finished handshake tells monitoring.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CipherSuite, ClientConfig, NamedGroup, RootCertStore, ServerConfig, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::Stream;

/// nats-server's `DEFAULT_TLS_TIMEOUT`: how long a TLS handshake may take.
pub const DEFAULT_TLS_TIMEOUT: Duration = Duration::from_secs(2);
/// nats-server's `DEFAULT_TLS_HANDSHAKE_FIRST_FALLBACK_DELAY` (`handshake_first: auto`).
pub const DEFAULT_HANDSHAKE_FIRST_FALLBACK: Duration = Duration::from_millis(50);

/// When the TLS handshake happens relative to the server's INFO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeFirst {
    /// INFO in plaintext first, then the client upgrades (nats-server's default).
    #[default]
    Off,
    /// The handshake before anything else; INFO follows inside TLS (`handshake_first: true`).
    On,
    /// Wait this long for the client to start a handshake; if it sends nothing, send the
    /// plaintext INFO and upgrade as usual (`handshake_first: auto` or a duration).
    Fallback(Duration),
}

/// The lowest TLS version accepted (`min_version`; TLS 1.2 when not given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2.
    #[default]
    V1_2,
    /// TLS 1.3.
    V1_3,
}

impl std::str::FromStr for TlsVersion {
    type Err = TlsError;

    /// `"1.2"` or `"1.3"`, as nats-server's `min_version` takes them.
    fn from_str(s: &str) -> Result<Self, TlsError> {
        match s.trim() {
            "1.2" => Ok(Self::V1_2),
            "1.3" => Ok(Self::V1_3),
            other => Err(TlsError::Version(other.to_string())),
        }
    }
}

/// A listener's TLS settings: nats-server's `tls { cert_file key_file ca_file verify timeout
/// handshake_first min_version cipher_suites curve_preferences }`.
///
/// ```no_run
/// # async fn run() -> Result<(), starling_server::StartError> {
/// use starling_server::{Server, TlsConfig};
///
/// let server = Server::builder()
///     .listen("0.0.0.0:4222")
///     .tls(TlsConfig::new("server-cert.pem", "server-key.pem").ca_file("ca.pem").verify(true))
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    ca_file: Option<PathBuf>,
    verify: bool,
    timeout: Duration,
    handshake_first: HandshakeFirst,
    min_version: TlsVersion,
    cipher_suites: Vec<String>,
    curve_preferences: Vec<String>,
    verify_and_map: bool,
    /// Hex SHA-256 digests of the public keys peers must present (empty: any).
    pinned_certs: Vec<String>,
}

impl TlsConfig {
    /// The server's certificate chain and private key, PEM files (`cert_file`, `key_file`).
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            ca_file: None,
            verify: false,
            timeout: DEFAULT_TLS_TIMEOUT,
            handshake_first: HandshakeFirst::Off,
            min_version: TlsVersion::V1_2,
            cipher_suites: Vec::new(),
            curve_preferences: Vec::new(),
            verify_and_map: false,
            pinned_certs: Vec::new(),
        }
    }

    /// The CA certificates (PEM) client certificates are verified against (`ca_file`).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Requires every client to present a certificate signed by the `ca_file` CAs (`verify`;
    /// INFO then says `tls_verify`).
    pub fn verify(mut self, yes: bool) -> Self {
        self.verify = yes;
        self
    }

    /// How long a handshake may take (`timeout`, default 2 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// When the handshake happens relative to INFO (`handshake_first`).
    pub fn handshake_first(mut self, mode: HandshakeFirst) -> Self {
        self.handshake_first = mode;
        self
    }

    /// The lowest TLS version accepted (`min_version`).
    pub fn min_version(mut self, v: TlsVersion) -> Self {
        self.min_version = v;
        self
    }

    /// TLS 1.2 cipher suites to offer, by Go's names (`cipher_suites`; default: all of
    /// rustls's). TLS 1.3 suites are always on, as in Go. Names rustls does not implement
    /// (CBC, RSA key exchange, RC4, 3DES) are refused when the server starts.
    pub fn cipher_suites<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.cipher_suites = names.into_iter().map(Into::into).collect();
        self
    }

    /// Key-exchange groups in order of preference, by Go's names (`curve_preferences`:
    /// `X25519`, `CurveP256`, `CurveP384`). `CurveP521` is refused: rustls has no P-521.
    pub fn curve_preferences<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Self {
        self.curve_preferences = names.into_iter().map(Into::into).collect();
        self
    }

    /// Requires a verified client certificate, as [`Self::verify`] does, and makes it the
    /// client's credentials (`verify_and_map`): the certificate's email, DNS and URI names,
    /// then its subject as a distinguished name, are looked up among the configured users
    /// (whose passwords are then not asked for), as nats-server maps them.
    pub fn verify_and_map(mut self, yes: bool) -> Self {
        self.verify_and_map = yes;
        self
    }

    /// Accepts only peers whose certificate's public key is one of these (`pinned_certs`: the
    /// hex SHA-256 of the certificate's SubjectPublicKeyInfo, as `openssl x509 -noout -pubkey
    /// | openssl pkey -pubin -outform der | sha256sum` prints it). Others fail the handshake.
    pub fn pinned_certs<S: AsRef<str>>(mut self, digests: impl IntoIterator<Item = S>) -> Self {
        self.pinned_certs = digests
            .into_iter()
            .map(|d| d.as_ref().trim().to_ascii_lowercase())
            .collect();
        self
    }

    /// The [`Self::pinned_certs`] digest of the first certificate in a PEM file.
    pub fn pin_of(cert_file: impl AsRef<Path>) -> Result<String, TlsError> {
        let path = cert_file.as_ref();
        let certs = read_certs(path)?;
        certs
            .first()
            .and_then(|c| super::cert::spki_sha256(c))
            .ok_or_else(|| TlsError::Read {
                what: "certificate",
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidData, "not an X.509 certificate"),
            })
    }

    /// Whether clients must present a verified certificate.
    pub fn verifies_clients(&self) -> bool {
        self.verify || self.verify_and_map
    }

    /// Whether client certificates map to users (`verify_and_map`).
    pub fn maps_clients(&self) -> bool {
        self.verify_and_map
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.timeout
    }

    /// When the handshake happens relative to INFO.
    pub fn handshake_first_mode(&self) -> HandshakeFirst {
        self.handshake_first
    }

    /// Checks the settings and reads the files, as the server does when it starts.
    pub fn check(&self) -> Result<(), TlsError> {
        server_config(self).map(drop)
    }

    /// Checks the cipher suite and curve names only, without reading any file.
    pub fn check_names(&self) -> Result<(), TlsError> {
        provider(self).map(drop)
    }
}

/// Why a TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA file could not be read.
    #[error("error reading {what} {path:?}: {source}")]
    Read {
        /// `certificate`, `private key` or `CA file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS or the PEM reader said.
        source: io::Error,
    },
    /// The certificate and key do not form a usable pair.
    #[error("error parsing X509 certificate/key pair: {0}")]
    KeyPair(String),
    /// `verify` without a `ca_file` to verify against.
    #[error("'verify' requires a 'ca_file' with the CAs client certificates are checked against")]
    VerifyWithoutCa,
    /// The CA file holds no usable certificate.
    #[error("failed to parse root ca certificate in {0:?}")]
    CaFile(PathBuf),
    /// A cipher suite name that is not one of Go's.
    #[error("unrecognized cipher {0}")]
    UnknownCipher(String),
    /// A cipher suite rustls does not implement (it has only ECDHE AEAD suites).
    #[error("cipher suite {0} is not supported: only ECDHE suites with AES-GCM or ChaCha20-Poly1305 are")]
    UnsupportedCipher(String),
    /// A curve name that is not one of Go's.
    #[error("unrecognized curve preference {0}")]
    UnknownCurve(String),
    /// A curve rustls's ring provider does not implement.
    #[error("curve preference {0} is not supported: X25519, CurveP256 and CurveP384 are")]
    UnsupportedCurve(String),
    /// A `min_version` other than 1.2 or 1.3.
    #[error("unsupported TLS version: {0}")]
    Version(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// A listener's TLS: its settings and the rustls configuration built from them, swapped whole
/// when certificates are reloaded (handshakes in flight keep the one they started with).
pub(crate) struct Tls {
    /// Replaced with the files by a reload.
    config: arc_swap::ArcSwap<TlsConfig>,
    /// What this listener makes of the configured settings (routes force verification, the
    /// monitor asks for no client certificates).
    derive: fn(TlsConfig) -> TlsConfig,
    server: RwLock<Arc<ServerConfig>>,
    /// For routes, which dial too: the client side, presenting the same certificate.
    client: Option<RwLock<Arc<ClientConfig>>>,
}

impl Tls {
    pub(crate) fn new(config: TlsConfig) -> Result<Self, TlsError> {
        Self::derived(config, |c| c, false)
    }

    /// TLS for the HTTPS monitor, as nats-server does it: the client listener's certificate,
    /// and no client certificates asked for.
    #[cfg(feature = "monitor")]
    pub(crate) fn for_monitor(config: TlsConfig) -> Result<Self, TlsError> {
        fn monitor(config: TlsConfig) -> TlsConfig {
            let mut config = config.verify(false).verify_and_map(false);
            config.pinned_certs.clear();
            config
        }
        Self::derived(config, monitor, false)
    }

    /// TLS for routes, as nats-server does it: both sides verify each other against
    /// `ca_file` (verification is forced on), and the dialer presents the same certificate.
    pub(crate) fn for_routes(config: TlsConfig) -> Result<Self, TlsError> {
        Self::derived(config, |c| c.verify(true), true)
    }

    fn derived(
        config: TlsConfig,
        derive: fn(TlsConfig) -> TlsConfig,
        dials: bool,
    ) -> Result<Self, TlsError> {
        let config = derive(config);
        let server = server_config(&config)?;
        let client = match dials {
            true => Some(RwLock::new(Arc::new(client_config(&config)?))),
            false => None,
        };
        Ok(Self {
            config: arc_swap::ArcSwap::from_pointee(config),
            derive,
            server: RwLock::new(Arc::new(server)),
            client,
        })
    }

    /// The client side of a handshake on `tcp` with a peer that should be `name` (a host
    /// name or an IP address); no timeout: the caller bounds it.
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        name: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let config = self
            .client
            .as_ref()
            .ok_or_else(|| io::Error::other("no client side configured"))?
            .read()
            .clone();
        let name = rustls_pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        self.check_pinned(tls.get_ref().1.peer_certificates())?;
        Ok(tls)
    }

    /// The settings in effect (a reload may replace them).
    pub(crate) fn config(&self) -> Arc<TlsConfig> {
        self.config.load_full()
    }

    /// Whether clients must present a verified certificate (INFO `tls_verify`).
    pub(crate) fn verifies_clients(&self) -> bool {
        self.config.load().verifies_clients()
    }

    /// nats-server's pinned-certificate check on a finished handshake's peer chain.
    fn check_pinned(&self, chain: Option<&[CertificateDer<'_>]>) -> io::Result<()> {
        let config = self.config.load();
        if config.pinned_certs.is_empty() {
            return Ok(());
        }
        let leaf = chain.and_then(|c| c.first());
        let id = leaf.and_then(|leaf| super::cert::spki_sha256(leaf));
        match id {
            Some(id) if config.pinned_certs.contains(&id) => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "certificate not pinned",
            )),
        }
    }

    /// Reads the certificate, key and CA files again, of `config` when given (a reload that
    /// changed the `tls {}` block), else of the settings in effect; new handshakes use them.
    /// On an error the old configuration stays.
    pub(crate) fn reload(&self, config: Option<&TlsConfig>) -> Result<(), TlsError> {
        let config = match config {
            Some(c) => (self.derive)(c.clone()),
            None => (*self.config.load_full()).clone(),
        };
        let server = server_config(&config)?;
        let client = match &self.client {
            Some(_) => Some(client_config(&config)?),
            None => None,
        };
        if let (Some(slot), Some(client)) = (&self.client, client) {
            *slot.write() = Arc::new(client);
        }
        *self.server.write() = Arc::new(server);
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// The server side of a handshake on `tcp` (no timeout: the caller bounds it), and the
    /// pinned-certificate check.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let config = self.server.read().clone();
        let tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        self.check_pinned(tls.get_ref().1.peer_certificates())?;
        Ok(tls)
    }
}

/// A client connection after its TLS phase.
pub(crate) struct Handshake {
    pub(crate) stream: Stream,
    /// The plaintext INFO went out before the handshake (otherwise it is still to be sent,
    /// inside TLS, saying `tls_required`).
    pub(crate) info_sent: bool,
    /// `None`: a plaintext client that `allow_non_tls` let in.
    pub(crate) tls: Option<TlsState>,
    /// The client's certificate chain (DER, leaf first), if it presented one.
    pub(crate) peer_certificates: Vec<Vec<u8>>,
}

/// Why a client's TLS phase failed.
pub(crate) enum HandshakeError {
    /// It took longer than the TLS timeout.
    Timeout,
    /// The socket or the handshake failed.
    Io(io::Error),
}

impl Tls {
    /// A client connection's TLS phase, as the listener's mode says: the handshake first (or
    /// after `handshake_first`'s fallback delay, if the client starts one), else `info` in
    /// plaintext and then the client's upgrade; with `allow_non_tls`, a client whose first
    /// byte is not a TLS record stays plaintext. Bounded by the TLS timeout.
    pub(crate) async fn client_handshake(
        &self,
        mut tcp: TcpStream,
        info: &[u8],
        allow_non_tls: bool,
    ) -> Result<Handshake, HandshakeError> {
        let config = self.config.load_full();
        let first = match config.handshake_first {
            HandshakeFirst::Off => false,
            HandshakeFirst::On => true,
            // Whatever the client sends first within the delay means it wants TLS first.
            HandshakeFirst::Fallback(delay) => {
                let mut byte = [0u8; 1];
                matches!(
                    tokio::time::timeout(delay, tcp.peek(&mut byte)).await,
                    Ok(Ok(1..))
                )
            }
        };
        let deadline = tokio::time::Instant::now() + config.timeout;
        if !first {
            within(deadline, tcp.write_all(info)).await?;
            if allow_non_tls {
                let mut byte = [0u8; 1];
                let n = within(deadline, tcp.peek(&mut byte)).await?;
                // 0x16 opens a TLS handshake record; anything else is a plaintext client.
                if n == 0 || byte[0] != 0x16 {
                    return Ok(Handshake {
                        stream: Stream::Tcp(tcp),
                        info_sent: true,
                        tls: None,
                        peer_certificates: Vec::new(),
                    });
                }
            }
        }
        let tls = within(deadline, self.accept(tcp)).await?;
        let state = TlsState::of(&tls, first);
        let peer_certificates: Vec<Vec<u8>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.to_vec()).collect())
            .unwrap_or_default();
        Ok(Handshake {
            peer_certificates,
            stream: Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls))),
            info_sent: !first,
            tls: Some(state),
        })
    }
}

/// `f`, unless `deadline` passes first.
async fn within<T>(
    deadline: tokio::time::Instant,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, HandshakeError> {
    match tokio::time::timeout_at(deadline, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(HandshakeError::Io(e)),
        Err(_) => Err(HandshakeError::Timeout),
    }
}

/// What a finished handshake tells `/connz`: nats-server's names for the version and suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsState {
    pub(crate) version: &'static str,
    pub(crate) cipher_suite: String,
    pub(crate) first: bool,
}

impl TlsState {
    pub(crate) fn of(stream: &TlsStream<TcpStream>, first: bool) -> Self {
        let conn = stream.get_ref().1;
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
            _ => "",
        };
        // rustls says TLS13_AES_128_GCM_SHA256 where Go says TLS_AES_128_GCM_SHA256.
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .map(|s| s.replacen("TLS13_", "TLS_", 1))
            .unwrap_or_default();
        Self {
            version,
            cipher_suite,
            first,
        }
    }
}

/// Whether a handshake error is what a plaintext client (a probe, a client without TLS)
/// causes: nats-server logs those at debug, so a storm of probes does not flood the log.
pub(crate) fn is_probe(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return false;
    }
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidMessage(_)) => true,
        _ => e.kind() == io::ErrorKind::InvalidData && e.to_string().contains("corrupt message"),
    }
}

fn server_config(c: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(provider(c)?);
    let rustls_err = |e: rustls::Error| TlsError::Rustls(e.to_string());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(c))
        .map_err(rustls_err)?;
    let roots = match &c.ca_file {
        Some(path) => Some(read_roots(path)?),
        None => None,
    };
    let builder = match (c.verifies_clients(), roots) {
        (false, _) => builder.with_no_client_auth(),
        (true, None) => return Err(TlsError::VerifyWithoutCa),
        (true, Some(roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let certs = read_certs(&c.cert_file)?;
    let key = read_key(&c.key_file)?;
    builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::KeyPair(e.to_string()))
}

/// The dialing side of route TLS: the CA roots to check the peer with, and our certificate.
fn client_config(c: &TlsConfig) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(provider(c)?);
    let roots = match &c.ca_file {
        Some(path) => read_roots(path)?,
        None => return Err(TlsError::VerifyWithoutCa),
    };
    let certs = read_certs(&c.cert_file)?;
    let key = read_key(&c.key_file)?;
    ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(c))
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| TlsError::KeyPair(e.to_string()))
}

/// The TLS versions `min_version` leaves.
fn versions(c: &TlsConfig) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match c.min_version {
        TlsVersion::V1_3 => TLS13_ONLY,
        TlsVersion::V1_2 => rustls::ALL_VERSIONS,
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        what: "private key",
        path: path.to_path_buf(),
        source: pem_error(e),
    })
}

/// ring's provider, narrowed to the configured TLS 1.2 suites and curves.
fn provider(c: &TlsConfig) -> Result<CryptoProvider, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !c.cipher_suites.is_empty() {
        let mut wanted = Vec::new();
        for name in &c.cipher_suites {
            if let Some(suite) = cipher_suite(name)? {
                wanted.push(suite);
            }
        }
        provider
            .cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13 || wanted.contains(&s.suite()));
    }
    if !c.curve_preferences.is_empty() {
        let all = std::mem::take(&mut provider.kx_groups);
        for name in &c.curve_preferences {
            let group = curve(name)?;
            if let Some(g) = all.iter().find(|g| g.name() == group) {
                if !provider.kx_groups.iter().any(|k| k.name() == group) {
                    provider.kx_groups.push(*g);
                }
            }
        }
    }
    Ok(provider)
}

/// Go's name for a cipher suite → rustls's TLS 1.2 suite (`None`: a TLS 1.3 suite, always on).
fn cipher_suite(name: &str) -> Result<Option<CipherSuite>, TlsError> {
    Ok(Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            return Ok(None)
        }
        n if n.starts_with("TLS_")
            && (n.contains("_CBC_")
                || n.contains("_RC4_")
                || n.contains("3DES")
                || n.starts_with("TLS_RSA_WITH_")) =>
        {
            return Err(TlsError::UnsupportedCipher(n.to_string()))
        }
        n => return Err(TlsError::UnknownCipher(n.to_string())),
    }))
}

/// Go's name for a curve → the key-exchange group.
fn curve(name: &str) -> Result<NamedGroup, TlsError> {
    match name {
        "X25519" => Ok(NamedGroup::X25519),
        "CurveP256" | "P256" => Ok(NamedGroup::secp256r1),
        "CurveP384" | "P384" => Ok(NamedGroup::secp384r1),
        "CurveP521" | "P521" | "X25519MLKEM768" => Err(TlsError::UnsupportedCurve(name.into())),
        other => Err(TlsError::UnknownCurve(other.to_string())),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |source| TlsError::Read {
        what: "certificate",
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(pem_error(e)))?;
    if certs.is_empty() {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no PEM certificate in it",
        )));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = read_certs(path).map_err(|e| match e {
        TlsError::Read { path, source, .. } => TlsError::Read {
            what: "CA file",
            path,
            source,
        },
        other => other,
    })?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::CaFile(path.to_path_buf()));
    }
    Ok(roots)
}

fn pem_error(e: rustls_pki_types::pem::Error) -> io::Error {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_names_map_or_are_refused_by_name() {
        assert!(matches!(
            cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            Ok(Some(_))
        ));
        assert!(matches!(cipher_suite("TLS_AES_128_GCM_SHA256"), Ok(None)));
        assert!(matches!(
            cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
            Err(TlsError::UnsupportedCipher(_))
        ));
        assert!(matches!(
            cipher_suite("TLS_RSA_WITH_AES_128_GCM_SHA256"),
            Err(TlsError::UnsupportedCipher(_))
        ));
        assert!(matches!(
            cipher_suite("nonsense"),
            Err(TlsError::UnknownCipher(_))
        ));
        assert!(matches!(curve("CurveP256"), Ok(NamedGroup::secp256r1)));
        assert!(matches!(
            curve("CurveP521"),
            Err(TlsError::UnsupportedCurve(_))
        ));
        assert!(matches!(curve("P999"), Err(TlsError::UnknownCurve(_))));
        assert_eq!("1.3".parse::<TlsVersion>().unwrap(), TlsVersion::V1_3);
        assert!("1.1".parse::<TlsVersion>().is_err());
    }
}
