//! nats-server's `leafnodes { ... }` block, read into the server crate's [`Leafnodes`]:
//! accepting leafnodes (`listen`/`port`/`host`, `advertise`, `no_advertise`,
//! `authorization { user password account timeout users [...] }`, `tls {}`), joining hubs
//! (`remotes [ { url|urls, account, credentials, tls {} } ]`) and `reconnect`.

use std::path::PathBuf;
use std::time::Duration;

use starling_server::{LeafUser, Leafnodes, Remote};

use super::{ConfigError, Cx, SettingsError, TlsSettings};
use crate::conf::{Item, Value};

/// A `leafnodes {}` block, as given.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LeafSettings {
    host: Option<String>,
    /// `-1` = any free port; `None` (or 0) = leafnodes are not accepted.
    port: Option<i64>,
    advertise: Option<String>,
    no_advertise: bool,
    user: Option<String>,
    password: Option<String>,
    account: Option<String>,
    users: Vec<(String, String, Option<String>)>,
    auth_timeout: Option<Duration>,
    reconnect: Option<Duration>,
    tls: Option<TlsSettings>,
    remotes: Vec<RemoteSettings>,
}

/// One entry of `remotes [...]`.
#[derive(Clone, Debug, Default, PartialEq)]
struct RemoteSettings {
    urls: Vec<String>,
    account: Option<String>,
    credentials: Option<PathBuf>,
    deny_imports: Vec<String>,
    deny_exports: Vec<String>,
    tls: Option<TlsSettings>,
}

impl LeafSettings {
    /// The server's leafnode configuration.
    pub(crate) fn config(&self) -> Result<Leafnodes, SettingsError> {
        let mut l = Leafnodes::new();
        match self.port {
            None | Some(0) => {}
            Some(p @ (-1 | 1..=65535)) => {
                let host = self.host.as_deref().unwrap_or("0.0.0.0");
                let port = p.max(0);
                l = l.listen(if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                });
            }
            Some(p) => return Err(SettingsError::Port(p)),
        }
        if let Some(a) = &self.advertise {
            l = l.advertise(a.clone());
        }
        l = l.no_advertise(self.no_advertise);
        match (&self.user, &self.password) {
            (Some(u), p) => l = l.authorization(u.clone(), p.clone().unwrap_or_default()),
            (None, Some(_)) => return Err(SettingsError::PasswordWithoutUser),
            (None, None) => {}
        }
        if let Some(a) = &self.account {
            l = l.account(a.clone());
        }
        for (user, pass, account) in &self.users {
            let mut u = LeafUser::new(user.clone(), pass.clone());
            if let Some(a) = account {
                u = u.account(a.clone());
            }
            l = l.user(u);
        }
        if let Some(t) = self.auth_timeout {
            l = l.auth_timeout(t);
        }
        if let Some(r) = self.reconnect {
            l = l.reconnect(r);
        }
        if let Some(tls) = self
            .tls
            .as_ref()
            .map(TlsSettings::config)
            .transpose()?
            .flatten()
        {
            l = l.tls(tls);
        }
        for r in &self.remotes {
            let mut remote = Remote::urls(r.urls.iter().cloned());
            if let Some(a) = &r.account {
                remote = remote.account(a.clone());
            }
            if let Some(c) = &r.credentials {
                remote = remote.credentials(c.clone());
            }
            remote = remote
                .deny_imports(r.deny_imports.iter().cloned())
                .deny_exports(r.deny_exports.iter().cloned());
            if let Some(tls) = r
                .tls
                .as_ref()
                .map(TlsSettings::config)
                .transpose()?
                .flatten()
            {
                remote = remote.tls(tls);
            }
            l = l.remote(remote);
        }
        Ok(l)
    }
}

