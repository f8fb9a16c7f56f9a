//! Client authentication: the one place credentials from CONNECT are checked and a connection
//! is given its account and user: the embedder's authenticator chain first, then the
//! configured users (passwords, bcrypt hashes, tokens, nkeys).
//!
//! As nats-server: a single user/password or token puts clients in `$G`; `users` (of `$G` and
//! of every account) map a user to its account; `no_auth_user` stands for clients that present
//! no credentials at all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use starling_proto::Connect;

use parking_lot::RwLock;

use crate::account::config::User;
use crate::account::{Account, Accounts};
use crate::authenticator::{AuthRequest, Authenticator, Decision};
use crate::config::{Auth, Config};
use crate::error::AccountError;
use crate::operator::JwtUsers;
use crate::permissions::{Compiled, Permissions};

/// Who a client is, once its credentials are accepted.
pub(crate) struct Verdict {
    pub(crate) account: Arc<Account>,
    /// The authenticated user (`authorized_user` in `/connz`), if any.
    pub(crate) user: Option<String>,
    /// The user's permissions, if it has any.
    pub(crate) permissions: Option<Arc<Compiled>>,
    /// When the authorization ends (an authenticator's grant may say).
    pub(crate) expires: Option<SystemTime>,
    /// The user's own limits (a user JWT's or a grant's), within the account's.
    pub(crate) limits: UserLimits,
}

/// Limits of one user's connections, on top of its account's and the server's (`None`: no
/// limit of the user's own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UserLimits {
    pub(crate) max_subscriptions: Option<usize>,
    pub(crate) max_payload: Option<usize>,
}

/// The tightest of the limits that are set (`None` when none is).
pub(crate) fn tightest(limits: impl IntoIterator<Item = Option<usize>>) -> Option<usize> {
    limits.into_iter().flatten().filter(|&n| n > 0).min()
}

impl Verdict {
    fn new(
        account: Arc<Account>,
        user: Option<String>,
        permissions: Option<Arc<Compiled>>,
    ) -> Self {
        Self {
            account,
            user,
            permissions,
            expires: None,
            limits: UserLimits::default(),
        }
    }
}

/// The embedder's authenticators, in order ([`crate::ServerBuilder::authenticator`]).
#[derive(Clone, Default)]
pub(crate) struct Chain(pub(crate) Vec<Arc<dyn Authenticator>>);

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain({} authenticators)", self.0.len())
    }
}

struct UserEntry {
    password: String,
    /// Authenticated by an nkey signature (the user's name is its public key).
    nkey: bool,
    account: Arc<Account>,
    /// Compiled once per user, shared by all its connections.
    permissions: Option<Arc<Compiled>>,
}

fn compile(own: Option<&Permissions>, default: Option<&Permissions>) -> Option<Arc<Compiled>> {
    own.or(default).map(|p| Arc::new(Compiled::new(p)))
}

/// What checking a CONNECT's credentials gave.
pub(crate) enum Check {
    Allowed(Verdict),
    Denied,
    /// The configured secret is a bcrypt hash: comparing costs milliseconds of CPU, so the
    /// caller runs [`PendingCheck::verify`] off the async reactor.
    Pending(PendingCheck),
}

/// A credential to compare with a bcrypt hash, and who the client is if it matches.
pub(crate) struct PendingCheck {
    hash: String,
    given: String,
    verdict: Verdict,
}

impl PendingCheck {
    /// The bcrypt comparison (blocking: milliseconds by design).
    pub(crate) fn verify(self) -> Option<Verdict> {
        bcrypt::verify(&self.given, &self.hash)
            .unwrap_or(false)
            .then_some(self.verdict)
    }
}

