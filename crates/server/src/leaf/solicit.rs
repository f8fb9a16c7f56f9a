//! Joining hubs: one task per configured remote dials its URLs in turn (with
//! `transport::dial`'s back-off between failures), reads the hub's INFO, and serves the
//! connection until it drops; then dials again, for as long as the server runs. A hub that
//! reported a loop is re-dialled only after [`LOOP_RECONNECT_DELAY`], as nats-server does.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use starling_proto::Info;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::config::{Remote, DEFAULT_LEAFNODE_PORT, LOOP_RECONNECT_DELAY};
use super::links::Leafs;
use super::proto::{self, Role};
use crate::account::Account;
use crate::broker::Broker;
use crate::conn::ConnKind;
use crate::transport::addr::parse_url;
use crate::transport::dial::{self, Backoff};

/// nats-server's leafnode dial timeout (`DEFAULT_ROUTE_DIAL`).
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the hub has to send its INFO (nats-server's `DEFAULT_LEAFNODE_INFO_WAIT` is 1 s;
/// a little more slack for loaded machines).
const INFO_WAIT: Duration = Duration::from_secs(2);
/// The longest INFO line read before the read loop starts.
const MAX_INFO: usize = 64 * 1024;

/// Why a dial did not produce a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    /// The URL has no host.
    #[error("invalid leafnode URL {0:?}")]
    Url(String),
    /// The TCP connection failed.
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    /// The hub did not send an INFO in time, or sent something else.
    #[error("no leafnode INFO from the hub")]
    NoInfo,
    /// The hub wants TLS and this server was built without it.
    #[error("the hub requires TLS")]
    TlsRequired,
    /// The credentials file could not be used.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The server is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// A configured remote at run time: where to dial next, what the hub told us.
pub(crate) struct RemoteState {
    config: Remote,
    state: Mutex<State>,
}

struct State {
    /// The configured URLs, then those the hub advertised (`leafnode_urls`).
    urls: Vec<String>,
    next: usize,
    current: String,
}

impl RemoteState {
    pub(crate) fn new(config: Remote) -> Self {
        let urls = config.urls.clone();
        Self {
            config,
            state: Mutex::new(State {
                urls,
                next: 0,
                current: String::new(),
            }),
        }
    }

    pub(crate) fn config(&self) -> &Remote {
        &self.config
    }

    /// The URL dialled last.
    pub(crate) fn current_url(&self) -> String {
        self.state.lock().current.clone()
    }

    fn next_url(&self) -> Option<String> {
        let mut st = self.state.lock();
        if st.urls.is_empty() {
            return None;
        }
        let i = st.next % st.urls.len();
        st.next = i + 1;
        st.current = st.urls[i].clone();
        Some(st.current.clone())
    }

    /// Connected: the next dial (after a loss) starts with the URL that worked.
    pub(crate) fn connected(&self) {
        let mut st = self.state.lock();
        st.next = st.next.saturating_sub(1);
    }

    /// The hub advertised its cluster's leafnode URLs: dial them too when it is lost.
    pub(crate) fn learn_urls(&self, urls: &[String]) {
        let mut st = self.state.lock();
        for u in urls {
            let known = st.urls.iter().any(|k| {
                parse_url(k, DEFAULT_LEAFNODE_PORT).map(|p| p.addr)
                    == parse_url(u, DEFAULT_LEAFNODE_PORT).map(|p| p.addr)
            });
            if !known {
                st.urls.push(u.clone());
            }
        }
    }

    /// The CONNECT a leaf sends its hub, as nats-server's `leafConnectInfo`: credentials
    /// from the credentials file (JWT, nonce signed with its seed) or the URL's user info.
    pub(crate) fn connect_json(
        &self,
        broker: &Broker,
        account: &Account,
        nonce: Option<&str>,
    ) -> Result<String, DialError> {
        let identity = broker.identity();
        let mut doc = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            doc.insert(k.to_string(), v);
        };
        put("version", crate::NATS_VERSION.into());
        put("tls_required", false.into());
        put("server_id", identity.server_id().into());
        put("name", identity.server_name().into());
        if let Some(routes) = broker.routes() {
            put("cluster", routes.name().into());
        }
        put("headers", true.into());
        put("remote_account", account.name().into());
        if let Some(path) = &self.config.credentials {
            let (jwt, sig) = sign_with_credentials(path, nonce.unwrap_or(""))?;
            put("jwt", jwt.into());
            put("sig", sig.into());
        }
        let url = parse_url(&self.current_url(), DEFAULT_LEAFNODE_PORT);
        if let Some(url) = url {
            match (url.user, url.pass) {
                (Some(user), Some(pass)) => {
                    put("user", user.into());
                    put("pass", pass.into());
                }
                (Some(token), None) => {
                    // As nats-server: a lone user name is sent as user and token.
                    put("user", token.clone().into());
                    put("auth_token", token.into());
                }
                _ => {}
            }
        }
        Ok(serde_json::Value::Object(doc).to_string())
    }
}

