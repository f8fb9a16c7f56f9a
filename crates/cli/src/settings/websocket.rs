//! nats-server's `websocket { ... }` block, read into the server crate's [`Websocket`]. As in
//! nats-server, the block does nothing without a port (`port`, or `listen`; `-1` = any free
//! port), and credentials of its own go in an `authorization {}` block inside it.

use std::time::Duration;

use starling_server::{Auth, Websocket};

use super::{ConfigError, Cx, SettingsError, TlsSettings};
use crate::conf::{Item, Value};

/// A `websocket {}` block, as given.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WebsocketSettings {
    pub(crate) host: Option<String>,
    /// 0 or unset: no WebSocket listener.
    pub(crate) port: Option<i64>,
    pub(crate) advertise: Option<String>,
    pub(crate) no_tls: bool,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) same_origin: bool,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) compression: bool,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) auth_timeout: Option<Duration>,
    pub(crate) jwt_cookie: Option<String>,
    pub(crate) user_cookie: Option<String>,
    pub(crate) pass_cookie: Option<String>,
    pub(crate) token_cookie: Option<String>,
    pub(crate) no_auth_user: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl WebsocketSettings {
    /// The server's WebSocket configuration; `None` without a port.
    pub(crate) fn config(&self) -> Result<Option<Websocket>, SettingsError> {
        let port = match self.port.unwrap_or(0) {
            0 => return Ok(None),
            -1 => 0,
            p @ 1..=65535 => p,
            p => return Err(SettingsError::Port(p)),
        };
        let host = self
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or("0.0.0.0");
        let listen = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut ws = Websocket::new()
            .listen(listen)
            .no_tls(self.no_tls)
            .same_origin(self.same_origin)
            .allowed_origins(self.allowed_origins.iter().cloned())
            .compression(self.compression);
        if let Some(tls) = &self.tls {
            if let Some(tls) = tls.config()? {
                ws = ws.tls(tls);
            }
        }
        if let Some(a) = &self.advertise {
            ws = ws.advertise(a.clone());
        }
        if let Some(d) = self.handshake_timeout {
            ws = ws.handshake_timeout(d);
        }
        match (&self.user, &self.password, &self.token) {
            (Some(user), password, _) => {
                ws = ws.auth(Auth::UserPassword {
                    user: user.clone(),
                    password: password.clone().unwrap_or_default(),
                })
            }
            (None, Some(_), _) => return Err(SettingsError::PasswordWithoutUser),
            (None, None, Some(token)) => ws = ws.auth(Auth::Token(token.clone())),
            (None, None, None) => {}
        }
        if let Some(d) = self.auth_timeout {
            ws = ws.auth_timeout(d);
        }
        for (cookie, set) in [
            (
                &self.jwt_cookie,
                Websocket::jwt_cookie as fn(Websocket, String) -> Websocket,
            ),
            (&self.user_cookie, Websocket::user_cookie),
            (&self.pass_cookie, Websocket::pass_cookie),
            (&self.token_cookie, Websocket::token_cookie),
        ] {
            if let Some(name) = cookie.as_ref().filter(|n| !n.is_empty()) {
                ws = set(ws, name.clone());
            }
        }
        if let Some(u) = self.no_auth_user.as_ref().filter(|u| !u.is_empty()) {
            ws = ws.no_auth_user(u.clone());
        }
        for (k, v) in &self.headers {
            ws = ws.header(k.clone(), v.clone());
        }
        Ok(Some(ws))
    }
}

