//! Operator mode (nats-server's decentralized authentication): trusted operator JWTs, account
//! JWTs from the MEMORY resolver (`resolver_preload`), and clients that present a user JWT
//! and sign this connection's nonce with the user's key.
//!
//! At start, [`apply`] turns the preloaded account JWTs into accounts (named by their public
//! keys, with their limits, exports and imports) and takes the system account from the
//! operator. At CONNECT, [`JwtUsers::authenticate`] checks a user JWT as nats-server's
//! `processClientOrLeafAuthentication` does, in its order.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use starling_proto::Connect;
use tracing::{error, warn};

use crate::account::config::{
    Account as AccountConfig, ResponseType, ServiceExport, ServiceImport, StreamExport,
    StreamImport,
};
use crate::account::{Account, Accounts};
use crate::auth::Verdict;
use crate::config::Config;
use crate::error::StartError;
use crate::jwt::{self, Claims, JwtError, UserLimits};
use crate::permissions::Compiled;

/// What the operators trust: their keys and the accounts they signed.
#[derive(Debug)]
pub(crate) struct Trust {
    /// Account JWTs by account public key.
    accounts: HashMap<String, Claims<jwt::Account>>,
}

/// Checks the operator options as nats-server's `validateTrustedOperators` does, then makes
/// accounts of the preloaded account JWTs and picks the system account. Does nothing outside
/// operator mode.
pub(crate) fn apply(opts: &mut Config, system_account_set: bool) -> Result<(), StartError> {
    if opts.operators.is_empty() {
        return Ok(());
    }
    let refuse = |what: &str| Err(StartError::Config(what.to_string()));
    if !opts.accounts.is_empty() {
        return refuse("operators do not allow Accounts to be configured directly");
    }
    if !opts.users.is_empty() || opts.auth.is_required() {
        return refuse("operators do not allow users to be configured directly");
    }
    if opts.no_auth_user.is_some() {
        return refuse("no_auth_user not compatible with Trusted Operator");
    }
    let mut keys = HashSet::new();
    let mut operator_systems = Vec::new();
    for token in &opts.operators {
        let op = jwt::decode_operator(token)
            .map_err(|e| StartError::Config(format!("operator JWT not valid: {e}")))?;
        if op.check_time(SystemTime::now()).is_err() {
            return refuse("operator JWT has expired");
        }
        if !op.nats.strict_signing_key_usage {
            keys.insert(op.subject.clone());
        }
        keys.extend(op.nats.signing_keys.iter().cloned());
        operator_systems.push(op.nats.system_account.clone().unwrap_or_default());
    }
    if system_account_set {
        let configured = opts.system.clone().unwrap_or_default();
        let any_named = operator_systems.iter().any(|s| !s.is_empty());
        if any_named && !operator_systems.contains(&configured) {
            return refuse("system_account in config and operator JWT must be identical");
        }
    } else {
        opts.system = operator_systems.first().filter(|s| !s.is_empty()).cloned();
    }

    let mut accounts: HashMap<String, Claims<jwt::Account>> = HashMap::new();
    for (key, token) in &opts.resolver_preload {
        let claims = match jwt::decode_account(token) {
            Ok(c) if &c.subject == key || key.is_empty() => c,
            Ok(c) => {
                error!(account = %key, subject = %c.subject, "Preloaded account [{key}] not valid: its JWT is about another account");
                continue;
            }
            Err(e) => {
                error!(account = %key, "Preloaded account [{key}] not valid: {e}");
                continue;
            }
        };
        if !keys.contains(&claims.issuer) {
            error!(account = %claims.subject, "Account JWT not signed by trusted operator");
            continue;
        }
        if let Err(e) = claims.check_time(SystemTime::now()) {
            warn!("Account [{}] has validation issues:", claims.subject);
            warn!("  - {e}");
        }
        accounts.insert(claims.subject.clone(), claims);
    }
    for claims in accounts.values() {
        opts.accounts.push(account_config(claims, &accounts));
    }
    if let Some(system) = &opts.system {
        if !accounts.contains_key(system) {
            opts.accounts.push(AccountConfig::new(system.clone()));
        }
    }
    opts.trust = Some(Arc::new(Trust { accounts }));
    Ok(())
}

