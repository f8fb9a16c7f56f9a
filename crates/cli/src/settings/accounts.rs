//! nats-server's account and user configuration: `accounts { NAME: { users, exports, imports,
//! limits, jetstream } }` (or the list form `accounts: [A, B]`), `authorization { users: [...] }`,
//! `no_auth_user`, `system_account`. Read into the server crate's [`Account`] and [`User`]
//! descriptions; errors name the key and its line, in nats-server's words where it has them.
//!
//! How exports and imports fit together (an import's export exists and allows it) is checked
//! by the server crate at start (and by `-t`); what is checked here is what only the file knows:
//! shapes, types, names, duplicates, with their positions.

use std::collections::HashMap;
use std::time::Duration;

use starling_server::{
    Account, Latency, Permissions, ResponsePermission, ResponseType, Sampling, ServiceExport,
    ServiceImport, StreamExport, StreamImport, SubjectPermission, User,
};

use super::jetstream::AccountJetStream;
use super::{ConfigError, Cx};
use crate::conf::{Item, Map, Pos, Value};
use starling_server::gotime::parse_duration;

/// nats-server reads an empty subject list as no list at all: `allow: []` allows everything.
fn with_allow(sp: SubjectPermission, allow: Vec<String>) -> SubjectPermission {
    if allow.is_empty() {
        sp
    } else {
        sp.allow(allow)
    }
}

/// Where each user name was first written, to report duplicates across every account and the
/// `authorization` block as nats-server does.
#[derive(Default)]
pub(super) struct UserNames(HashMap<String, Pos>);

