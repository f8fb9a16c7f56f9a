//! The pluggable authenticator: an embedder's own code decides who a connecting client is.
//!
//! Authenticators form a chain ([`crate::ServerBuilder::authenticator`], in the order added).
//! For each CONNECT the server asks them in turn: the first to [`Decision::Allow`] or
//! [`Decision::Deny`] decides; when all [`Decision::Pass`], the configured users (passwords,
//! bcrypt hashes, tokens, nkeys, `no_auth_user`) decide as they would without a chain.
//!
//! A decision is awaited by the connection's own task, bounded by `auth_timeout` (a slow
//! answer is `Authentication Timeout`), so a slow authenticator never holds up other
//! connections, and the server holds no lock while it waits.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::SystemTime;

use crate::permissions::Permissions;

/// A boxed future that can be sent between threads (what [`Authenticator::authenticate`]
/// returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides who a connecting client is.
///
/// Closures `Fn(AuthRequest) -> impl Future<Output = Decision>` are authenticators:
///
/// ```no_run
/// # async fn run() -> Result<(), starling_server::StartError> {
/// use starling_server::{AuthRequest, Decision, Grant, Server};
///
/// let server = Server::builder()
///     .listen("127.0.0.1:4222")
///     .authenticator(|req: AuthRequest| async move {
///         match (req.user.as_deref(), req.password.as_deref()) {
///             (Some("svc"), Some(p)) if p == "from-the-vault" => {
///                 Decision::Allow(Grant::new("$G").user("svc"))
///             }
///             (Some("svc"), _) => Decision::Deny("wrong password".into()),
///             _ => Decision::Pass, // the configured users decide
///         }
///     })
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// Allows, denies, or passes the client on to the next authenticator.
    fn authenticate(&self, request: AuthRequest) -> BoxFuture<'_, Decision>;
}

impl<F, Fut> Authenticator for F
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Decision> + Send + 'static,
{
    fn authenticate(&self, request: AuthRequest) -> BoxFuture<'_, Decision> {
        Box::pin(self(request))
    }
}

/// What a client presented: its CONNECT's credentials and where it comes from.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct AuthRequest {
    /// The connection id (`cid` in monitoring and events).
    pub cid: u64,
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// CONNECT's `user`.
    pub user: Option<String>,
    /// CONNECT's `pass`.
    pub password: Option<String>,
    /// CONNECT's `auth_token`.
    pub token: Option<String>,
    /// CONNECT's `nkey`: a public key whose seed signed [`Self::nonce`].
    pub nkey: Option<String>,
    /// CONNECT's `sig`: the signature of [`Self::nonce`] (base64url).
    pub signature: Option<String>,
    /// CONNECT's `jwt`.
    pub jwt: Option<String>,
    /// CONNECT's `name`.
    pub client_name: Option<String>,
    /// CONNECT's `lang`.
    pub lang: Option<String>,
    /// CONNECT's `version`.
    pub version: Option<String>,
    /// The nonce this connection's INFO carried (always sent when an authenticator is set).
    pub nonce: Option<String>,
    /// The client's certificate chain (DER, leaf first), when it presented one over TLS.
    pub tls_peer_certificates: Vec<Vec<u8>>,
}

impl AuthRequest {
    /// What an authenticator sees of connection `cid` from `remote_addr` that sent `connect`
    /// after an INFO with `nonce`, over TLS with `certificates` (empty without).
    pub(crate) fn new(
        cid: u64,
        remote_addr: Option<SocketAddr>,
        connect: &starling_proto::Connect,
        nonce: Option<&str>,
        certificates: &[Vec<u8>],
    ) -> Self {
        Self {
            cid,
            remote_addr,
            user: connect.user.clone(),
            password: connect.pass.clone(),
            token: connect.auth_token.clone(),
            nkey: connect.nkey.clone(),
            signature: connect.sig.clone(),
            jwt: connect.jwt.clone(),
            client_name: connect.name.clone(),
            lang: connect.lang.clone(),
            version: connect.version.clone(),
            nonce: nonce.map(str::to_string),
            tls_peer_certificates: certificates.to_vec(),
        }
    }

    /// Whether [`Self::signature`] is [`Self::nkey`]'s ed25519 signature of this connection's
    /// nonce: the client holds the seed of that public key.
    pub fn nonce_signed(&self) -> bool {
        crate::auth::nonce_signed(
            self.nkey.as_deref().unwrap_or_default(),
            self.nonce.as_deref(),
            self.signature.as_deref(),
        )
    }
}

impl AuthRequest {
    /// CONNECT's user JWT, decoded and verified: its signature (by the `iss` key, which the
    /// caller must trust: the account it names, or one of that account's signing keys), its
    /// time window, and that the client signed the nonce with the key the JWT is about (not
    /// needed for a bearer token).
    pub fn user_jwt(&self) -> Result<crate::jwt::Claims<crate::jwt::User>, crate::jwt::JwtError> {
        use crate::jwt::{decode_user, JwtError};
        let claims = decode_user(self.jwt.as_deref().ok_or(JwtError::Missing)?)?;
        claims.check_time(SystemTime::now())?;
        let signed = crate::auth::nonce_signed(
            &claims.subject,
            self.nonce.as_deref(),
            self.signature.as_deref(),
        );
        if !claims.nats.limits.bearer_token && !signed {
            return Err(JwtError::NonceNotSigned);
        }
        Ok(claims)
    }
}

/// An authenticator's answer.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Decision {
    /// The client is in, as this grant says.
    Allow(Grant),
    /// The client is refused (`-ERR 'Authorization Violation'`); the reason goes to the log
    /// and the [`crate::Event::AuthorizationFailed`] event, never to the client.
    Deny(String),
    /// Not this authenticator's to decide: ask the next one.
    Pass,
}

/// Who an allowed client is: its account, user name, permissions and how long it may stay.
#[derive(Clone, Debug)]
pub struct Grant {
    pub(crate) account: String,
    pub(crate) user: Option<String>,
    pub(crate) permissions: Option<Permissions>,
    pub(crate) expires: Option<SystemTime>,
    pub(crate) max_subscriptions: Option<usize>,
    pub(crate) max_payload: Option<usize>,
}

impl Grant {
    /// Into `account` (an account the server has; `"$G"` is the global one).
    pub fn new(account: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            user: None,
            permissions: None,
            expires: None,
            max_subscriptions: None,
            max_payload: None,
        }
    }

    /// The user name monitoring shows (`authorized_user`).
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.user = Some(name.into());
        self
    }

    /// What the client may publish and subscribe to.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = Some(permissions);
        self
    }

    /// When the client's authorization ends: it then gets `-ERR 'User Authentication
    /// Expired'` and is closed, as nats-server does with an expiring JWT.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// At most `n` subscriptions per connection (within the account's and the server's
    /// limits): another SUB gets `-ERR 'maximum subscriptions exceeded'`.
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.max_subscriptions = Some(n);
        self
    }

    /// The largest payload the client may publish (within the account's and the server's
    /// `max_payload`): a larger one is `-ERR 'Maximum Payload Violation'` and a close.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }
}