/// An account JWT as an account: its limits, its exports, and the imports whose exporters are
/// known (and, for an export that requires one, whose activation token is valid).
fn account_config(
    claims: &Claims<jwt::Account>,
    all: &HashMap<String, Claims<jwt::Account>>,
) -> AccountConfig {
    let me = &claims.subject;
    let mut a = AccountConfig::new(me.clone());
    let limit = |n: i64| usize::try_from(n).unwrap_or(0);
    let limits = &claims.nats.limits;
    a = a
        .max_connections(limit(limits.conn))
        .max_subscriptions(limit(limits.subs))
        .max_payload(limit(limits.payload));
    for export in &claims.nats.exports {
        // Exports that need an activation token go only to importers that hold a valid one.
        let activated: Vec<String> = all
            .values()
            .filter(|other| {
                other.nats.imports.iter().any(|i| {
                    i.account == *me
                        && imports_export(i, export, &other.subject)
                        && activation_valid(i, claims, &other.subject)
                })
            })
            .map(|other| other.subject.clone())
            .collect();
        if export.token_req && activated.is_empty() {
            continue;
        }
        let restricted = export.token_req.then_some(activated);
        match export.kind.as_str() {
            "service" => {
                let mut e = ServiceExport::new(export.subject.clone());
                if let Some(accounts) = restricted {
                    e = e.accounts(accounts);
                }
                e = e.response(match export.response_type.as_deref() {
                    Some("Stream") => ResponseType::Stream,
                    Some("Chunked") => ResponseType::Chunked,
                    _ => ResponseType::Singleton,
                });
                a = a.export_service(e);
            }
            _ => {
                let mut e = StreamExport::new(export.subject.clone());
                if let Some(accounts) = restricted {
                    e = e.accounts(accounts);
                }
                a = a.export_stream(e);
            }
        }
    }
    for import in &claims.nats.imports {
        let Some(exporter) = all.get(&import.account) else {
            warn!(account = %me, exporter = %import.account, subject = %import.subject, "import from an unknown account ignored");
            continue;
        };
        let exported = exporter
            .nats
            .exports
            .iter()
            .find(|e| imports_export(import, e, me));
        let Some(export) = exported else {
            warn!(account = %me, exporter = %import.account, subject = %import.subject, "import of a subject the account does not export ignored");
            continue;
        };
        if export.token_req && !activation_valid(import, exporter, me) {
            continue;
        }
        let local = import.local_subject.clone().or_else(|| import.to.clone());
        match import.kind.as_str() {
            "service" => {
                let mut i = ServiceImport::new(import.account.clone(), import.subject.clone());
                if let Some(to) = local {
                    i = i.to(to);
                }
                a = a.import_service(i);
            }
            _ => {
                let mut i = StreamImport::new(import.account.clone(), import.subject.clone());
                match (import.local_subject.clone(), import.to.clone()) {
                    (Some(local), _) => i = i.to(local),
                    // v1's `to` on a stream import is a prefix.
                    (None, Some(prefix)) => i = i.prefix(prefix),
                    (None, None) => {}
                }
                a = a.import_stream(i);
            }
        }
    }
    a
}

/// Whether `importer`'s `import` takes from `export`: the same kind, a subject within the
/// export's, and the importer's own key where the export's `account_token_position` says.
fn imports_export(import: &jwt::Import, export: &jwt::Export, importer: &str) -> bool {
    let within = import.subject == export.subject
        || starling_sublist::subject_matches(export.subject.as_bytes(), import.subject.as_bytes());
    let token_ok = match export.account_token_position {
        0 => true,
        n => import.subject.split('.').nth(n - 1) == Some(importer),
    };
    import.kind == export.kind && within && token_ok
}

