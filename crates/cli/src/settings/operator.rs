//! Operator mode's keys: `operator` (a JWT, or a file holding one, decorated as `nsc` writes
//! it or not), `resolver: MEMORY` and `resolver_preload: { ACCOUNT_KEY: JWT }`. The JWTs
//! themselves are checked by the server crate when it starts (and by `-t`).

use super::{ConfigError, Cx};
use crate::conf::{Item, Value};

/// `operator: JWT | path` or a list of them.
pub(super) fn operators(cx: &Cx<'_>, key: &str, item: &Item) -> Result<Vec<String>, ConfigError> {
    let one = |item: &Item| -> Result<String, ConfigError> {
        let given = cx.string(key, item)?;
        read_operator(&given).map_err(|reason| cx.invalid(key, item, reason))
    };
    match &item.value {
        Value::Array(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(item)?]),
    }
}

/// As nats-server's `readOperatorJWT`: a file if one exists at that path, else the value
/// itself when it is a JWT; either may be decorated.
fn read_operator(given: &str) -> Result<String, String> {
    let contents = match std::fs::read_to_string(given) {
        Ok(c) => c,
        Err(_) if given.trim_start().starts_with("eyJ") => given.to_string(),
        Err(e) => return Err(format!("error parsing operator JWT: {e}")),
    };
    Ok(undecorate(&contents))
}

/// The JWT inside `-----BEGIN ... JWT-----` / `------END ... JWT------` lines (nats-io/jwt's
/// `ParseDecoratedJWT`), or the whole text trimmed when it has no such lines.
fn undecorate(contents: &str) -> String {
    let mut lines = contents.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line.starts_with("-----BEGIN") && line.ends_with("JWT-----") {
            if let Some(jwt) = lines.next() {
                return jwt.to_string();
            }
        }
    }
    contents.trim().to_string()
}

/// `resolver`: only `MEMORY` is implemented; the others would change who may connect.
pub(super) fn resolver(cx: &Cx<'_>, key: &str, item: &Item) -> Result<(), ConfigError> {
    match &item.value {
        Value::Str(s) if s.eq_ignore_ascii_case("memory") => Ok(()),
        _ => Err(ConfigError::Unsupported {
            file: cx.file.to_string(),
            line: item.pos.line,
            col: item.pos.col,
            key: key.to_string(),
            feature: "account resolvers other than MEMORY",
        }),
    }
}

/// `resolver_preload: { KEY: JWT, ... }`.
pub(super) fn preload(
    cx: &Cx<'_>,
    key: &str,
    item: &Item,
) -> Result<Vec<(String, String)>, ConfigError> {
    let Value::Map(map) = &item.value else {
        return Err(cx.expected(key, item, "a map of account keys to JWTs"));
    };
    map.iter()
        .map(|(account, jwt)| Ok((account.to_string(), cx.string(key, jwt)?.trim().to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decorated_and_bare_operator_jwts() {
        let decorated =
            "-----BEGIN TEST OPERATOR JWT-----\neyJa.b.c\n------END TEST OPERATOR JWT------\n";
        assert_eq!(undecorate(decorated), "eyJa.b.c");
        assert_eq!(undecorate("  eyJa.b.c \n"), "eyJa.b.c");
        assert_eq!(read_operator("eyJa.b.c").unwrap(), "eyJa.b.c");
        let e = read_operator("/no/such/op.jwt").unwrap_err();
        assert!(e.starts_with("error parsing operator JWT"), "{e}");
    }
}
