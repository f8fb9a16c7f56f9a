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
                connect.user.as_deref() == Some(user.as_str())
                    && connect.pass.as_deref() == Some(password.as_str())
            }
            Auth::Token(token) => connect.auth_token.as_deref() == Some(token.as_str()),
        }
    }
}
