//! The HTTP upgrade (RFC 6455 §4.2): the request read and checked in nats-server's order, each
//! refusal answered with its HTTP status (405 for a method other than GET, 400 for a missing
//! or wrong header, 403 for an origin not allowed), the 101 response with the extensions
//! agreed.

use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::transport::websocket::Negotiated;

/// The longest upgrade request read.
const MAX_REQUEST: usize = 16 * 1024;
/// Headers looked at, at most.
const MAX_HEADERS: usize = 64;

/// Why an upgrade was refused: the status sent, and the reason logged.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) reason: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket handshake error: {}", self.reason)
    }
}

/// What an accepted upgrade told.
#[derive(Debug, Default)]
pub(crate) struct Upgrade {
    pub(crate) negotiated: Negotiated,
    /// The credentials its cookies carried, by the configured cookie names.
    pub(crate) cookies: Cookies,
    /// `X-Forwarded-For`, when it is an IP address.
    pub(crate) forwarded_for: Option<String>,
    /// The path ends in `/leafnode`: a leafnode connection, which this server does not take
    /// (nats-server upgrades it, then closes it).
    pub(crate) leafnode: bool,
}

/// Credentials read from cookies.
#[derive(Debug, Default, Clone)]
pub(crate) struct Cookies {
    pub(crate) jwt: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) pass: Option<String>,
    pub(crate) token: Option<String>,
}

/// The upgrade rules of one listener, from its configuration.
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) compression: bool,
    pub(crate) same_origin: bool,
    /// Allowed origins: (scheme, lowercase host, port).
    pub(crate) allowed: Vec<(String, String, String)>,
    pub(crate) tls: bool,
    pub(crate) jwt_cookie: Option<String>,
    pub(crate) user_cookie: Option<String>,
    pub(crate) pass_cookie: Option<String>,
    pub(crate) token_cookie: Option<String>,
    /// Extra response headers, already formatted (`Name: value\r\n` each).
    pub(crate) raw_headers: String,
}

impl Rules {
    pub(crate) fn new(c: &super::Websocket, tls: bool) -> Self {
        let allowed = c
            .allowed_origins
            .iter()
            .filter_map(|o| parse_allowed_origin(o).ok())
            .collect();
        let raw_headers = c
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        Self {
            compression: c.compression,
            same_origin: c.same_origin,
            allowed,
            tls,
            jwt_cookie: c.jwt_cookie.clone(),
            user_cookie: c.user_cookie.clone(),
            pass_cookie: c.pass_cookie.clone(),
            token_cookie: c.token_cookie.clone(),
            raw_headers,
        }
    }
}

/// An allowed origin as nats-server checks it at start: an absolute `http(s)` URL with a
/// host. Returns (scheme, lowercase host, port).
pub(crate) fn parse_allowed_origin(origin: &str) -> Result<(String, String, String), String> {
    let u = url::Url::parse(origin).map_err(|e| format!("unable to parse allowed origin: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!(
            "unable to parse allowed origin {origin:?}: allowed origins must be absolute URLs with http or https scheme"
        ));
    }
    let Some(host) = u.host_str().filter(|h| !h.is_empty()) else {
        return Err(format!(
            "unable to parse allowed origin {origin:?}: host is required"
        ));
    };
    let port = u
        .port_or_known_default()
        .map(|p| p.to_string())
        .unwrap_or_default();
    Ok((u.scheme().to_string(), host.to_ascii_lowercase(), port))
}

/// One request's headers, as Go's `http.Header` looks them up (names case-insensitive, each
/// occurrence a value).
struct Headers<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Headers<'a> {
    fn all(&self, name: &'a str) -> impl Iterator<Item = &'a str> + '_ {
        self.0
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn get(&self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }

    /// Whether one of the comma-separated tokens of `name` is `value` (case-insensitive).
    fn contains(&self, name: &'a str, value: &str) -> bool {
        self.all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(value))
    }
}

