//! The token format: `<base64url claims>.<base64url HMAC-SHA256(claims)>`.
//!
//! The claims are compact JSON. The MAC covers the encoded claims exactly
//! as sent, and is checked (in constant time) before the claims are even
//! decoded, so nothing an attacker wrote reaches the JSON parser.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use mcr_core::principal::{AccountType, Role};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::key::Key;

/// Longest token looked at; anything longer is refused before any work.
const MAX_TOKEN_LEN: usize = 4096;

/// What a token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Claims {
    /// Stable subject id, `local:<username>`.
    pub sub: String,
    pub name: String,
    pub typ: AccountType,
    pub roles: Vec<Role>,
    /// Issued at, milliseconds since the epoch.
    pub iat: i64,
    /// Expires at, milliseconds since the epoch.
    pub exp: i64,
    /// Random id, so a logout revokes exactly this token.
    pub jti: String,
}

fn mac(key: &Key) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key.bytes()).expect("HMAC accepts a key of any length")
}

/// Encodes and signs `claims`.
pub(super) fn sign(key: &Key, claims: &Claims) -> String {
    let json = serde_json::to_vec(claims).expect("claims of strings, numbers and enums serialize");
    let payload = URL_SAFE_NO_PAD.encode(json);
    let mut m = mac(key);
    m.update(payload.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{payload}.{tag}")
}

/// The claims of a token this key signed, or `None` for anything else.
/// Expiry and revocation are the caller's to check.
pub(super) fn verify(key: &Key, token: &str) -> Option<Claims> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (payload, tag) = token.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let mut m = mac(key);
    m.update(payload.as_bytes());
    // `verify_slice` compares in constant time.
    m.verify_slice(&tag).ok()?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            sub: "local:ci".into(),
            name: "ci".into(),
            typ: AccountType::System,
            roles: vec![Role::User],
            iat: 1,
            exp: 2,
            jti: "00".into(),
        }
    }

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let key = Key::generate().unwrap();
        let token = sign(&key, &claims());
        assert_eq!(verify(&key, &token), Some(claims()));

        let other = Key::generate().unwrap();
        assert_eq!(verify(&other, &token), None);
        let (payload, tag) = token.split_once('.').unwrap();
        assert_eq!(verify(&key, payload), None);
        assert_eq!(verify(&key, &format!("{payload}.{tag}x")), None);
        assert_eq!(verify(&key, &format!("{payload}x.{tag}")), None);
        assert_eq!(verify(&key, &"a".repeat(MAX_TOKEN_LEN + 1)), None);
    }
}