impl Cx<'_> {
    /// `users: [{user|username, password|pass}, ...]`.
    pub(super) fn users(
        &self,
        key: &str,
        item: &Item,
        seen: &mut UserNames,
    ) -> Result<Vec<User>, ConfigError> {
        let Value::Array(entries) = &item.value else {
            return Err(self.expected(key, item, "an array of users"));
        };
        let mut users = Vec::new();
        for entry in entries {
            let Value::Map(map) = &entry.value else {
                return Err(self.expected(key, entry, "a user map"));
            };
            let (mut name, mut password, mut permissions, mut nkey) = (None, None, None, None);
            for (k, v) in map.iter() {
                let full = format!("{key}.{k}");
                match k.to_ascii_lowercase().as_str() {
                    "user" | "username" => name = Some(self.string(&full, v)?),
                    "password" | "pass" => password = Some(self.string(&full, v)?),
                    "permission" | "permissions" | "authorization" => {
                        permissions = Some(self.permissions(&full, v)?)
                    }
                    "nkey" => {
                        let key = self.string(&full, v)?;
                        if !User::nkey(key.as_str()).is_valid_nkey() {
                            return Err(self.invalid(
                                &full,
                                v,
                                format!("Not a valid public nkey for a user: {key:?}"),
                            ));
                        }
                        nkey = Some(key);
                    }
                    "allowed_connection_types" | "connection_types" | "clients" => {
                        return Err(self.unsupported(&full, v, "allowed connection types"))
                    }
                    _ => return Err(self.unknown(full, v)),
                }
            }
            let mut user = match (nkey, name) {
                (Some(_), Some(_)) => {
                    return Err(self.invalid(
                        key,
                        entry,
                        "Nkey users do not take usernames or passwords",
                    ))
                }
                (Some(_), None) if password.is_some() => {
                    return Err(self.invalid(
                        key,
                        entry,
                        "Nkey users do not take usernames or passwords",
                    ))
                }
                (Some(nkey), None) => User::nkey(nkey),
                (None, Some(name)) => User::new(name, password.unwrap_or_default()),
                (None, None) => {
                    return Err(self.invalid(key, entry, "a user needs a user name or an nkey"))
                }
            };
            let name = user.name().to_string();
            if seen.0.insert(name.clone(), entry.pos).is_some() {
                let what = if user.is_nkey() { "nkey" } else { "user" };
                return Err(self.invalid(key, item, format!("Duplicate {what} {name:?} detected")));
            }
            if let Some(p) = permissions {
                user = user.permissions(p);
            }
            users.push(user);
        }
        Ok(users)
    }

    /// The top-level `accounts` block (map form) or list of names.
    pub(super) fn accounts(
        &self,
        key: &str,
        item: &Item,
        seen: &mut UserNames,
        jetstream: &mut Vec<AccountJetStream>,
    ) -> Result<Vec<Account>, ConfigError> {
        let mut accounts = Vec::new();
        let mut names: HashMap<String, ()> = HashMap::new();
        let mut add = |name: &str, at: &Item, accounts: &mut Vec<Account>, a: Account| {
            if name == starling_server::GLOBAL_ACCOUNT {
                return Err(self.invalid(key, at, format!("{name:?} is a Reserved Account")));
            }
            if names.insert(name.to_string(), ()).is_some() {
                return Err(self.invalid(key, at, format!("Duplicate Account Entry: {name}")));
            }
            accounts.push(a);
            Ok(())
        };
        match &item.value {
            Value::Array(list) => {
                for entry in list {
                    let name = self.string(key, entry)?;
                    add(&name, entry, &mut accounts, Account::new(&name))?;
                }
            }
            Value::Map(map) => {
                for (name, block) in map.iter() {
                    let Value::Map(block_map) = &block.value else {
                        return Err(self.invalid(key, block, "Expected map entries for accounts"));
                    };
                    let (account, js) =
                        self.account(&format!("{key}.{name}"), name, block_map, seen)?;
                    add(name, block, &mut accounts, account)?;
                    jetstream.extend(js);
                }
            }
            _ => return Err(self.expected(key, item, "a map or list of accounts")),
        }
        Ok(accounts)
    }

    /// One account's block, and its `jetstream` if it has one.
    fn account(
        &self,
        key: &str,
        name: &str,
        map: &Map,
        seen: &mut UserNames,
    ) -> Result<(Account, Option<AccountJetStream>), ConfigError> {
        let mut account = Account::new(name);
        let mut jetstream = None;
        for (k, v) in map.iter() {
            let full = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "users" => {
                    for user in self.users(&full, v, seen)? {
                        account = account.user(user);
                    }
                }
                "exports" => {
                    for entry in self.list(&full, v)? {
                        account = self.export(&full, entry, account)?;
                    }
                }
                "imports" => {
                    for entry in self.list(&full, v)? {
                        account = self.import(&full, entry, account)?;
                    }
                }
                "limits" => account = self.limits(&full, v, account)?,
                "jetstream" => jetstream = Some(self.account_jetstream(&full, name, v)?),
                "nkey" => return Err(self.unsupported(&full, v, "account nkeys")),
                "default_permissions" => {
                    account = account.default_permissions(self.permissions(&full, v)?)
                }
                "mappings" | "maps" => return Err(self.unsupported(&full, v, "subject mappings")),
                "msg_trace" | "trace_dest" => {
                    return Err(self.unsupported(&full, v, "message tracing"))
                }
                _ => return Err(self.unknown(full, v)),
            }
        }
        Ok((account, jetstream))
    }

    /// `permissions { publish|pub|import, subscribe|sub|export, allow_responses }`, as
    /// nats-server's `parseUserPermissions`: each direction a subject, a list (an allow
    /// list) or `{allow, deny}`; subjects themselves are checked by the server crate.
    pub(super) fn permissions(&self, key: &str, item: &Item) -> Result<Permissions, ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.invalid(
                key,
                item,
                format!(
                    "Expected permissions to be a map/struct, got {}",
                    item.value.kind()
                ),
            ));
        };
        let mut p = Permissions::new();
        for (k, v) in map.iter() {
            let full = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "pub" | "publish" | "import" => {
                    if let Some(sp) = self.subject_permission(&full, v)? {
                        p = p.publish(sp);
                    }
                }
                "sub" | "subscribe" | "export" => {
                    if let Some(sp) = self.subject_permission(&full, v)? {
                        p = p.subscribe(sp);
                    }
                }
                "publish_allow_responses" | "allow_responses" => {
                    if let Some(rp) = self.allow_responses(&full, v)? {
                        p = p.allow_responses(rp);
                    }
                }
                _ => {
                    return Err(self.invalid(
                        &full,
                        v,
                        format!("Unknown field {k:?} parsing permissions"),
                    ))
                }
            }
        }
        // The subjects, with the server crate's own check and words, reported where the
        // block was written (`-t` and start would refuse them too, without a position).
        p.validate()
            .map_err(|e| self.invalid(key, item, e.to_string()))?;
        Ok(p)
    }

    /// A subject, a list (both allow lists) or `{allow, deny}`; `None` for an empty map.
    fn subject_permission(
        &self,
        key: &str,
        item: &Item,
    ) -> Result<Option<SubjectPermission>, ConfigError> {
        let Value::Map(map) = &item.value else {
            let allow = self.perm_subjects(key, item)?;
            return Ok(Some(with_allow(SubjectPermission::new(), allow)));
        };
        if map.iter().next().is_none() {
            return Ok(None);
        }
        let mut sp = SubjectPermission::new();
        for (k, v) in map.iter() {
            let full = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "allow" => sp = with_allow(sp, self.perm_subjects(&full, v)?),
                "deny" => sp = sp.deny(self.perm_subjects(&full, v)?),
                _ => {
                    return Err(self.invalid(
                        &full,
                        v,
                        format!(
                            "Unknown field name {k:?} parsing subject permissions, only 'allow' or 'deny' are permitted"
                        ),
                    ))
                }
            }
        }
        Ok(Some(sp))
    }

    fn perm_subjects(&self, key: &str, item: &Item) -> Result<Vec<String>, ConfigError> {
        match &item.value {
            Value::Str(s) => Ok(vec![s.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|i| match &i.value {
                    Value::Str(s) => Ok(s.clone()),
                    _ => Err(self.invalid(
                        key,
                        i,
                        "Subject in permissions array cannot be cast to string",
                    )),
                })
                .collect(),
            other => Err(self.invalid(
                key,
                item,
                format!(
                    "Expected subject permissions to be a subject, or array of subjects, got {}",
                    other.kind()
                ),
            )),
        }
    }

    /// `true` (one response within 2m), `false`, or `{max, expires}` (negative = no limit,
    /// 0 = the default).
    fn allow_responses(
        &self,
        key: &str,
        item: &Item,
    ) -> Result<Option<ResponsePermission>, ConfigError> {
        let map = match &item.value {
            Value::Bool(true) => return Ok(Some(ResponsePermission::new())),
            Value::Bool(false) => return Ok(None),
            Value::Map(m) => m,
            _ => {
                return Err(self.invalid(
                    key,
                    item,
                    "error parsing response permissions, expected a boolean or a map",
                ))
            }
        };
        let mut rp = ResponsePermission::new();
        for (k, v) in map.iter() {
            let full = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "max" | "max_msgs" | "max_messages" | "max_responses" => {
                    let Value::Int(n) = v.value else {
                        return Err(self.expected(&full, v, "an integer"));
                    };
                    rp = rp.max_msgs(u64::try_from(n).ok());
                }
                "expires" | "expiration" | "ttl" => {
                    let Value::Str(text) = &v.value else {
                        return Err(self.invalid(
                            &full,
                            v,
                            "error parsing expires, not a duration string",
                        ));
                    };
                    // Go's durations may be negative: that means never (and -0 the default).
                    let (negative, text) = match text.trim().strip_prefix('-') {
                        Some(rest) => (true, rest),
                        None => (false, text.as_str()),
                    };
                    let ttl = parse_duration(text).map_err(|e| {
                        self.invalid(&full, v, format!("error parsing expires: {e}"))
                    })?;
                    rp = rp.expires((!negative || ttl.is_zero()).then_some(ttl));
                }
                _ => {
                    return Err(self.invalid(
                        &full,
                        v,
                        format!("Unknown field {k:?} parsing permissions"),
                    ))
                }
            }
        }
        Ok(Some(rp))
    }

    fn list<'i>(&self, key: &str, item: &'i Item) -> Result<&'i [Item], ConfigError> {
        match &item.value {
            Value::Array(items) => Ok(items),
            _ => Err(self.expected(key, item, "an array")),
        }
    }

    /// `{stream: S, accounts: [...]}` or `{service: S, response_type, response_threshold,
    /// latency, accounts}`.
    fn export(&self, key: &str, item: &Item, account: Account) -> Result<Account, ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.invalid(
                key,
                item,
                format!(
                    "Export Items should be a map with type entry, got {}",
                    item.value.kind()
                ),
            ));
        };
        let (mut stream, mut service) = (None, None);
        let mut accounts = Vec::new();
        let mut response = None;
        let mut threshold = None;
        let mut latency = None;
        for (k, v) in map.iter() {
            let full = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "stream" => stream = Some(self.string(&full, v)?),
                "service" => service = Some(self.string(&full, v)?),
                "accounts" => {
                    for a in self.list(&full, v)? {
                        accounts.push(self.string(&full, a)?);
                    }
                }
                "response" | "response_type" => {
                    let t = self.string(&full, v)?;
                    response = Some(match t.to_ascii_lowercase().as_str() {
                        "single" | "singleton" => ResponseType::Singleton,
                        "stream" => ResponseType::Stream,
                        "chunk" | "chunked" => ResponseType::Chunked,
                        _ => {
                            return Err(self.invalid(
                                &full,
                                v,
                                format!("Unknown response type: {t:?}"),
                            ))
                        }
                    });
                }
                "threshold" | "response_threshold" | "response_max_time" | "response_time" => {
                    let Value::Str(s) = &v.value else {
                        return Err(self.invalid(
                            &full,
                            v,
                            format!(
                                "Expected response threshold to be a parseable time duration, got {}",
                                v.value.kind()
                            ),
                        ));
                    };
                    let d: Duration = parse_duration(s).map_err(|_| {
                        self.invalid(
                            &full,
                            v,
                            format!(
                                "Expected response threshold to be a parseable time duration, got {s:?}"
                            ),
                        )
                    })?;
                    threshold = Some(d);
                }
                "latency" => latency = Some(self.latency(&full, v)?),
                "account_token_position" => {
                    return Err(self.unsupported(&full, v, "account token exports"))
                }
                "allow_trace" => return Err(self.unsupported(&full, v, "message tracing")),
                _ => return Err(self.unknown(full, v)),
            }
        }
        match (stream, service) {
            (Some(_), Some(s)) => Err(self.invalid(
                key,
                item,
                format!("Detected service {s:?} but already saw a stream"),
            )),
            (Some(subject), None) => {
                if response.is_some() || threshold.is_some() {
                    return Err(self.invalid(
                        key,
                        item,
                        "Detected response directive on non-service",
                    ));
                }
                if latency.is_some() {
                    return Err(self.invalid(
                        key,
                        item,
                        "Detected latency directive on non-service",
                    ));
                }
                Ok(account.export_stream(StreamExport::new(subject).accounts(accounts)))
            }
            (None, Some(subject)) => {
                let mut export = ServiceExport::new(subject).accounts(accounts);
                if let Some(r) = response {
                    export = export.response(r);
                }
                if let Some(t) = threshold {
                    export = export.threshold(t);
                }
                if let Some(l) = latency {
                    export = export.latency(l);
                }
                Ok(account.export_service(export))
            }
            (None, None) => Err(self.invalid(key, item, "an export needs a stream or a service")),
        }
    }

    /// `latency: "subject"` or `latency: {sampling: 50 | "50%" | "headers", subject: s}`.
    fn latency(&self, key: &str, item: &Item) -> Result<Latency, ConfigError> {
        let map = match &item.value {
            Value::Str(s) => return Ok(Latency::new(s.clone())),
            Value::Map(m) => m,
            _ => {
                return Err(self.invalid(
                    key,
                    item,
                    format!(
                        "Expected latency entry to be a map/struct or string, got {}",
                        item.value.kind()
                    ),
                ))
            }
        };
        let Some(subject) = map.get("subject") else {
            return Err(self.invalid(key, item, "Latency subject required, but missing"));
        };
        let mut latency = Latency::new(self.string(&format!("{key}.subject"), subject)?);
        if let Some(s) = map.get("sampling") {
            let full = format!("{key}.sampling");
            let percent = match &s.value {
                Value::Int(n) => *n,
                Value::Str(t) if t.trim().eq_ignore_ascii_case("headers") => {
                    latency = latency.sampling(Sampling::Headers);
                    return self.latency_rest(key, map, latency);
                }
                Value::Str(t) => t.trim().trim_end_matches('%').parse().map_err(|_| {
                    self.invalid(&full, s, format!("Failed to parse latency sample: {t:?}"))
                })?,
                _ => {
                    return Err(self.invalid(
                        &full,
                        s,
                        format!(
                            "Expected latency sample to be a string or map/struct, got {}",
                            s.value.kind()
                        ),
                    ))
                }
            };
            if !(1..=100).contains(&percent) {
                return Err(self.invalid(&full, s, "bad sampling percentage, should be 1-100"));
            }
            latency = latency.sampling(Sampling::Percent(percent as u8));
        }
        self.latency_rest(key, map, latency)
    }

    /// Refuses keys of a latency block other than `sampling` and `subject`.
    fn latency_rest(&self, key: &str, map: &Map, latency: Latency) -> Result<Latency, ConfigError> {
        for (k, v) in map.iter() {
            if !matches!(k, "sampling" | "subject") {
                return Err(self.unknown(format!("{key}.{k}"), v));
            }
        }
        Ok(latency)
    }

    /// `{stream: {account, subject}, prefix | to}` or `{service: {account, subject}, to, share}`.
    fn import(&self, key: &str, item: &Item, account: Account) -> Result<Account, ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.invalid(
                key,
                item,
                format!(
                    "Import Items should be a map with type entry, got {}",
                    item.value.kind()
                ),
            ));
        };
        let (mut stream, mut service) = (None, None);
        let (mut prefix, mut to, mut share) = (None, None, false);
        for (k, v) in map.iter() {
            let full = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "stream" => stream = Some(self.source(&full, v)?),
                "service" => service = Some(self.source(&full, v)?),
                "prefix" => prefix = Some(self.string(&full, v)?),
                "to" => to = Some(self.string(&full, v)?),
                "share" => share = self.boolean(&full, v)?,
                "allow_trace" => return Err(self.unsupported(&full, v, "message tracing")),
                _ => return Err(self.unknown(full, v)),
            }
        }
        match (stream, service) {
            (Some(_), Some((_, s))) => Err(self.invalid(
                key,
                item,
                format!("Detected service {s:?} but already saw a stream"),
            )),
            (Some((from, subject)), None) => {
                if share {
                    return Err(self.invalid(key, item, "Detected share directive on non-service"));
                }
                let mut import = StreamImport::new(from, subject);
                match (prefix, to) {
                    (Some(_), Some(_)) => {
                        return Err(self.invalid(
                            key,
                            item,
                            "Detected to and prefix directive on the same import",
                        ))
                    }
                    (Some(p), None) => import = import.prefix(p),
                    (None, Some(t)) => import = import.to(t),
                    (None, None) => {}
                }
                Ok(account.import_stream(import))
            }
            (None, Some((from, subject))) => {
                if prefix.is_some() {
                    return Err(self.invalid(key, item, "Detected prefix directive on non-stream"));
                }
                let mut import = ServiceImport::new(from, subject).share(share);
                if let Some(t) = to {
                    import = import.to(t);
                }
                Ok(account.import_service(import))
            }
            (None, None) => Err(self.invalid(key, item, "an import needs a stream or a service")),
        }
    }

    /// `{account: A, subject: S}`.
    fn source(&self, key: &str, item: &Item) -> Result<(String, String), ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.expected(key, item, "{account, subject}"));
        };
        let (mut account, mut subject) = (None, None);
        for (k, v) in map.iter() {
            let full = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "account" => account = Some(self.string(&full, v)?),
                "subject" => subject = Some(self.string(&full, v)?),
                _ => return Err(self.unknown(full, v)),
            }
        }
        match (account, subject) {
            (Some(a), Some(s)) => Ok((a, s)),
            _ => Err(self.invalid(key, item, "an import needs its account and subject")),
        }
    }

    /// `limits { max_connections|max_conn, max_subscriptions|max_subs, max_payload|max_pay }`.
    fn limits(&self, key: &str, item: &Item, mut account: Account) -> Result<Account, ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.invalid(
                key,
                item,
                format!(
                    "Expected account limits to be a map/struct, got {}",
                    item.value.kind()
                ),
            ));
        };
        for (k, v) in map.iter() {
            let full = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "max_connections" | "max_conn" => {
                    account = account.max_connections(self.count(&full, v)?)
                }
                "max_subscriptions" | "max_subs" => {
                    account = account.max_subscriptions(self.count(&full, v)?)
                }
                "max_payload" | "max_pay" => account = account.max_payload(self.size(&full, v)?),
                "max_leafnodes" | "max_leafs" => {
                    return Err(self.unsupported(&full, v, "leaf nodes"))
                }
                _ => {
                    return Err(self.invalid(
                        &full,
                        v,
                        format!("Unknown field {k:?} parsing account limits"),
                    ))
                }
            }
        }
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::{from_map, ConfigError, FromConfig};
    use starling_server::Server;

    fn load(text: &str) -> Result<FromConfig, ConfigError> {
        from_map(&crate::conf::parse_str(text)?, "test.conf")
    }

    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn permissions_in_nats_servers_forms() {
        use starling_server::{Permissions, ResponsePermission, SubjectPermission};
        use std::time::Duration;
        let c = load(
            r#"
            authorization {
              default_permissions: {
                pub: { allow: ["a.>", "b"], deny: "a.secret" }
                subscribe: ["_INBOX.>", "jobs workers"]
                allow_responses: { max: 3, expires: "5s" }
              }
              users: [{user: u, password: p, permissions: { publish: [], sub: { deny: ">" } }}]
            }
            accounts { A: { default_permissions: { export: "x" }, users: [{user: a, pass: p}] } }
            "#,
        )
        .unwrap();
        let expected = Permissions::new()
            .publish(
                SubjectPermission::new()
                    .allow(["a.>", "b"])
                    .deny(["a.secret"]),
            )
            .subscribe(SubjectPermission::new().allow(["_INBOX.>", "jobs workers"]))
            .allow_responses(
                ResponsePermission::new()
                    .max_msgs(Some(3))
                    .expires(Some(Duration::from_secs(5))),
            );
        assert_eq!(c.settings.config.default_permissions, Some(expected));
        c.settings.validate().unwrap();
        let c = load("authorization { permissions: { allow_responses: true } }").unwrap();
        assert_eq!(
            c.settings.config.default_permissions,
            Some(Permissions::new().allow_responses(ResponsePermission::new()))
        );
        let c =
            load("authorization { permissions: { allow_responses: { max: -1, ttl: \"-1s\" } } }")
                .unwrap();
        assert_eq!(
            c.settings.config.default_permissions,
            Some(
                Permissions::new()
                    .allow_responses(ResponsePermission::new().max_msgs(None).expires(None))
            )
        );
        for (text, error) in [
            ("authorization { permissions: { publsh: x } }", "1:31: invalid value for \"authorization.permissions.publsh\": Unknown field \"publsh\" parsing permissions"),
            ("authorization { permissions: { pub: { allw: x } } }", "Unknown field name \"allw\" parsing subject permissions, only 'allow' or 'deny' are permitted"),
            ("authorization { permissions: 3 }", "Expected permissions to be a map/struct"),
            ("authorization { permissions: { allow_responses: 3 } }", "error parsing response permissions, expected a boolean or a map"),
            ("authorization { permissions: { allow_responses: { expires: 3 } } }", "error parsing expires, not a duration string"),
        ] {
            let e = err(text);
            assert!(e.contains(error), "{text}: {e}");
        }
        // Subjects are checked by the server crate, and reported where they were written.
        assert_eq!(
            err("authorization {\n  users: [{user: u, password: p, permissions: { sub: \"a b c\" }}]\n}"),
            "test.conf:2:33: invalid value for \"authorization.users.permissions\": \
             subject \"a b c\" is not a valid subject"
        );
        assert!(
            err("accounts { A: { default_permissions: { pub: [\"a b\"] } } }")
                .ends_with("subject \"a b\" is not a valid subject")
        );
        // A queue-qualified subscribe entry is fine; a negative `expires` means never, a
        // zero one the default.
        let c = load(
            "authorization { permissions: { sub: \"foo v1\", allow_responses: { ttl: \"-0s\" } } }",
        )
        .unwrap();
        assert_eq!(
            c.settings.config.default_permissions,
            Some(
                Permissions::new()
                    .subscribe(SubjectPermission::new().allow(["foo v1"]))
                    .allow_responses(ResponsePermission::new())
            )
        );
        assert!(
            err("authorization { permissions: { allow_responses: { ttl: \"-soon\" } } }")
                .contains("error parsing expires: ")
        );
        // Settings built without a file still get the server's check, with a clear message.
        let mut s = crate::settings::Settings::default();
        s.config.default_permissions =
            Some(Permissions::new().publish(SubjectPermission::new().deny(["a b"])));
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "invalid permissions: subject \"a b\" is not a valid subject"
        );
    }

    #[test]
    fn accounts_users_exports_and_imports() {
        let c = load(
            r#"
            accounts {
              ORDERS: {
                users: [{user: orders, password: po}]
                exports: [
                  {stream: "events.>"}
                  {service: "orders.place", response_type: stream, response_threshold: "5s",
                   latency: {sampling: "50%", subject: "lat.place"}, accounts: [SHOP]}
                ]
                limits: { max_connections: 10, max_subs: 100, max_payload: 1KB }
              }
              SHOP: {
                users: [{username: shop, pass: ps}]
                imports: [
                  {stream: {account: ORDERS, subject: "events.>"}, prefix: "o"}
                  {service: {account: ORDERS, subject: "orders.place"}, to: "place", share: true}
                ]
              }
            }
            authorization { users: [{user: g, password: pg}] }
            no_auth_user: g
            system_account: SYS
            "#,
        )
        .unwrap();
        let s = &c.settings;
        let accounts = &s.config.accounts;
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[0].name(), "ORDERS");
        assert_eq!(accounts[0].users()[0].name(), "orders");
        assert_eq!(s.config.users[0].name(), "g");
        assert_eq!(s.config.no_auth_user.as_deref(), Some("g"));
        assert_eq!(s.config.system_account.as_deref(), Some("SYS"));
        // It all fits together as the server checks it.
        s.validate().unwrap();
        let list = load("accounts: [A, B]").unwrap();
        let names: Vec<_> = list
            .settings
            .config
            .accounts
            .iter()
            .map(|a| a.name().to_string())
            .collect();
        assert_eq!(names, ["A", "B"]);
        assert!(Server::builder().check().is_ok());
    }

    #[test]
    fn errors_name_the_key_and_line_in_nats_servers_words() {
        assert_eq!(
            err("accounts {\n  $G: { }\n}"),
            "test.conf:2:2: invalid value for \"accounts\": \"$G\" is a Reserved Account"
        );
        assert!(err("accounts: [A, A]").ends_with("Duplicate Account Entry: A"));
        assert!(err(
            "accounts { A: { users: [{user: x, password: a}] }, B: { users: [{user: x, password: b}] } }"
        )
        .ends_with("Duplicate user \"x\" detected"));
        assert!(err(
            "authorization { users: [{user: x}] }\naccounts { A: { users: [{user: x}] } }"
        )
        .ends_with("Duplicate user \"x\" detected"));
        assert_eq!(
            err("authorization { user: a, password: b, users: [{user: c, password: d}] }"),
            "test.conf:1:0: invalid value for \"authorization\": Can not have a single user/pass and a users array"
        );
        assert!(err("authorization { user: a, password: b }\naccounts { A: { users: [{user: c, password: d}] } }")
            .starts_with("test.conf:2:0:"));
        assert!(
            err("accounts { A: { exports: [{service: x, response_type: bogus}] } }")
                .ends_with("Unknown response type: \"bogus\"")
        );
        assert!(
            err("accounts { A: { exports: [{stream: x, response_type: stream}] } }")
                .ends_with("Detected response directive on non-service")
        );
        assert!(err(
            "accounts { A: { exports: [{service: x, latency: {sampling: 150, subject: l}}] } }"
        )
        .ends_with("bad sampling percentage, should be 1-100"));
        assert!(
            err("accounts { A: { exports: [{service: x, latency: {sampling: 50}}] } }")
                .ends_with("Latency subject required, but missing")
        );
        assert!(
            err("accounts { A: { exports: [{service: x, threshold: 5}] } }")
                .contains("Expected response threshold to be a parseable time duration")
        );
        assert!(err("accounts { A: { bogus: 1 } }").contains("unknown field \"accounts.A.bogus\""));
        assert!(err("accounts { A: 1 }").ends_with("Expected map entries for accounts"));
        assert_eq!(
            err("accounts {\n  A: { jetstream: maybe } }"),
            "test.conf:2:7: invalid value for \"accounts.A.jetstream\": \
             Expected 'enabled' or 'disabled' for string value, got 'maybe'"
        );
        assert!(err("accounts { A: { users: [{user: u, nkey: UABC}] } }")
            .contains("Not a valid public nkey for a user"));
        assert!(err("accounts { A: { limits: { max_cars: 1 } } }")
            .ends_with("Unknown field \"max_cars\" parsing account limits"));
        assert!(err("accounts { A: { imports: [1] } }")
            .contains("Import Items should be a map with type entry"));
    }

    #[test]
    fn account_jetstream() {
        let c = load(
            r#"
            jetstream { store_dir: "/tmp/js" }
            accounts {
              A: { jetstream: enabled, users: [{user: a, password: a}] }
              B: { jetstream: true }
              C: { jetstream: disabled }
              D: { users: [{user: d, password: d}] }
              E: { jetstream: { max_mem: 1G, max_file: 10GiB, max_streams: 10, max_consumers: 100 } }
              F: { jetstream: {} }
              G: { jetstream: ENABLE }
            }
            "#,
        )
        .unwrap();
        let s = &c.settings;
        let js = s.account_jetstream.as_ref().unwrap();
        let enabled: Vec<_> = js.iter().map(|a| (a.account.as_str(), a.enabled)).collect();
        assert_eq!(
            enabled,
            [
                ("A", true),
                ("B", true),
                ("C", false),
                ("E", true),
                ("F", true),
                ("G", true)
            ]
        );
        // The block's limits are kept and given to JetStream.
        let limits = js[3].limits.clone().unwrap();
        assert_eq!(limits.max_memory, 1_000_000_000);
        assert_eq!(limits.max_store, 10 << 30);
        assert_eq!((limits.max_streams, limits.max_consumers), (10, 100));
        assert_eq!(limits.max_ack_pending, -1);
        assert_eq!(js[4].limits, Some(Default::default()));
        let plan = s.jetstream().unwrap();
        assert_eq!(plan.accounts, ["A", "B", "E", "F", "G"]);
        assert!(plan.config.is_some());
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        let debug = format!("{:?}", plan.config.unwrap());
        for name in ["A", "B", "E", "F", "G"] {
            assert!(
                debug.contains(&format!("(\"{name}\", AccountLimits")),
                "{debug}"
            );
        }
        assert!(
            debug.contains("max_streams: 10, max_consumers: 100"),
            "{debug}"
        );
        s.validate().unwrap();
        assert!(s.builder().is_ok());

        // Accounts but none with JetStream: as nats-server, no account gets it ($G neither).
        let s = load("jetstream: enabled\naccounts { A: { users: [{user: a}] } }")
            .unwrap()
            .settings;
        let plan = s.jetstream().unwrap();
        assert!(plan.config.is_none() && plan.accounts.is_empty());
        assert!(
            plan.warnings[0].contains("no configured account enables it"),
            "{:?}",
            plan.warnings
        );
        // Only the system account configured: the global account gets it, as in nats-server.
        let s = load("jetstream: enabled\naccounts { SYS: {} }\nsystem_account: SYS")
            .unwrap()
            .settings;
        assert_eq!(s.jetstream().unwrap().accounts, ["$G"]);
        // The system account cannot have JetStream (nats-server refuses to start).
        let s = load(
            "jetstream: enabled\naccounts { SYS: { jetstream: enabled }, A: {} }\nsystem_account: SYS",
        )
        .unwrap()
        .settings;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("jetstream can not be enabled on the system account"));
        // An account's jetstream without the server's does nothing.
        let s = load("accounts { A: { jetstream: enabled } }")
            .unwrap()
            .settings;
        assert!(s.jetstream().unwrap().config.is_none());
        s.validate().unwrap();
        // -js turns the server's on.
        let flags = crate::flags::parse(["-js"]).unwrap();
        assert_eq!(flags.over(s).unwrap().jetstream().unwrap().accounts, ["A"]);

        for (text, want) in [
            (
                "accounts { A: { jetstream: 1 } }",
                "Expected map, bool or string to define JetStream, got integer",
            ),
            (
                "accounts { A: { jetstream: { max_mem: \"1G\" } } }",
                "invalid value for \"accounts.A.jetstream.max_mem\": Expected a parseable size for \"max_mem\", got 1G",
            ),
            (
                "accounts { A: { jetstream: { max_bytes: 1 } } }",
                "Expected a parseable bool for \"max_bytes\", got 1",
            ),
            (
                "accounts { A: { jetstream: { cluster_traffic: other } } }",
                "Expected 'system' or 'owner' string value for \"cluster_traffic\", got other",
            ),
            (
                "accounts { A: { jetstream: { max_cars: 1 } } }",
                "unknown field \"accounts.A.jetstream.max_cars\"",
            ),
        ] {
            let e = err(text);
            assert!(e.starts_with("test.conf:1:"), "{text}: {e}");
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn imports_that_do_not_fit_are_refused_before_start() {
        let c = load("accounts { A: { imports: [{stream: {account: B, subject: x}}] } }").unwrap();
        assert_eq!(
            c.settings.validate().unwrap_err().to_string(),
            "accounts: \"B\" account not defined for stream import"
        );
        let c = load(
            "accounts { A: { exports: [{stream: \"a.>\", accounts: [C]}] }, B: { imports: [{stream: {account: A, subject: \"a.>\"}}] }, C: {} }",
        )
        .unwrap();
        assert!(c
            .settings
            .validate()
            .unwrap_err()
            .to_string()
            .ends_with("stream import not authorized"));
        let c = load("no_auth_user: zz").unwrap();
        assert!(c
            .settings
            .validate()
            .unwrap_err()
            .to_string()
            .contains("no_auth_user"));
    }
}