impl Cx<'_> {
    /// The `websocket { ... }` block, with nats-server's keys and aliases.
    pub(super) fn websocket(
        &self,
        key: &str,
        item: &Item,
        warnings: &mut Vec<String>,
    ) -> Result<WebsocketSettings, ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.expected(key, item, "a block"));
        };
        let mut ws = WebsocketSettings::default();
        for (k, v) in map.iter() {
            let name = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "listen" => {
                    self.set_listen(&name, v, &mut ws.host, &mut ws.port)?;
                }
                "port" => ws.port = Some(self.int(&name, v)?),
                "host" | "net" => ws.host = Some(self.string(&name, v)?),
                "advertise" => ws.advertise = Some(self.string(&name, v)?),
                "no_tls" => ws.no_tls = self.boolean(&name, v)?,
                "tls" => ws.tls = Some(self.tls(&name, v, warnings)?),
                "same_origin" => ws.same_origin = self.boolean(&name, v)?,
                "allowed_origins" | "allowed_origin" | "allow_origins" | "allow_origin"
                | "origins" | "origin" => ws.allowed_origins = self.strings(&name, v)?,
                "handshake_timeout" => {
                    ws.handshake_timeout = Some(match &v.value {
                        // A bare number is seconds here, without a warning (nats-server).
                        Value::Int(n) => Duration::from_secs(
                            u64::try_from(*n)
                                .map_err(|_| self.invalid(&name, v, "negative duration"))?,
                        ),
                        _ => self.duration(&name, v, warnings)?,
                    })
                }
                "compress" | "compression" => ws.compression = self.boolean(&name, v)?,
                "authorization" | "authentication" => self.websocket_auth(&name, v, &mut ws)?,
                "jwt_cookie" => ws.jwt_cookie = Some(self.string(&name, v)?),
                "user_cookie" => ws.user_cookie = Some(self.string(&name, v)?),
                "pass_cookie" => ws.pass_cookie = Some(self.string(&name, v)?),
                "token_cookie" => ws.token_cookie = Some(self.string(&name, v)?),
                "no_auth_user" => ws.no_auth_user = Some(self.string(&name, v)?),
                "headers" => {
                    let Value::Map(headers) = &v.value else {
                        return Err(self.expected(&name, v, "a block of header names and values"));
                    };
                    for (h, value) in headers.iter() {
                        let value = self.string(&format!("{name}.{h}"), value)?;
                        ws.headers.push((h.to_string(), value));
                    }
                }
                "ping_interval" => warnings.push(format!(
                    "{}:{}:{}: \"{name}\" ignored: WebSocket clients use the server's ping_interval",
                    self.file, v.pos.line, v.pos.col
                )),
                _ => return Err(self.unknown(name, v)),
            }
        }
        Ok(ws)
    }

    /// `websocket { authorization { user password token timeout } }`.
    fn websocket_auth(
        &self,
        key: &str,
        item: &Item,
        ws: &mut WebsocketSettings,
    ) -> Result<(), ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.expected(key, item, "a block"));
        };
        for (k, v) in map.iter() {
            let name = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "user" | "username" => ws.user = Some(self.string(&name, v)?),
                "pass" | "password" => ws.password = Some(self.string(&name, v)?),
                "token" => ws.token = Some(self.string(&name, v)?),
                "timeout" => {
                    let secs = match &v.value {
                        Value::Int(n) => *n as f64,
                        Value::Float(f) => *f,
                        _ => return Err(self.expected(&name, v, "a number of seconds")),
                    };
                    if !(secs.is_finite() && secs >= 0.0) {
                        return Err(self.invalid(&name, v, "negative timeout"));
                    }
                    ws.auth_timeout = Some(Duration::from_secs_f64(secs));
                }
                _ => return Err(self.unknown(name, v)),
            }
        }
        Ok(())
    }

    /// A string or an array of strings.
    fn strings(&self, key: &str, item: &Item) -> Result<Vec<String>, ConfigError> {
        match &item.value {
            Value::Str(s) => Ok(vec![s.clone()]),
            Value::Array(list) => list.iter().map(|v| self.string(key, v)).collect(),
            _ => Err(self.expected(key, item, "a string or an array of strings")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::from_map;
    use crate::conf;

    fn load(text: &str) -> Result<super::super::FromConfig, super::super::ConfigError> {
        from_map(&conf::parse_str(text).unwrap(), "test.conf")
    }

    #[test]
    fn the_block_with_nats_servers_keys() {
        let s = load(
            "websocket {\n listen: \"127.0.0.1:8443\"\n no_tls: true\n compression: true\n same_origin: true\n allowed_origins: [\"https://a.example\"]\n handshake_timeout: \"3s\"\n jwt_cookie: jwt\n no_auth_user: bob\n authorization { user: u, password: p, timeout: 1.5 }\n headers { X-Frame-Options: DENY }\n}",
        )
        .unwrap()
        .settings;
        let ws = s.websocket.unwrap();
        assert_eq!(ws.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(ws.port, Some(8443));
        assert!(ws.no_tls && ws.compression && ws.same_origin);
        assert_eq!(ws.allowed_origins, ["https://a.example"]);
        assert_eq!(
            ws.handshake_timeout,
            Some(std::time::Duration::from_secs(3))
        );
        assert_eq!(ws.user.as_deref(), Some("u"));
        assert_eq!(
            ws.auth_timeout,
            Some(std::time::Duration::from_millis(1500))
        );
        assert_eq!(
            ws.headers,
            [("X-Frame-Options".to_string(), "DENY".to_string())]
        );
        assert!(ws.config().unwrap().is_some());
    }

    #[test]
    fn no_port_no_listener_and_errors_name_the_key() {
        let s = load("websocket { no_tls: true }").unwrap().settings;
        assert_eq!(s.websocket.unwrap().config().unwrap(), None);
        let e = load("websocket {\n  port: 8080\n  username: x\n}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.conf:3:2: unknown field \"websocket.username\""
        );
        let e = load("websocket {\n  compression: 3\n}").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("test.conf:2:2: invalid value for \"websocket.compression\""),
            "{e}"
        );
    }
}