/// Whether `import`'s activation token lets `importer` import its subject from `exporter`.
fn activation_valid(import: &jwt::Import, exporter: &Claims<jwt::Account>, importer: &str) -> bool {
    let Some(token) = import.token.as_deref() else {
        return false;
    };
    let Ok(activation) = jwt::decode_activation(token) else {
        return false;
    };
    let signer_ok = activation.issuer == exporter.subject
        || exporter
            .nats
            .signing_keys
            .iter()
            .any(|k| k.key == activation.issuer);
    signer_ok
        && activation.subject == importer
        && (activation.nats.subject == import.subject
            || starling_sublist::subject_matches(
                activation.nats.subject.as_bytes(),
                import.subject.as_bytes(),
            ))
        && activation.check_time(SystemTime::now()).is_ok()
        && !exporter.nats.is_revoked(importer, activation.issued_at)
}

/// The accounts clients authenticate into, with their JWTs: built once the accounts exist.
pub(crate) struct JwtUsers {
    accounts: HashMap<String, (Arc<Account>, Claims<jwt::Account>)>,
}

impl JwtUsers {
    pub(crate) fn new(trust: &Trust, accounts: &Accounts) -> Self {
        let accounts = trust
            .accounts
            .iter()
            .filter_map(|(key, claims)| {
                Some((key.clone(), (accounts.get(key)?.clone(), claims.clone())))
            })
            .collect();
        Self { accounts }
    }

    /// Checks a CONNECT's user JWT and nonce signature; `Err` gives the reason (for the log,
    /// never the client).
    pub(crate) fn authenticate(
        &self,
        connect: &Connect,
        nonce: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Verdict, String> {
        let token = connect
            .jwt
            .as_deref()
            .ok_or("Authentication requires a user JWT")?;
        let user = jwt::decode_user(token).map_err(|e| format!("User JWT not valid: {e}"))?;
        user.check_time(SystemTime::now())
            .map_err(|e| format!("User JWT no longer valid: {e}"))?;
        let issuer = user.nats.issuer_account.as_deref().unwrap_or(&user.issuer);
        let (account, claims) = self
            .accounts
            .get(issuer)
            .ok_or_else(|| format!("Account JWT lookup error: no account {issuer}"))?;
        // The user's signer: the account itself, or one of its signing keys (a scoped one
        // imposes its template).
        let mut limits = user.nats.limits.clone();
        if user.issuer != claims.subject {
            let key = claims
                .nats
                .signing_keys
                .iter()
                .find(|k| k.key == user.issuer)
                .ok_or("User JWT issuer is not known")?;
            if let Some(template) = &key.scope {
                if !limits.is_empty() {
                    return Err(
                        "User JWT is not valid: scoped users require no permissions or limits set"
                            .into(),
                    );
                }
                limits = template.clone();
                apply_templates(&mut limits, &user, claims)
                    .map_err(|e| format!("User JWT generated invalid permissions: {e}"))?;
            }
        } else if user
            .nats
            .issuer_account
            .as_deref()
            .is_some_and(|a| a != claims.subject)
        {
            return Err("User JWT issuer is not known".into());
        }
        if claims.check_time(SystemTime::now()) == Err(JwtError::Expired) {
            return Err("Account JWT has expired".into());
        }
        if limits.bearer_token && claims.nats.limits.disallow_bearer {
            return Err("Account does not allow bearer tokens".into());
        }
        if !limits.allowed_connection_types.is_empty()
            && !limits
                .allowed_connection_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case("STANDARD"))
        {
            return Err("Connection type not allowed".into());
        }
        if !limits.bearer_token
            && !crate::auth::nonce_signed(&user.subject, nonce, connect.sig.as_deref())
        {
            return Err("Signature not verified".into());
        }
        if claims.nats.is_revoked(&user.subject, user.issued_at) {
            return Err("User authentication revoked".into());
        }
        if !src_allowed(&limits, peer) {
            return Err(format!(
                "Bad src Ip {}",
                peer.map(|p| p.to_string()).unwrap_or_default()
            ));
        }
        let window = times_allowed(&limits, SystemTime::now()).ok_or("Outside connect times")?;
        let permissions = limits
            .permissions
            .to_permissions()
            .or_else(|| claims.nats.default_permissions.to_permissions());
        if let Some(p) = &permissions {
            p.validate()
                .map_err(|e| format!("User JWT generated invalid permissions: {e}"))?;
        }
        let expires = match (user.expires_at(), window) {
            (Some(exp), Some(end)) => Some(exp.min(end)),
            (exp, end) => exp.or(end),
        };
        Ok(Verdict {
            account: account.clone(),
            user: Some(user.subject.clone()),
            permissions: permissions.map(|p| Arc::new(Compiled::new(&p))),
            expires,
            limits: crate::auth::UserLimits {
                max_subscriptions: usize::try_from(limits.subs).ok(),
                max_payload: usize::try_from(limits.payload).ok(),
            },
        })
    }
}