/// Reads the upgrade request from `io` and answers it: a 101 and what was agreed, or the
/// refusal's status (then the caller closes). `Ok(None)`: the client went away first.
pub(crate) async fn upgrade<S>(
    io: &mut S,
    rules: &Rules,
) -> std::io::Result<Result<Upgrade, Refused>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= MAX_REQUEST {
            let refused = Refused {
                status: 431,
                reason: "request header too large".into(),
            };
            respond_error(io, &refused).await?;
            return Ok(Err(refused));
        }
        let mut chunk = [0u8; 2048];
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = match req.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => Ok(()),
        Ok(httparse::Status::Partial) => Err("incomplete request".to_string()),
        Err(e) => Err(format!("malformed request: {e}")),
    };
    let result = match parsed {
        Ok(()) => check(&req, end < buf.len(), rules),
        Err(reason) => Err(Refused {
            status: 400,
            reason,
        }),
    };
    match result {
        Ok((upgrade, response)) => {
            io.write_all(response.as_bytes()).await?;
            io.flush().await?;
            Ok(Ok(upgrade))
        }
        Err(refused) => {
            respond_error(io, &refused).await?;
            Ok(Err(refused))
        }
    }
}

/// nats-server's `wsUpgrade` checks, in its order; the 101 response when they pass.
fn check(
    req: &httparse::Request<'_, '_>,
    early_data: bool,
    rules: &Rules,
) -> Result<(Upgrade, String), Refused> {
    let refuse = |status: u16, reason: &str| Refused {
        status,
        reason: reason.to_string(),
    };
    let headers = Headers(
        req.headers
            .iter()
            .filter_map(|h| Some((h.name, std::str::from_utf8(h.value).ok()?)))
            .collect(),
    );
    let path = req.path.unwrap_or_default();
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.ends_with("/mqtt") {
        // Before anything else, as nats-server checks it (MQTT is not served here).
        return Err(refuse(404, "mqtt websocket endpoint not enabled"));
    }
    if req.method != Some("GET") {
        return Err(refuse(405, "request method must be GET"));
    }
    if headers.get("Host").is_none_or(|h| h.trim().is_empty()) {
        return Err(refuse(400, "'Host' missing in request"));
    }
    if !headers.contains("Upgrade", "websocket") {
        return Err(refuse(400, "invalid value for header 'Upgrade'"));
    }
    if !headers.contains("Connection", "Upgrade") {
        return Err(refuse(400, "invalid value for header 'Connection'"));
    }
    let Some(key) = headers.get("Sec-WebSocket-Key").filter(|k| !k.is_empty()) else {
        return Err(refuse(400, "key missing"));
    };
    let decoded = data_encoding::BASE64.decode(key.as_bytes());
    if decoded.map_or(true, |d| d.len() != 16) {
        return Err(refuse(400, "invalid websocket key"));
    }
    if !headers.contains("Sec-WebSocket-Version", "13") {
        return Err(refuse(400, "invalid version"));
    }
    if let Err(why) = check_origin(&headers, rules) {
        return Err(refuse(403, &format!("origin not allowed: {why}")));
    }
    let compress = rules.compression && offers_deflate(&headers);
    let no_masking = headers.get("Nats-No-Masking") == Some("true");
    if early_data {
        return Err(refuse(400, "client sent data before handshake is complete"));
    }
    let mut response = String::with_capacity(256);
    response.push_str(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    response.push_str(&tungstenite::handshake::derive_accept_key(key.as_bytes()));
    response.push_str("\r\n");
    if compress {
        response.push_str(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n",
        );
    }
    if no_masking {
        response.push_str("Nats-No-Masking: true\r\n");
    }
    response.push_str(&rules.raw_headers);
    response.push_str("\r\n");

    let forwarded_for = headers
        .get("X-Forwarded-For")
        .map(str::trim)
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string);
    let mut negotiated = Negotiated {
        compress,
        no_masking,
        ..Negotiated::default()
    };
    if let Some(ua) = headers
        .get("User-Agent")
        .filter(|ua| ua.starts_with("Mozilla/"))
    {
        negotiated.browser = true;
        // Safari (which says "Version/" as well as "Safari/") cannot take fragmented
        // compressed messages.
        negotiated.no_compressed_fragments =
            compress && ua.contains("Version/") && ua.contains("Safari/");
    }
    let cookies = cookies(&headers, rules);
    Ok((
        Upgrade {
            negotiated,
            cookies,
            forwarded_for,
            leafnode: path.ends_with("/leafnode"),
        },
        response,
    ))
}

/// Whether the client offers permessage-deflate (its parameters do not matter: the server
/// always answers without context takeover, both ways).
fn offers_deflate(headers: &Headers<'_>) -> bool {
    headers
        .all("Sec-WebSocket-Extensions")
        .flat_map(|v| v.split(','))
        .flat_map(|ext| ext.split(';'))
        .any(|p| {
            p.trim_matches([' ', '\t'])
                .eq_ignore_ascii_case("permessage-deflate")
        })
}

