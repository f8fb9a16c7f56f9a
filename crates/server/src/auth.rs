//! Client authentication: the one place credentials from CONNECT are checked (TLS client
//! certificates, nkeys and JWTs will slot in here).

use starling_proto::Connect;

use crate::options::Auth;
use crate::server::Shared;

impl Shared {
    /// Whether `connect` carries acceptable credentials.
    pub(crate) fn authorize(&self, connect: &Connect) -> bool {
        if connect.account.is_some() || connect.new_account {
            return false;
        }
        match &self.opts.auth {
            Auth::None => true,
            Auth::UserPassword { user, password } => {
                credentials_match(connect.user.as_deref(), user)
                    & credentials_match(connect.pass.as_deref(), password)
            }
            Auth::Token(token) => credentials_match(connect.auth_token.as_deref(), token),
        }
    }
}

/// Compares a credential a peer sent with the configured one in time that does not depend on
/// where they differ (as nats-server does, with Go's `subtle.ConstantTimeCompare`), so a client
/// cannot find a password byte by byte by timing rejections. Only the length may show.
pub(crate) fn credentials_match(given: Option<&str>, expected: &str) -> bool {
    let Some(given) = given else {
        return false;
    };
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    if given.len() != expected.len() {
        return false;
    }
    let diff = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | std::hint::black_box(a ^ b));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::credentials_match;

    #[test]
    fn credentials_compare() {
        assert!(credentials_match(Some("s3cret"), "s3cret"));
        assert!(!credentials_match(Some("s3creT"), "s3cret"));
        assert!(!credentials_match(Some("s3cre"), "s3cret"));
        assert!(!credentials_match(Some(""), "s3cret"));
        assert!(!credentials_match(None, "s3cret"));
        assert!(credentials_match(Some(""), ""));
    }
}