/// Most subjects one templated entry may expand to (nats-server's limit).
const MAX_TEMPLATE_EXPANSIONS: usize = 4096;

/// A scoped signing key's template filled in for `user`, as nats-server's
/// `processUserPermissionsTemplate`: `{{name()}}`, `{{subject()}}`, `{{account-name()}}`,
/// `{{account-subject()}}`, `{{tag(x)}}` and `{{account-tag(x)}}` (every value of the `x:`
/// tags, one subject per combination). An allow list that expands to nothing becomes a deny
/// of `>`; a deny entry that cannot be filled in is an error.
fn apply_templates(
    limits: &mut UserLimits,
    user: &Claims<jwt::User>,
    account: &Claims<jwt::Account>,
) -> Result<(), String> {
    let p = &mut limits.permissions;
    for list in [&mut p.subscribe, &mut p.publish] {
        let had_allow = !list.allow.is_empty();
        list.allow = expand(&list.allow, false, user, account)?;
        list.deny = expand(&list.deny, true, user, account)?;
        if had_allow && list.allow.is_empty() {
            list.deny.push(">".into());
        }
    }
    Ok(())
}

fn expand(
    list: &[String],
    fail_on_bad: bool,
    user: &Claims<jwt::User>,
    account: &Claims<jwt::Account>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let mut pieces: Vec<(String, Vec<String>)> = Vec::new();
        let mut rest = entry.as_str();
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start..].find("}}") else {
                break;
            };
            let token = &rest[start..start + len + 2];
            let op = token[2..token.len() - 2].trim();
            let values = template_values(op, user, account)
                .ok_or_else(|| format!("template operation in {entry:?}: {op:?} is not defined"))?;
            let values = match values {
                v if !v.is_empty() => v,
                _ if fail_on_bad => {
                    return Err(format!(
                        "generated invalid subject {entry:?}: {op:?} is not defined"
                    ))
                }
                _ => vec![" ".to_string()], // an invalid subject: dropped below
            };
            pieces.push((token.to_string(), values));
            rest = &rest[start + len + 2..];
        }
        let mut subjects = vec![entry.clone()];
        for (token, values) in &pieces {
            if subjects.len().saturating_mul(values.len()) > MAX_TEMPLATE_EXPANSIONS {
                return Err(format!(
                    "template expansion exceeds limit: {MAX_TEMPLATE_EXPANSIONS}"
                ));
            }
            subjects = subjects
                .iter()
                .flat_map(|s| values.iter().map(move |v| s.replace(token.as_str(), v)))
                .collect();
        }
        for subject in subjects {
            // A subscribe entry may name a queue after a space.
            let subject_part = subject.split_once(' ').map_or(subject.as_str(), |(s, _)| s);
            if starling_sublist::is_valid_subject(subject_part.as_bytes()) {
                out.push(subject);
            } else if fail_on_bad {
                return Err("generated invalid subject".into());
            }
        }
    }
    Ok(out)
}

/// What one template operation stands for (`None`: not an operation nats-server knows).
fn template_values(
    op: &str,
    user: &Claims<jwt::User>,
    account: &Claims<jwt::Account>,
) -> Option<Vec<String>> {
    let lower = op.to_ascii_lowercase();
    let tagged = |tags: &[String], key: &str| -> Vec<String> {
        let prefix = format!("{}:", key.to_ascii_lowercase());
        tags.iter()
            .filter_map(|t| t.strip_prefix(&prefix).map(str::to_string))
            .collect()
    };
    Some(match lower.as_str() {
        "name()" => vec![user.name.clone()],
        "subject()" => vec![user.subject.clone()],
        "account-name()" => vec![account.name.clone()],
        "account-subject()" => vec![user
            .nats
            .issuer_account
            .clone()
            .unwrap_or_else(|| account.subject.clone())],
        _ if lower.starts_with("tag(") && lower.ends_with(')') => {
            tagged(&user.nats.tags, &op[4..op.len() - 1])
        }
        _ if lower.starts_with("account-tag(") && lower.ends_with(')') => {
            tagged(&account.nats.tags, &op[12..op.len() - 1])
        }
        _ => return None,
    })
}

