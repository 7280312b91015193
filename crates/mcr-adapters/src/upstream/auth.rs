//! Registry authentication as clients do it (the Docker token
//! specification, which the OCI distribution spec defers to): a request
//! without credentials, and on `401` the `WWW-Authenticate` challenge says
//! how — `Basic`, or `Bearer realm=…,service=…,scope=…`, a token to fetch
//! from the realm (anonymously, or with the configured credentials over
//! Basic) and send as `Authorization: Bearer`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mcr_core::ports::Secret;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses the header's value; `None` for a scheme registries do not
    /// use or a `Bearer` without a realm.
    pub(crate) fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(params);
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    }
}

/// `key="value", key=value, …` (RFC 7235 auth-params; a quoted value may
/// hold commas, as `scope="repository:a:pull,push"` does).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Bearer tokens by scope until they expire, at most [`TokenCache::CAPACITY`]
/// (then the cache starts over: a token is cheap to fetch again).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (Secret, Instant)>>,
}

impl TokenCache {
    const CAPACITY: usize = 1024;
    /// A token is used until this long before it expires, so it does not
    /// expire on the way.
    const MARGIN: Duration = Duration::from_secs(10);

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Secret, Instant)>> {
        // Each change is one insert, remove or clear: never half-made.
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, scope: &str) -> Option<Secret> {
        let mut tokens = self.lock();
        match tokens.get(scope) {
            Some((token, until)) if Instant::now() < *until => Some(token.clone()),
            Some(_) => {
                tokens.remove(scope);
                None
            }
            None => None,
        }
    }

    /// Keeps `token` for `lifetime` (less the margin).
    pub(crate) fn put(&self, scope: &str, token: Secret, lifetime: Duration) {
        let until = Instant::now() + lifetime.saturating_sub(Self::MARGIN);
        let mut tokens = self.lock();
        if tokens.len() >= Self::CAPACITY {
            tokens.clear();
        }
        tokens.insert(scope.to_string(), (token, until));
    }

    pub(crate) fn forget(&self, scope: &str) {
        self.lock().remove(scope);
    }
}

/// The token endpoint's answer (`token`, or OAuth2's `access_token`;
/// `expires_in` seconds, 60 when absent, as the token spec says).
#[derive(serde::Deserialize)]
pub(crate) struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl TokenAnswer {
    /// The token and how long it lives; `None` if the answer holds none.
    pub(crate) fn into_token(self) -> Option<(Secret, Duration)> {
        let token = self.token.or(self.access_token)?;
        if token.is_empty() {
            return None;
        }
        let lifetime = Duration::from_secs(self.expires_in.unwrap_or(60).max(60));
        Some((Secret::new(token), lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_registries_send_them() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="http://127.0.0.1:5000/v2/token", scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:5000/v2/token".into(),
                service: None,
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None, "no realm");
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn tokens_expire_and_answers_take_either_field() {
        let cache = TokenCache::default();
        cache.put("s", Secret::new("t"), Duration::from_secs(300));
        assert_eq!(
            cache.get("s").map(|t| t.expose().to_string()).as_deref(),
            Some("t")
        );
        cache.put("short", Secret::new("t"), Duration::from_secs(5));
        assert!(cache.get("short").is_none(), "inside the margin");
        cache.forget("s");
        assert!(cache.get("s").is_none());

        let a: TokenAnswer =
            serde_json::from_str(r#"{"access_token":"abc","expires_in":120}"#).unwrap();
        let (t, life) = a.into_token().unwrap();
        assert_eq!((t.expose(), life), ("abc", Duration::from_secs(120)));
        let a: TokenAnswer = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(a.into_token().is_none());
    }
}
