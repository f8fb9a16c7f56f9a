//! The one place that splits URLs and `host:port`: seed and gossip URLs
//! (`nats-route://user:pass@host:port/`), bare `host:port`, IPv6 in brackets.

use url::{Host, Url};

/// nats-server's default cluster port, for route URLs that name none.
pub(crate) const DEFAULT_ROUTE_PORT: u16 = 6222;

/// A peer URL, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerUrl {
    /// `host:port`, with an IPv6 host in brackets: what `TcpStream::connect` takes.
    pub(crate) addr: String,
    /// The host alone (no brackets): the TLS server name to ask for.
    pub(crate) host: String,
    pub(crate) user: Option<String>,
    pub(crate) pass: Option<String>,
}

/// Splits `scheme://[user[:pass]@]host[:port][/]`, or a bare `host:port`. `default_port` applies
/// when the URL names none. `None` for anything without a host.
pub(crate) fn parse_url(s: &str, default_port: u16) -> Option<PeerUrl> {
    let s = s.trim();
    let url = if s.contains("://") {
        Url::parse(s).ok()?
    } else {
        // A bare host:port: any scheme that is not "special" keeps the host as written.
        Url::parse(&format!("nats://{s}")).ok()?
    };
    let host = match url.host()? {
        Host::Domain("") => return None,
        Host::Domain(d) => d.to_string(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    let port = url.port().unwrap_or(default_port);
    let decode = |v: &str| {
        percent_encoding::percent_decode_str(v)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = (!url.username().is_empty()).then(|| decode(url.username()));
    let pass = url.password().map(decode);
    Some(PeerUrl {
        addr: join_host_port(&host, port),
        host,
        user,
        pass,
    })
}

/// `host:port`, bracketing an IPv6 host.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Whether `host` is a wildcard listen address.
pub(crate) fn is_unspecified(host: &str) -> bool {
    matches!(host, "0.0.0.0" | "::" | "[::]" | "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_peer_urls() {
        let u = parse_url("nats-route://ruser:T0p%40@10.0.0.1:6222/", 6222).unwrap();
        assert_eq!(u.addr, "10.0.0.1:6222");
        assert_eq!(u.host, "10.0.0.1");
        assert_eq!(u.user.as_deref(), Some("ruser"));
        assert_eq!(u.pass.as_deref(), Some("T0p@"));
        let u = parse_url("seed.local:6222", 1).unwrap();
        assert_eq!((u.addr.as_str(), u.user), ("seed.local:6222", None));
        assert_eq!(parse_url("nats://u:p@h:1", 2).unwrap().addr, "h:1");
        assert_eq!(parse_url("nats://h", 4222).unwrap().addr, "h:4222");
        let u = parse_url("nats-route://[::1]:6222", 1).unwrap();
        assert_eq!((u.addr.as_str(), u.host.as_str()), ("[::1]:6222", "::1"));
        assert_eq!(parse_url("nats://", 1), None);
        assert_eq!(parse_url("", 1), None);
        assert_eq!(join_host_port("::1", 4), "[::1]:4");
    }
}