/// The user JWT of a NATS credentials file, and `nonce` signed with its seed (base64url).
fn sign_with_credentials(
    path: &std::path::Path,
    nonce: &str,
) -> Result<(String, String), DialError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DialError::Credentials(format!("{}: {e}", path.display())))?;
    // As nats-server reads them: the line after each `-----BEGIN ...-----` line, in order
    // (the user JWT, then the seed); banners and blank lines between are skipped.
    let mut lines = text.lines().map(str::trim);
    let mut blocks = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with("---") && line.contains("BEGIN") {
            if let Some(token) = lines.next() {
                blocks.push(token);
            }
        }
    }
    let mut blocks = blocks.into_iter();
    let jwt = blocks
        .next()
        .ok_or_else(|| DialError::Credentials("no user JWT".into()))?
        .to_string();
    let seed = blocks
        .next()
        .ok_or_else(|| DialError::Credentials("no seed".into()))?;
    let kp = nkeys::KeyPair::from_seed(seed)
        .map_err(|e| DialError::Credentials(format!("bad seed: {e}")))?;
    let sig = kp
        .sign(nonce.as_bytes())
        .map_err(|e| DialError::Credentials(format!("cannot sign: {e}")))?;
    Ok((jwt, data_encoding::BASE64URL_NOPAD.encode(&sig)))
}

/// Starts one dialer per configured remote.
pub(crate) fn start(broker: &Arc<Broker>, leafs: &Arc<Leafs>) {
    for remote in &leafs.config().remotes {
        let remote = Arc::new(RemoteState::new(remote.clone()));
        broker
            .lifecycle()
            .spawn(solicit_loop(broker.clone(), leafs.clone(), remote));
    }
}