/// `src`: the peer's address must be in one of the CIDR blocks, if any are given.
fn src_allowed(limits: &UserLimits, peer: Option<IpAddr>) -> bool {
    if limits.src.is_empty() {
        return true;
    }
    let Some(peer) = peer else {
        return false;
    };
    limits.src.iter().any(|cidr| cidr_contains(cidr, peer))
}

fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, bits)) = cidr.trim().split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    let ip = match (net, ip) {
        (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        _ => ip,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// `times`: `None` when `now` is outside every window; `Some(end)` is when the current window
/// closes (`Some(None)`: no windows at all). Windows are read in UTC: a `times_location`
/// other than UTC is refused, as no time zone database is linked in.
fn times_allowed(limits: &UserLimits, now: SystemTime) -> Option<Option<SystemTime>> {
    if limits.times.is_empty() {
        return Some(None);
    }
    if !matches!(limits.times_location.as_str(), "" | "UTC" | "Etc/UTC") {
        return None;
    }
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    let of_day = secs % 86_400;
    let parse = |t: &str| -> Option<u64> {
        let mut parts = t.split(':').map(|p| p.parse::<u64>().ok());
        let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
        (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
    };
    let mut best: Option<u64> = None;
    for range in &limits.times {
        let (Some(start), Some(end)) = (parse(&range.start), parse(&range.end)) else {
            return None;
        };
        // A range may cross midnight (22:00:00-06:00:00).
        let left = if start <= end {
            (start < of_day && of_day < end).then(|| end - of_day)
        } else if of_day > start {
            Some(86_400 - of_day + end)
        } else {
            (of_day < end).then(|| end - of_day)
        };
        if let Some(left) = left {
            best = Some(best.map_or(left, |b| b.max(left)));
        }
    }
    best.map(|left| Some(now + Duration::from_secs(left)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(cidr_contains("127.0.0.0/8", v4("127.0.0.1")));
        assert!(!cidr_contains("10.0.0.0/8", v4("127.0.0.1")));
        assert!(cidr_contains("0.0.0.0/0", v4("192.168.1.1")));
        assert!(cidr_contains("192.168.1.7/32", v4("192.168.1.7")));
        assert!(cidr_contains("::1/128", v4("::1")));
        assert!(cidr_contains("127.0.0.0/8", v4("::ffff:127.0.0.1")));
        assert!(!cidr_contains("bogus", v4("127.0.0.1")));
    }

    #[test]
    fn connect_time_windows() {
        let at = |h: u64, m: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(h * 3600 + m * 60);
        let limits = |ranges: &[(&str, &str)]| UserLimits {
            times: ranges
                .iter()
                .map(|(s, e)| {
                    serde_json::from_value(serde_json::json!({"start": s, "end": e})).unwrap()
                })
                .collect(),
            ..Default::default()
        };
        let day = limits(&[("09:00:00", "17:00:00")]);
        assert_eq!(times_allowed(&day, at(12, 0)), Some(Some(at(17, 0))));
        assert_eq!(times_allowed(&day, at(18, 0)), None);
        let night = limits(&[("22:00:00", "06:00:00")]);
        assert!(times_allowed(&night, at(23, 0)).is_some());
        assert!(times_allowed(&night, at(5, 0)).is_some());
        assert!(times_allowed(&night, at(12, 0)).is_none());
        assert_eq!(times_allowed(&UserLimits::default(), at(3, 0)), Some(None));
        let elsewhere = UserLimits {
            times_location: "America/New_York".into(),
            ..day
        };
        assert_eq!(times_allowed(&elsewhere, at(12, 0)), None);
    }
}