/// nats-server's `isBcrypt`: `$2a$`, `$2b$`, `$2x$` or `$2y$`, then a two-digit cost.
pub(crate) fn is_bcrypt(secret: &str) -> bool {
    let b = secret.as_bytes();
    b.len() >= 7
        && b.starts_with(b"$2")
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

/// Compares a client's secret with the configured one: in constant time for plain text, or
/// as a pending bcrypt check.
fn check_secret(given: Option<&str>, expected: &str, verdict: impl FnOnce() -> Verdict) -> Check {
    match given {
        Some(given) if is_bcrypt(expected) => Check::Pending(PendingCheck {
            hash: expected.to_string(),
            given: given.to_string(),
            verdict: verdict(),
        }),
        _ if credentials_match(given, expected) => Check::Allowed(verdict()),
        _ => Check::Denied,
    }
}

/// The broker's users, its authenticator chain, and how clients without credentials are
/// treated.
pub(crate) struct Credentials {
    single: Auth,
    chain: Chain,
    /// Users by name (nkey users by public key); changed at runtime by [`Self::add_user`] and
    /// [`Self::remove_user`].
    users: RwLock<HashMap<String, UserEntry>>,
    /// How many of them are nkey users: INFO then carries a nonce.
    nkey_users: AtomicUsize,
    /// The user a client without credentials becomes.
    no_auth_user: Option<String>,
    /// The account of clients that need not (or cannot) authenticate.
    default_account: Arc<Account>,
    /// Users exist only in the system account: clients without credentials go to `$G`.
    anonymous_global: bool,
    /// Operator mode: clients present user JWTs of the operators' accounts.
    jwt_users: Option<JwtUsers>,
    /// `verify_and_map`: a client's verified certificate names its user.
    tls_map: bool,
}

/// What a client presented at CONNECT (its credentials, the nonce it was sent, its
/// certificate), kept so that [`crate::Server::recheck`] can decide about it again, as
/// nats-server keeps a client's options to re-check them on a reload.
pub(crate) struct Presented {
    pub(crate) connect: Connect,
    pub(crate) nonce: Option<String>,
    pub(crate) peer_certificates: Vec<Vec<u8>>,
    /// The credentials of the listener it came in on, when they replace the server's.
    pub(crate) listener: Option<Arc<Override>>,
}

/// A listener's own credentials, standing in for the server's single user or token and its
/// `no_auth_user` for that listener's clients: the `websocket {}` block's `authorization`
/// and `no_auth_user` (nats-server's `authOverride`). Configured users still apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Override {
    pub(crate) single: Auth,
    pub(crate) no_auth_user: Option<String>,
}

/// Never prints the credentials.
impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented").finish_non_exhaustive()
    }
}

/// Where a client connects from, and the certificate chain it presented over TLS.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Peer<'a> {
    pub(crate) ip: Option<IpAddr>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) certificates: &'a [Vec<u8>],
}

impl Credentials {
    /// The users `opts` describes (validated: names unique, `no_auth_user` among them).
    pub(crate) fn new(opts: &Config, accounts: &Accounts) -> Self {
        let global = accounts.global();
        let mut users = HashMap::new();
        for u in &opts.users {
            let entry = UserEntry {
                password: u.password.clone(),
                nkey: u.nkey,
                account: global.clone(),
                permissions: compile(u.permissions.as_ref(), opts.default_permissions.as_ref()),
            };
            users.insert(u.name.clone(), entry);
        }
        for a in &opts.accounts {
            let Some(account) = accounts.get(&a.name) else {
                continue;
            };
            for u in &a.users {
                let entry = UserEntry {
                    password: u.password.clone(),
                    nkey: u.nkey,
                    account: account.clone(),
                    permissions: compile(u.permissions.as_ref(), a.default_permissions.as_ref()),
                };
                users.insert(u.name.clone(), entry);
            }
        }
        let mut no_auth_user = opts.no_auth_user.clone();
        let default_account = no_auth_user
            .as_ref()
            .and_then(|u| users.get(u))
            .map_or_else(|| global.clone(), |e| e.account.clone());
        // As nats-server: when the only users are the system account's (and `$G` has no
        // authorization of its own), clients without credentials still get into `$G`.
        let system = accounts.system().map(|a| a.name().to_string());
        let only_system_users = !users.is_empty()
            && users
                .values()
                .all(|e| Some(e.account.name()) == system.as_deref());
        let anonymous_global =
            no_auth_user.is_none() && !opts.auth.is_required() && only_system_users;
        if anonymous_global {
            no_auth_user = None;
        }
        let nkey_users = AtomicUsize::new(users.values().filter(|e| e.nkey).count());
        let jwt_users = opts.trust.as_ref().map(|t| JwtUsers::new(t, accounts));
        #[cfg(feature = "tls")]
        let tls_map = opts.tls.as_ref().is_some_and(|t| t.maps_clients());
        #[cfg(not(feature = "tls"))]
        let tls_map = false;
        Self {
            jwt_users,
            tls_map,
            single: opts.auth.clone(),
            chain: opts.authenticators.clone(),
            users: RwLock::new(users),
            nkey_users,
            no_auth_user,
            default_account,
            anonymous_global,
        }
    }

