//! Cluster URLs as nats-server reads them: `--cluster nats://[user:pass@]host:port` (where to
//! listen for peers, and the credentials they must present) and route URLs (`--routes`, the
//! config file's `cluster.routes`), which may carry the credentials to present to that peer.

use thiserror::Error;

/// Why a cluster or route URL was refused, worded as nats-server words it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum UrlError {
    /// `nats://host` or `bogus`.
    #[error("missing port in address")]
    MissingPort,
    /// `nats://host:x`.
    #[error("invalid port {0:?} after host")]
    InvalidPort(String),
    /// `nats://:6222` as a route: there is nothing to dial.
    #[error("missing host in address")]
    MissingHost,
    /// `--cluster nats://user@host:port`.
    #[error("expected cluster password to be set")]
    MissingPassword,
    /// `cluster_advertise: nats://host:port`.
    #[error("expected host or host:port, without a scheme")]
    NotHostPort,
}

/// The parts of `[scheme://][user[:password]@]host[:port][/path]`.
#[derive(Debug, PartialEq, Eq)]
struct Parts<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
}

fn split(url: &str) -> Result<Parts<'_>, UrlError> {
    let rest = url.trim();
    let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (Some(user), Some(pass)),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        // [::1]:6222
        let (host, after) = v6.split_once(']').ok_or(UrlError::MissingPort)?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(UrlError::InvalidPort(after.to_string())),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    Ok(Parts {
        user,
        password,
        host,
        port,
    })
}

/// What `--cluster URL` says: where to listen, and the credentials peers must present.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClusterListen {
    /// The host (empty = all interfaces).
    pub(crate) host: String,
    /// The port as written: `-1` = any free port, `0` = clustering off (as in nats-server).
    pub(crate) port: i64,
    /// `user:password` from the URL.
    pub(crate) credentials: Option<(String, String)>,
}

/// Parses `--cluster nats://[user:pass@]host:port` as nats-server does: the port is required
/// and may be `-1`; a user needs a password.
pub(crate) fn parse_cluster_listen(url: &str) -> Result<ClusterListen, UrlError> {
    let parts = split(url)?;
    let port = parts.port.ok_or(UrlError::MissingPort)?;
    let port = port
        .parse::<i64>()
        .map_err(|_| UrlError::InvalidPort(format!(":{port}")))?;
    let credentials = match (parts.user, parts.password) {
        (Some(user), Some(password)) => Some((user.to_string(), password.to_string())),
        (Some(_), None) => return Err(UrlError::MissingPassword),
        (None, _) => None,
    };
    Ok(ClusterListen {
        host: parts.host.to_string(),
        port,
        credentials,
    })
}

/// Checks that a route URL names a host and a port (1..65535) that can be dialled.
pub(crate) fn check_route_url(url: &str) -> Result<(), UrlError> {
    let parts = split(url)?;
    let port = parts.port.ok_or(UrlError::MissingPort)?;
    match port.parse::<u16>() {
        Ok(1..) => {}
        _ => return Err(UrlError::InvalidPort(format!(":{port}"))),
    }
    if parts.host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    Ok(())
}

/// The URL with its password replaced by `xxxxx` (as Go's `url.Redacted`), for messages.
pub(crate) fn redact(url: &str) -> String {
    let Ok(parts) = split(url) else {
        return url.to_string();
    };
    match (parts.user, parts.password) {
        (Some(user), Some(password)) if !password.is_empty() => {
            url.replacen(&format!("{user}:{password}@"), &format!("{user}:xxxxx@"), 1)
        }
        _ => url.to_string(),
    }
}

/// Splits `--routes "url-1, url-2"` on commas, trimming spaces; empty entries are dropped, so
/// `--routes ""` means no routes.
pub(crate) fn split_routes(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks a `cluster_advertise` value: `host` or `host:port`, no scheme.
pub(crate) fn check_advertise(addr: &str) -> Result<(), UrlError> {
    if addr.contains("://") || addr.contains('@') || addr.contains('/') {
        return Err(UrlError::NotHostPort);
    }
    let parts = split(addr)?;
    if parts.host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    match parts.port.map(str::parse::<u16>) {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(_)) => Err(UrlError::InvalidPort(format!(
            ":{}",
            parts.port.unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_listen_urls() {
        assert_eq!(
            parse_cluster_listen("nats://0.0.0.0:6222"),
            Ok(ClusterListen {
                host: "0.0.0.0".into(),
                port: 6222,
                credentials: None
            })
        );
        let c = parse_cluster_listen("nats://127.0.0.1:-1").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", -1));
        let c = parse_cluster_listen("nats-route://ruser:T0p@[::1]:6222/").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 6222));
        assert_eq!(c.credentials, Some(("ruser".into(), "T0p".into())));
        // A password may contain ':' and '@' (the last '@' ends the user info).
        let c = parse_cluster_listen("nats://u:a:b@c@h:1").unwrap();
        assert_eq!(c.credentials, Some(("u".into(), "a:b@c".into())));
        assert_eq!(parse_cluster_listen(":6222").unwrap().host, "");
    }

    #[test]
    fn cluster_listen_errors_are_nats_servers() {
        for (url, err) in [
            ("bogus", UrlError::MissingPort),
            ("nats://h", UrlError::MissingPort),
            ("nats://h:x", UrlError::InvalidPort(":x".into())),
            ("nats://h:", UrlError::InvalidPort(":".into())),
            ("nats://u@h:1", UrlError::MissingPassword),
            ("nats://[::1", UrlError::MissingPort),
            ("nats://[::1]x", UrlError::InvalidPort("x".into())),
        ] {
            assert_eq!(parse_cluster_listen(url), Err(err), "{url}");
        }
        assert_eq!(
            UrlError::MissingPassword.to_string(),
            "expected cluster password to be set"
        );
        assert_eq!(
            UrlError::InvalidPort(":x".into()).to_string(),
            "invalid port \":x\" after host"
        );
    }

    #[test]
    fn route_urls() {
        for ok in [
            "nats://10.0.0.1:6222",
            "nats-route://u:p@seed.local:6222/",
            "10.0.0.1:6222",
            "nats://[fe80::1]:6222",
        ] {
            assert_eq!(check_route_url(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_route_url("nats://h"), Err(UrlError::MissingPort));
        assert_eq!(check_route_url("nats://:6222"), Err(UrlError::MissingHost));
        for bad in ["nats://h:0", "nats://h:-1", "nats://h:70000", "nats://h:x"] {
            assert!(
                matches!(check_route_url(bad), Err(UrlError::InvalidPort(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("nats://u:secret@h:1"), "nats://u:xxxxx@h:1");
        assert_eq!(redact("nats://u@h:1"), "nats://u@h:1");
        assert_eq!(redact("nats://h:1"), "nats://h:1");
    }

    #[test]
    fn route_lists() {
        assert_eq!(
            split_routes("nats://a:1, nats://b:2 ,,"),
            ["nats://a:1", "nats://b:2"]
        );
        assert!(split_routes("").is_empty());
    }

    #[test]
    fn advertise_addresses() {
        assert_eq!(check_advertise("10.0.0.1:6222"), Ok(()));
        assert_eq!(check_advertise("node-1.example.com"), Ok(()));
        assert_eq!(check_advertise("[::1]:6222"), Ok(()));
        assert_eq!(check_advertise("nats://h:1"), Err(UrlError::NotHostPort));
        assert!(check_advertise("h:x").is_err());
        assert!(check_advertise(":6222").is_err());
    }
}