/// nats-server's `checkOrigin`: a request without `Origin` passes; otherwise it must be this
/// listener's own origin (`same_origin`) and one of `allowed_origins`, as configured.
fn check_origin(headers: &Headers<'_>, rules: &Rules) -> Result<(), String> {
    if !rules.same_origin && rules.allowed.is_empty() {
        return Ok(());
    }
    let origin = headers
        .get("Origin")
        .filter(|o| !o.is_empty())
        .or_else(|| headers.get("Sec-WebSocket-Origin"))
        .filter(|o| !o.is_empty());
    let Some(origin) = origin else {
        return Ok(());
    };
    let u = url::Url::parse(origin).map_err(|e| e.to_string())?;
    let scheme = u.scheme().to_string();
    let (oh, op) = host_and_port(scheme == "https", origin_authority(origin))?;
    if rules.same_origin {
        let host = headers.get("Host").unwrap_or_default();
        let (rh, rp) = host_and_port(rules.tls, host)?;
        let rs = if rules.tls { "https" } else { "http" };
        if oh != rh || op != rp || !scheme.eq_ignore_ascii_case(rs) {
            return Err("not same origin".into());
        }
    }
    if !rules.allowed.is_empty() {
        let allowed = rules
            .allowed
            .iter()
            .any(|(s, h, p)| *s == scheme && *h == oh && *p == op);
        if !allowed {
            return Err("not in the allowed list".into());
        }
    }
    Ok(())
}

/// The `host[:port]` of an origin URL, as written.
fn origin_authority(origin: &str) -> &str {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// Go's `wsGetHostAndPort`: the host (lowercase) and port, the scheme's default port when
/// none is given.
fn host_and_port(tls: bool, hostport: &str) -> Result<(String, String), String> {
    let default = if tls { "443" } else { "80" };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, "")) => (h, default),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (h, p),
                None => return Err(format!("address {hostport}: missing port in address")),
            },
            None => return Err(format!("address {hostport}: missing ']' in address")),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!("address {hostport}: too many colons in address"))
            }
            Some((h, p)) => (h, p),
            None => (hostport, default),
        }
    };
    Ok((host.to_ascii_lowercase(), port.to_string()))
}

/// The configured cookies' values (quotes taken off, as Go's cookie parser does).
fn cookies(headers: &Headers<'_>, rules: &Rules) -> Cookies {
    let mut found = Cookies::default();
    for pair in headers.all("Cookie").flat_map(|v| v.split(';')) {
        let Some((name, value)) = pair.trim().split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value)
            .to_string();
        let is = |c: &Option<String>| c.as_deref() == Some(name);
        if is(&rules.jwt_cookie) {
            found.jwt = Some(value);
        } else if is(&rules.user_cookie) {
            found.user = Some(value);
        } else if is(&rules.pass_cookie) {
            found.pass = Some(value);
        } else if is(&rules.token_cookie) {
            found.token = Some(value);
        }
    }
    found
}

/// The refusal as Go's `http.Error` writes it (with nats-server's `Sec-Websocket-Version`
/// header), then the connection is closed.
async fn respond_error<S: AsyncWrite + Unpin>(
    io: &mut S,
    refused: &Refused,
) -> std::io::Result<()> {
    let text = status_text(refused.status);
    let body = format!("{text}\n");
    let response = format!(
        "HTTP/1.1 {} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nSec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        refused.status,
        body.len(),
    );
    io.write_all(response.as_bytes()).await?;
    io.flush().await
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_as_go_splits_them() {
        assert_eq!(
            host_and_port(false, "Example.com").unwrap(),
            ("example.com".into(), "80".into())
        );
        assert_eq!(
            host_and_port(true, "example.com").unwrap(),
            ("example.com".into(), "443".into())
        );
        assert_eq!(
            host_and_port(false, "h:8080").unwrap(),
            ("h".into(), "8080".into())
        );
        assert_eq!(
            host_and_port(false, "[::1]:80").unwrap(),
            ("::1".into(), "80".into())
        );
        assert!(host_and_port(false, "a:b:c").is_err());
    }

    #[test]
    fn allowed_origins_need_http_and_a_host() {
        assert_eq!(
            parse_allowed_origin("https://Example.com").unwrap(),
            ("https".into(), "example.com".into(), "443".into())
        );
        assert!(parse_allowed_origin("ftp://example.com").is_err());
        assert!(parse_allowed_origin("example.com").is_err());
    }
}