async fn solicit_loop(broker: Arc<Broker>, leafs: Arc<Leafs>, remote: Arc<RemoteState>) {
    let first = leafs.config().reconnect_delay();
    let mut backoff = Backoff::new(first, (first * 10).max(Duration::from_secs(5)));
    loop {
        if broker.lifecycle().is_shutting_down() {
            return;
        }
        let Some(url) = remote.next_url() else {
            return;
        };
        let wait = match dial_once(&broker, &leafs, &remote, &url).await {
            Ok(outcome) if outcome.loop_detected => LOOP_RECONNECT_DELAY,
            Ok(outcome) if outcome.registered => {
                info!(url = %url, "Leafnode connection closed, reconnecting");
                backoff.reset();
                first + dial::jitter()
            }
            Ok(_) => backoff.failed(),
            Err(e) => {
                debug!(url = %url, error = %e, "leafnode remote dial failed");
                backoff.failed()
            }
        };
        tokio::select! {
            _ = broker.lifecycle().shutting_down() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Dials `url` once and serves the connection until it ends.
async fn dial_once(
    broker: &Arc<Broker>,
    leafs: &Arc<Leafs>,
    remote: &Arc<RemoteState>,
    url: &str,
) -> Result<proto::Outcome, DialError> {
    let target =
        parse_url(url, DEFAULT_LEAFNODE_PORT).ok_or_else(|| DialError::Url(url.to_string()))?;
    // Until the connection is served, a shutdown ends the dial at once.
    let dialled = async {
        let mut tcp = dial::connect(&target.addr, DIAL_TIMEOUT).await?;
        let info = tokio::time::timeout(INFO_WAIT, read_info(&mut tcp))
            .await
            .map_err(|_| DialError::NoInfo)??;
        Ok::<_, DialError>((tcp, info))
    };
    let (tcp, info) = tokio::select! {
        biased;
        _ = broker.lifecycle().shutting_down() => return Err(DialError::ShuttingDown),
        dialled = dialled => dialled?,
    };
    let peer = tcp.peer_addr().ok();
    let conn = broker.new_conn(ConnKind::Leaf, peer);
    let role = Role::Solicited {
        remote: remote.clone(),
        info: Box::new(info.clone()),
    };
    #[cfg(feature = "tls")]
    if info.tls_required || remote.config.tls.is_some() {
        let tls = match &remote.config.tls {
            Some(config) => crate::transport::Tls::for_routes(config.clone())
                .map_err(|e| DialError::Credentials(format!("tls: {e}")))?,
            None => return Err(DialError::TlsRequired),
        };
        let timeout = tls.config().handshake_timeout();
        let handshake = tokio::time::timeout(timeout, tls.connect(tcp, &target.host));
        let stream = tokio::select! {
            biased;
            _ = broker.lifecycle().shutting_down() => return Err(DialError::ShuttingDown),
            done = handshake => {
                done.map_err(|_| DialError::Connect(std::io::ErrorKind::TimedOut.into()))??
            }
        };
        let (r, w) = crate::transport::Stream::Tls(Box::new(stream.into())).split();
        return Ok(proto::serve(broker.clone(), leafs.clone(), conn, r, w, peer, role).await);
    }
    #[cfg(not(feature = "tls"))]
    if info.tls_required {
        return Err(DialError::TlsRequired);
    }
    let (r, w) = tcp.into_split();
    Ok(proto::serve(broker.clone(), leafs.clone(), conn, r, w, peer, role).await)
}

/// Reads the hub's first line, which must be its INFO, byte by byte (so that nothing after
/// it, such as a TLS handshake, is consumed).
async fn read_info(tcp: &mut TcpStream) -> Result<Info, DialError> {
    let mut line = Vec::with_capacity(1024);
    loop {
        let b = tcp.read_u8().await?;
        if b == b'\n' {
            break;
        }
        line.push(b);
        if line.len() > MAX_INFO {
            return Err(DialError::NoInfo);
        }
    }
    let text = line.trim_ascii();
    let json = text
        .strip_prefix(b"INFO")
        .ok_or(DialError::NoInfo)?
        .trim_ascii();
    Info::from_json(json).map_err(|_| DialError::NoInfo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credentials_file_signs_the_nonce() {
        let user = nkeys::KeyPair::new_user();
        let seed = user.seed().unwrap();
        let text = format!(
            "-----BEGIN NATS USER JWT-----\neyJhbGciOi.fake.jwt\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        let path = std::env::temp_dir().join(format!("leaf-unit-{}.creds", fastrand::u64(..)));
        std::fs::write(&path, text).unwrap();
        let (jwt, sig) = sign_with_credentials(&path, "n0nce").unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(jwt, "eyJhbGciOi.fake.jwt");
        let raw = data_encoding::BASE64URL_NOPAD
            .decode(sig.as_bytes())
            .unwrap();
        assert!(user.verify(b"n0nce", &raw).is_ok());
        assert!(matches!(
            sign_with_credentials(std::path::Path::new("/nonexistent.creds"), "n"),
            Err(DialError::Credentials(_))
        ));
    }

    #[test]
    fn urls_rotate_and_learned_ones_are_added_once() {
        let r = RemoteState::new(Remote::urls(["nats://a:7422", "b"]));
        assert_eq!(r.next_url().as_deref(), Some("nats://a:7422"));
        assert_eq!(r.next_url().as_deref(), Some("b"));
        r.learn_urls(&["a:7422".into(), "c:7422".into()]);
        assert_eq!(r.next_url().as_deref(), Some("c:7422"));
        assert_eq!(r.next_url().as_deref(), Some("nats://a:7422"));
        // After a connection, the next dial starts with the URL that worked.
        r.connected();
        assert_eq!(r.next_url().as_deref(), Some("nats://a:7422"));
    }
}