impl Cx<'_> {
    /// The `leafnodes { ... }` block, with nats-server's keys and aliases.
    pub(super) fn leafnodes(
        &self,
        key: &str,
        item: &Item,
        warnings: &mut Vec<String>,
    ) -> Result<LeafSettings, ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.expected(key, item, "a block"));
        };
        let mut s = LeafSettings::default();
        for (k, v) in map.iter() {
            let name = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "listen" => {
                    self.set_listen(&name, v, &mut s.host, &mut s.port)?;
                }
                "port" => s.port = Some(self.int(&name, v)?),
                "host" | "net" => s.host = Some(self.string(&name, v)?),
                "advertise" | "leafnode_advertise" => s.advertise = Some(self.string(&name, v)?),
                "no_advertise" => s.no_advertise = self.boolean(&name, v)?,
                "reconnect" | "reconnect_delay" | "reconnect_interval" => {
                    s.reconnect = Some(self.duration(&name, v, warnings)?)
                }
                "authorization" => self.leaf_authorization(&name, v, &mut s, warnings)?,
                "tls" => s.tls = Some(self.tls(&name, v, warnings)?),
                "remotes" => s.remotes = self.remotes(&name, v, warnings)?,
                "compression" => warnings.push(format!(
                    "{}:{}:{}: \"{name}\" ignored: starling-server leafnodes are not compressed",
                    self.file, v.pos.line, v.pos.col
                )),
                "min_version"
                | "minimum_version"
                | "isolate_leafnode_interest"
                | "isolate"
                | "dial_timeout"
                | "write_deadline"
                | "write_timeout" => {
                    return Err(self.unsupported(&name, v, "this leafnode option"))
                }
                _ => return Err(self.unknown(name, v)),
            }
        }
        Ok(s)
    }

    /// `leafnodes.authorization { user password account timeout users [...] }`.
    fn leaf_authorization(
        &self,
        key: &str,
        item: &Item,
        s: &mut LeafSettings,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.expected(key, item, "a block"));
        };
        for (k, v) in map.iter() {
            let name = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "user" | "username" => s.user = Some(self.string(&name, v)?),
                "password" | "pass" => s.password = Some(self.string(&name, v)?),
                "account" => s.account = Some(self.string(&name, v)?),
                "timeout" => s.auth_timeout = Some(self.duration(&name, v, warnings)?),
                "users" => s.users = self.leaf_users(&name, v)?,
                "nkey" | "proxy_required" => {
                    return Err(self.unsupported(&name, v, "this leafnode authorization option"))
                }
                _ => return Err(self.unknown(name, v)),
            }
        }
        Ok(())
    }

    /// `users [ { user password account } ]` of leafnode authorization.
    fn leaf_users(
        &self,
        key: &str,
        item: &Item,
    ) -> Result<Vec<(String, String, Option<String>)>, ConfigError> {
        let Value::Array(list) = &item.value else {
            return Err(self.invalid(
                key,
                item,
                format!(
                    "Expected users field to be an array, got {}",
                    item.value.kind()
                ),
            ));
        };
        let mut users = Vec::with_capacity(list.len());
        for entry in list {
            let Value::Map(map) = &entry.value else {
                return Err(self.expected(key, entry, "a user block"));
            };
            let (mut user, mut pass, mut account) = (None, None, None);
            for (k, v) in map.iter() {
                let name = format!("{key}.{k}");
                match k.to_ascii_lowercase().as_str() {
                    "user" | "username" => user = Some(self.string(&name, v)?),
                    "pass" | "password" => pass = Some(self.string(&name, v)?),
                    "account" => account = Some(self.string(&name, v)?),
                    _ => return Err(self.unknown(name, v)),
                }
            }
            let user = user.ok_or_else(|| self.invalid(key, entry, "a user needs a name"))?;
            users.push((user, pass.unwrap_or_default(), account));
        }
        Ok(users)
    }

    /// A subject or a list of subjects.
    fn subjects(&self, key: &str, item: &Item) -> Result<Vec<String>, ConfigError> {
        match &item.value {
            Value::Array(list) => list.iter().map(|s| self.string(key, s)).collect(),
            _ => Ok(vec![self.string(key, item)?]),
        }
    }

    /// `remotes [ { url | urls, account, credentials, deny_imports, deny_exports, tls } ]`.
    fn remotes(
        &self,
        key: &str,
        item: &Item,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<RemoteSettings>, ConfigError> {
        let Value::Array(list) = &item.value else {
            return Err(self.expected(key, item, "an array of remotes"));
        };
        let mut remotes = Vec::with_capacity(list.len());
        for entry in list {
            let Value::Map(map) = &entry.value else {
                return Err(self.expected(key, entry, "a remote block"));
            };
            let mut r = RemoteSettings::default();
            for (k, v) in map.iter() {
                let name = format!("{key}.{k}");
                match k.to_ascii_lowercase().as_str() {
                    "url" | "urls" => match &v.value {
                        Value::Array(urls) => {
                            for u in urls {
                                r.urls.push(self.string(&name, u)?);
                            }
                        }
                        _ => r.urls.push(self.string(&name, v)?),
                    },
                    "account" | "local" => r.account = Some(self.string(&name, v)?),
                    "credentials" | "creds" => {
                        r.credentials = Some(PathBuf::from(self.string(&name, v)?))
                    }
                    "tls" => r.tls = Some(self.tls(&name, v, warnings)?),
                    "deny_imports" | "deny_import" => r.deny_imports = self.subjects(&name, v)?,
                    "deny_exports" | "deny_export" => r.deny_exports = self.subjects(&name, v)?,
                    "no_randomize" | "dont_randomize" => {
                        self.boolean(&name, v)?;
                    }
                    "compression" => warnings.push(format!(
                        "{}:{}:{}: \"{name}\" ignored: starling-server leafnodes are not compressed",
                        self.file, v.pos.line, v.pos.col
                    )),
                    "nkey" | "seed" | "hub" | "ws_compress" | "ws_compression" | "websocket_compress"
                    | "websocket_compression" | "ws_no_masking" | "websocket_no_masking"
                    | "jetstream_cluster_migrate" | "js_cluster_migrate"
                    | "isolate_leafnode_interest" | "isolate" | "proxy" | "first_info_timeout" => {
                        return Err(self.unsupported(&name, v, "this leafnode remote option"))
                    }
                    _ => return Err(self.unknown(name, v)),
                }
            }
            if r.urls.is_empty() {
                return Err(self.invalid(key, entry, "a leafnode remote needs a url"));
            }
            remotes.push(r);
        }
        Ok(remotes)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{from_map, FromConfig};
    use crate::conf::{self, ConfError};

    fn load(text: &str) -> Result<FromConfig, String> {
        let map = conf::parse_str(text).map_err(|e: ConfError| e.to_string())?;
        from_map(&map, "test.conf").map_err(|e| e.to_string())
    }

    fn parse(text: &str) -> super::super::Settings {
        load(text).expect("parses").settings
    }

    #[test]
    fn hub_and_remotes() {
        let s = parse(
            r#"
            leafnodes {
              listen: "127.0.0.1:7422"
              reconnect: "250ms"
              authorization { users [ { user: la, password: pla, account: A } ] }
              remotes [
                { url: "nats-leaf://u:p@hub1:7422", account: L }
                { urls: ["nats://hub2:7422", "nats://hub3"], credentials: "/x.creds" }
              ]
            }
            "#,
        );
        let l = s.leafnodes.clone().expect("a leafnodes block");
        let d = format!("{:?}", l.config().unwrap());
        assert!(d.contains("listen: Some(\"127.0.0.1:7422\")"), "{d}");
        assert!(d.contains("hub1:7422"), "{d}");
        assert!(!d.contains(":p@"), "the password is not printed: {d}");
        assert!(d.contains("/x.creds"), "{d}");
        assert!(d.contains("users: 1"), "{d}");
    }

    #[test]
    fn unknown_keys_and_missing_urls_are_errors() {
        assert!(load("leafnodes { bogus: 1 }").is_err());
        assert!(load("leafnodes { remotes [ { account: A } ] }").is_err());
    }
}
