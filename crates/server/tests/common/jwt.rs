//! Minting NATS JWTs for tests: accounts and users with the `nats-jwt` crate; what it cannot
//! mint (operators, revocations, scoped keys, v1 forms) by hand here, in nats-io/jwt's v2 form.

use std::time::{SystemTime, UNIX_EPOCH};

use data_encoding::BASE64URL_NOPAD;
use nkeys::KeyPair;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A v2 token about `sub` of `kind`, with `nats` merged in, signed by `signer`.
pub fn mint(
    kind: &str,
    sub: &str,
    mut nats: serde_json::Value,
    extra: serde_json::Value,
    signer: &KeyPair,
) -> String {
    nats["type"] = kind.into();
    nats["version"] = 2.into();
    let mut claims = serde_json::json!({
        "jti": format!("{sub}-{}", now()),
        "iat": now(),
        "iss": signer.public_key(),
        "name": sub,
        "sub": sub,
        "nats": nats,
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        claims[k] = v.clone();
    }
    let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let half = format!("{header}.{body}");
    let sig = BASE64URL_NOPAD.encode(&signer.sign(half.as_bytes()).unwrap());
    format!("{half}.{sig}")
}

/// A self-signed operator.
pub fn operator(op: &KeyPair, nats: serde_json::Value) -> String {
    mint(
        "operator",
        &op.public_key(),
        nats,
        serde_json::json!({}),
        op,
    )
}

/// A `.creds` file's text, as `nsc` writes it.
pub fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}

/// The JWTs in a nats-server config file, in order (the operator first, then the accounts).
pub fn tokens_in(conf: &str) -> Vec<String> {
    conf.split(|c: char| c.is_whitespace() || c == '"')
        .filter(|w| w.starts_with("eyJ"))
        .map(str::to_string)
        .collect()
}