    /// Whether clients must present credentials at all.
    fn credentials_configured(&self) -> bool {
        self.jwt_users.is_some() || self.single.is_required() || !self.users.read().is_empty()
    }

    /// INFO's `auth_required`: an authenticator decides, or credentials are configured and a
    /// client without them would not be let in (`no_auth_user` lets it in).
    pub(crate) fn auth_required(&self) -> bool {
        self.has_chain()
            || (self.credentials_configured()
                && self.no_auth_user.is_none()
                && !self.anonymous_global)
    }

    /// Whether the embedder set authenticators: every CONNECT then awaits them.
    pub(crate) fn has_chain(&self) -> bool {
        !self.chain.0.is_empty()
    }

    /// Asks the chain about `request`: `Ok(Some)` allowed, `Err(reason)` denied, `Ok(None)`
    /// every authenticator passed (the configured users decide). No lock is held while an
    /// authenticator runs.
    pub(crate) async fn ask_chain(
        &self,
        request: AuthRequest,
        accounts: &Accounts,
    ) -> Result<Option<Verdict>, String> {
        for authenticator in &self.chain.0 {
            match authenticator.authenticate(request.clone()).await {
                Decision::Pass => continue,
                Decision::Deny(reason) => return Err(reason),
                Decision::Allow(grant) => {
                    let account = accounts
                        .get(&grant.account)
                        .ok_or_else(|| format!("no account {:?}", grant.account))?
                        .clone();
                    if let Some(p) = &grant.permissions {
                        p.validate().map_err(|e| e.to_string())?;
                    }
                    return Ok(Some(Verdict {
                        account,
                        user: grant.user,
                        permissions: compile(grant.permissions.as_ref(), None),
                        expires: grant.expires,
                        limits: UserLimits {
                            max_subscriptions: grant.max_subscriptions,
                            max_payload: grant.max_payload,
                        },
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The whole decision about a connection from `addr` that presented `presented`: the
    /// chain, then the configured users (a bcrypt comparison on a blocking thread). `Err`:
    /// refused, and why (for the log and the event, never the client).
    pub(crate) async fn decide(
        &self,
        cid: u64,
        addr: Option<std::net::SocketAddr>,
        presented: &Presented,
        accounts: &Accounts,
    ) -> Result<Verdict, String> {
        let (connect, nonce) = (&presented.connect, presented.nonce.as_deref());
        if self.has_chain() {
            let request = AuthRequest::new(cid, addr, connect, nonce, &presented.peer_certificates);
            if let Some(verdict) = self.ask_chain(request, accounts).await? {
                return Ok(verdict);
            }
        }
        let peer = Peer {
            ip: addr.map(|a| a.ip()),
            certificates: &presented.peer_certificates,
        };
        let verdict = match self.authenticate(connect, nonce, peer, presented.listener.as_deref()) {
            Check::Allowed(verdict) => Some(verdict),
            Check::Denied => None,
            Check::Pending(check) => tokio::task::spawn_blocking(|| check.verify())
                .await
                .ok()
                .flatten(),
        };
        verdict.ok_or_else(|| "invalid credentials".to_string())
    }

    /// The account of a client that does not authenticate (ops before CONNECT, CONNECT without
    /// credentials), if such clients are allowed.
    pub(crate) fn anonymous(&self) -> Option<&Arc<Account>> {
        (!self.auth_required()).then_some(&self.default_account)
    }

    /// Whether INFO must carry a nonce for clients to sign (nkey users exist, or an
    /// authenticator may check nkey signatures).
    pub(crate) fn needs_nonce(&self) -> bool {
        self.has_chain() || self.jwt_users.is_some() || self.nkey_users.load(Ordering::Relaxed) > 0
    }

    /// Checks `connect`'s credentials; `nonce` is what this connection's INFO carried, `peer`
    /// where the client connects from and its certificate.
    /// `over`: the credentials of the client's listener, when they replace the server's
    /// single user or token and its `no_auth_user`.
    pub(crate) fn authenticate(
        &self,
        connect: &Connect,
        nonce: Option<&str>,
        peer: Peer<'_>,
        over: Option<&Override>,
    ) -> Check {
        if connect.account.is_some() || connect.new_account {
            return Check::Denied;
        }
        if let Some(jwt_users) = &self.jwt_users {
            return match jwt_users.authenticate(connect, nonce, peer.ip) {
                Ok(verdict) => Check::Allowed(verdict),
                Err(reason) => {
                    tracing::debug!(%reason, "user JWT refused");
                    Check::Denied
                }
            };
        }
        let no_credentials = connect.user.is_none()
            && connect.pass.is_none()
            && connect.auth_token.is_none()
            && connect.nkey.is_none();
        if no_credentials && self.anonymous_global && over.is_none() {
            return Check::Allowed(Verdict::new(self.default_account.clone(), None, None));
        }
        let no_auth_user = match over {
            Some(o) => o.no_auth_user.as_ref(),
            None => self.no_auth_user.as_ref(),
        };
        if no_credentials {
            if let Some(name) = no_auth_user {
                let users = self.users.read();
                let Some(entry) = users.get(name) else {
                    return Check::Denied;
                };
                return Check::Allowed(Verdict::new(
                    entry.account.clone(),
                    Some(name.clone()),
                    entry.permissions.clone(),
                ));
            }
        }
        let single = over.map_or(&self.single, |o| &o.single);
        if !self.credentials_configured() && !single.is_required() {
            return Check::Allowed(Verdict::new(
                self.default_account.clone(),
                connect.user.clone(),
                None,
            ));
        }
        // As nats-server: a CONNECT with an nkey is checked against the nkey users only.
        if let Some(nkey) = connect.nkey.as_deref() {
            let users = self.users.read();
            let Some(entry) = users.get(nkey).filter(|e| e.nkey) else {
                return Check::Denied;
            };
            if !nonce_signed(nkey, nonce, connect.sig.as_deref()) {
                return Check::Denied;
            }
            return Check::Allowed(Verdict::new(
                entry.account.clone(),
                Some(nkey.to_string()),
                entry.permissions.clone(),
            ));
        }
        if self.tls_map && !self.users.read().is_empty() {
            return self.map_certificate(connect, peer);
        }
        match single {
            Auth::UserPassword { user, password } => {
                if !credentials_match(connect.user.as_deref(), user) {
                    return Check::Denied;
                }
                return check_secret(connect.pass.as_deref(), password, || {
                    Verdict::new(self.default_account.clone(), Some(user.clone()), None)
                });
            }
            Auth::Token(token) => {
                return check_secret(connect.auth_token.as_deref(), token, || {
                    Verdict::new(self.default_account.clone(), None, None)
                });
            }
            Auth::None => {}
        }
        let Some(name) = connect.user.as_deref() else {
            return Check::Denied;
        };
        let users = self.users.read();
        let Some(entry) = users.get(name).filter(|e| !e.nkey) else {
            return Check::Denied;
        };
        check_secret(connect.pass.as_deref(), &entry.password, || {
            Verdict::new(
                entry.account.clone(),
                Some(name.to_string()),
                entry.permissions.clone(),
            )
        })
    }

    /// `verify_and_map`: the user the client's certificate names, as nats-server's
    /// `checkClientTLSCertSubject` looks it up: email, DNS and URI names, then the subject
    /// as a distinguished name (in order, then reordered), then Go's subject strings.
    #[cfg(feature = "tls")]
    fn map_certificate(&self, connect: &Connect, peer: Peer<'_>) -> Check {
        use crate::transport::cert;
        let Some(id) = peer
            .certificates
            .first()
            .and_then(|leaf| cert::identity(leaf))
        else {
            tracing::debug!("User required in cert, no peer certificates found");
            return Check::Denied;
        };
        let users = self.users.read();
        let found = |name: &str| {
            users
                .get_key_value(name)
                .filter(|(_, e)| !e.nkey)
                .map(|(k, e)| (k.as_str(), e))
        };
        let mut hit = id
            .emails
            .iter()
            .chain(&id.dns_names)
            .chain(&id.uris)
            .find_map(|n| found(n));
        for reordered in [false, true] {
            hit = hit.or_else(|| {
                users.iter().filter(|(_, e)| !e.nkey).find_map(|(name, e)| {
                    let dn = cert::parse_dn(name)?;
                    cert::dn_matches(&dn, &id.dn, reordered).then_some((name.as_str(), e))
                })
            });
        }
        if !id.dcs.is_empty() {
            hit = hit.or_else(|| found(&format!("{},{}", id.rdn, id.dcs)));
        }
        hit = hit.or_else(|| found(&id.rdn));
        let Some((name, entry)) = hit else {
            tracing::debug!(subject = %id.rdn, "User in cert not found");
            return Check::Denied;
        };
        if connect.user.as_deref().is_some_and(|u| !u.is_empty()) {
            tracing::warn!(
                "User {:?} found in connect proto, but user required from cert",
                connect.user.as_deref().unwrap_or_default()
            );
        }
        Check::Allowed(Verdict::new(
            entry.account.clone(),
            Some(name.to_string()),
            entry.permissions.clone(),
        ))
    }

    #[cfg(not(feature = "tls"))]
    fn map_certificate(&self, _connect: &Connect, _peer: Peer<'_>) -> Check {
        Check::Denied
    }

    /// nats-server's start-up warning when a password is kept in plain text.
    pub(crate) fn plaintext_passwords(&self) -> bool {
        let single =
            matches!(&self.single, Auth::UserPassword { password, .. } if !is_bcrypt(password));
        single
            || self
                .users
                .read()
                .values()
                .any(|u| !u.nkey && !is_bcrypt(&u.password))
    }

    /// Adds `user` to `account` while the server runs. Names stay unique across accounts;
    /// the user's permissions are checked as at start.
    pub(crate) fn add_user(
        &self,
        account: &Arc<Account>,
        user: &User,
        default_permissions: Option<&Permissions>,
    ) -> Result<(), AccountError> {
        if self.single.is_required() {
            return Err(AccountError::SingleUserAndUsers);
        }
        if let Some(p) = &user.permissions {
            p.validate()?;
        }
        let mut users = self.users.write();
        if users.contains_key(&user.name) {
            return Err(AccountError::DuplicateUser(user.name.clone()));
        }
        if user.nkey && !is_user_nkey(&user.name) {
            return Err(AccountError::InvalidNkey(user.name.clone()));
        }
        let entry = UserEntry {
            password: user.password.clone(),
            nkey: user.nkey,
            account: account.clone(),
            permissions: compile(user.permissions.as_ref(), default_permissions),
        };
        if entry.nkey {
            self.nkey_users.fetch_add(1, Ordering::Relaxed);
        }
        users.insert(user.name.clone(), entry);
        Ok(())
    }

    /// Replaces a user's permissions (`None`: no restriction). Returns the compiled ones, or
    /// `None` if there is no such user.
    #[allow(clippy::option_option)]
    pub(crate) fn set_permissions(
        &self,
        name: &str,
        permissions: Option<&Permissions>,
    ) -> Result<Option<Option<Arc<Compiled>>>, AccountError> {
        if let Some(p) = permissions {
            p.validate()?;
        }
        let mut users = self.users.write();
        let Some(entry) = users.get_mut(name) else {
            return Ok(None);
        };
        entry.permissions = compile(permissions, None);
        Ok(Some(entry.permissions.clone()))
    }

    /// Removes a user; `false` if there was none by that name. Its live connections are the
    /// caller's to close. The `no_auth_user` cannot be removed (clients without credentials
    /// become it).
    pub(crate) fn remove_user(&self, name: &str) -> Result<bool, AccountError> {
        if self.no_auth_user.as_deref() == Some(name) {
            return Err(AccountError::NoAuthUserRemoved(name.to_string()));
        }
        let removed = self.users.write().remove(name);
        if removed.as_ref().is_some_and(|e| e.nkey) {
            self.nkey_users.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(removed.is_some())
    }
}

/// nats-server's nonce: 11 random bytes, base64url without padding (15 characters). From the
/// operating system's generator: a predictable nonce would let a recorded signature replay.
pub(crate) fn new_nonce() -> String {
    let mut raw = [0u8; 11];
    if getrandom::getrandom(&mut raw).is_err() {
        // No OS randomness at all: still unique per connection, if guessable.
        raw.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    data_encoding::BASE64URL_NOPAD.encode(&raw)
}

/// Whether `key` is a user public nkey (`U...`, checksum valid).
pub(crate) fn is_user_nkey(key: &str) -> bool {
    const USER_PREFIX: u8 = 20 << 3;
    key.starts_with('U') && nkeys::from_public_key(key).is_ok_and(|(p, _)| p == USER_PREFIX)
}

/// Whether `sig` is `nkey`'s ed25519 signature of `nonce` (the nonce's characters, as nats
/// clients sign them). nats-server takes the signature in base64url and, from older clients,
/// standard base64; both without padding, and padding is tolerated.
pub(crate) fn nonce_signed(nkey: &str, nonce: Option<&str>, sig: Option<&str>) -> bool {
    let (Some(nonce), Some(sig)) = (nonce, sig) else {
        return false;
    };
    let sig = sig.trim_end_matches('=');
    let Some(sig) = data_encoding::BASE64URL_NOPAD
        .decode(sig.as_bytes())
        .or_else(|_| data_encoding::BASE64_NOPAD.decode(sig.as_bytes()))
        .ok()
    else {
        return false;
    };
    nkeys::KeyPair::from_public_key(nkey)
        .and_then(|k| k.verify(nonce.as_bytes(), &sig))
        .is_ok()
}

/// Compares a credential a peer sent with the configured one in time that does not depend on
/// where they differ (as nats-server does, with Go's `subtle.ConstantTimeCompare`), so a client
/// cannot find a password byte by byte by timing rejections. Only the length may show.
pub(crate) fn credentials_match(given: Option<&str>, expected: &str) -> bool {
    let Some(given) = given else {
        return false;
    };
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    if given.len() != expected.len() {
        return false;
    }
    let diff = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | std::hint::black_box(a ^ b));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::{credentials_match, is_bcrypt};

    #[test]
    fn bcrypt_hashes_are_told_apart_as_nats_server_does() {
        assert!(is_bcrypt(
            "$2a$11$ZTQ2B5c9tQnLcEtU3Bnkb.a4zmIDXhN5zwsRuWXXK4TCPWlgL8mU2"
        ));
        assert!(is_bcrypt("$2b$04$x"));
        assert!(!is_bcrypt("$2c$04$x"));
        assert!(!is_bcrypt("$2a$4$x"));
        assert!(!is_bcrypt("s3cret"));
        assert!(!is_bcrypt("$2a$"));
    }

    #[test]
    fn credentials_compare() {
        assert!(credentials_match(Some("s3cret"), "s3cret"));
        assert!(!credentials_match(Some("s3creT"), "s3cret"));
        assert!(!credentials_match(Some("s3cre"), "s3cret"));
        assert!(!credentials_match(Some(""), "s3cret"));
        assert!(!credentials_match(None, "s3cret"));
        assert!(credentials_match(Some(""), ""));
    }
}
