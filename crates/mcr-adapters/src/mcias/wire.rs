//! The MCIAS wire format: request and response bodies, and the RFC 3339
//! times in them. `docs/mcias.md` is the prose version of this file.

use mcr_core::principal::{AccountType, Principal, Role};
use mcr_core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// `POST /v1/auth/login`.
#[derive(Serialize)]
pub(super) struct LoginRequest<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub service_name: &'a str,
    pub tags: &'a [String],
}

/// The 200 answer to a login.
#[derive(Deserialize)]
pub(super) struct LoginResponse {
    pub token: String,
    pub expires_at: String,
}

/// `POST /v1/token/validate`.
#[derive(Serialize)]
pub(super) struct ValidateRequest<'a> {
    pub token: &'a str,
}

/// The 200 answer to a validation. Only `valid` is required: an invalid
/// token's answer may carry nothing else.
#[derive(Deserialize)]
pub(super) struct ValidateResponse {
    pub valid: bool,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub account_type: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A valid token as MCIAS describes it.
pub(super) struct Validated {
    pub principal: Principal,
    pub expires_at: Option<Timestamp>,
}

impl ValidateResponse {
    /// The principal of a `valid: true` answer, or why the answer does not
    /// hold one. Roles MCR does not know are skipped (MCIAS serves other
    /// services with roles of their own); a missing subject or an unknown
    /// account type is a broken answer.
    pub fn into_validated(self) -> Result<Validated, String> {
        let sub = self
            .sub
            .filter(|s| !s.is_empty())
            .ok_or("a valid token's answer has no sub")?;
        let account_type: AccountType = self
            .account_type
            .as_deref()
            .ok_or("a valid token's answer has no account_type")?
            .parse()
            .map_err(|e| format!("{e}"))?;
        let mut roles = Vec::new();
        for r in &self.roles {
            match r.parse::<Role>() {
                Ok(role) if !roles.contains(&role) => roles.push(role),
                Ok(_) => {}
                Err(_) => tracing::debug!(role = %r, "ignoring an MCIAS role MCR does not know"),
            }
        }
        let expires_at = self
            .expires_at
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|e| format!("expires_at: {e}"))?;
        Ok(Validated {
            principal: Principal::new(sub, account_type, roles),
            expires_at,
        })
    }
}

/// Parses an RFC 3339 time with `Z` or any `±HH:MM` offset (MCIAS may
/// answer in its local zone). `Timestamp::parse_rfc3339` only knows UTC,
/// so the offset is taken off here and applied afterwards.
pub(super) fn parse_time(s: &str) -> Result<Timestamp, String> {
    let bad = || format!("{s:?} is not an RFC 3339 time");
    let b = s.as_bytes();
    // "2006-01-02T15:04:05" is 19 bytes; an offset is the last 6.
    if b.len() >= 25 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':' {
        let (base, offset) = s.split_at(s.len() - 6);
        let hours: i64 = offset[1..3].parse().map_err(|_| bad())?;
        let minutes: i64 = offset[4..6].parse().map_err(|_| bad())?;
        if hours > 23 || minutes > 59 {
            return Err(bad());
        }
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let local = Timestamp::parse_rfc3339(&format!("{base}Z")).map_err(|_| bad())?;
        let shift = sign * (hours * 3600 + minutes * 60) * 1000;
        return Ok(Timestamp::from_millis(local.as_millis() - shift));
    }
    if !s.ends_with('Z') {
        return Err(bad());
    }
    Timestamp::parse_rfc3339(s).map_err(|_| bad())
}

/// Describes a JSON error by kind and position only: serde_json's own
/// message can quote the offending value, which may be a token.
pub(super) fn describe_json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of the wrong shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_utc_and_with_offsets() {
        let utc = parse_time("2024-01-01T12:00:00Z").unwrap();
        assert_eq!(utc.to_rfc3339(), "2024-01-01T12:00:00.000Z");
        assert_eq!(parse_time("2024-01-01T14:00:00+02:00").unwrap(), utc);
        assert_eq!(parse_time("2024-01-01T06:30:00-05:30").unwrap(), utc);
        assert_eq!(parse_time("2024-01-01T12:00:00+00:00").unwrap(), utc);
        assert_eq!(
            parse_time("2024-01-01T12:00:00.123456789Z")
                .unwrap()
                .as_millis(),
            utc.as_millis() + 123
        );
        for bad in [
            "tomorrow",
            "2024-01-01T12:00:00",
            "2024-01-01T12:00:00+25:00",
            "",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_valid_answer_becomes_a_principal() {
        let r: ValidateResponse = serde_json::from_str(
            r#"{"valid":true,"sub":"u-1","account_type":"system","roles":["user","deployer","user"],"expires_at":"2024-01-01T12:00:00Z"}"#,
        )
        .unwrap();
        let v = r.into_validated().unwrap();
        assert_eq!(v.principal.subject, "u-1");
        assert_eq!(v.principal.account_type, AccountType::System);
        assert_eq!(v.principal.roles, vec![Role::User]);
        assert!(v.expires_at.is_some());
    }

    #[test]
    fn broken_valid_answers_are_refused() {
        for body in [
            r#"{"valid":true,"account_type":"human"}"#,
            r#"{"valid":true,"sub":"u","account_type":"robot"}"#,
            r#"{"valid":true,"sub":"u","account_type":"human","expires_at":"soon"}"#,
        ] {
            let r: ValidateResponse = serde_json::from_str(body).unwrap();
            assert!(r.into_validated().is_err(), "{body}");
        }
        let r: ValidateResponse = serde_json::from_str(r#"{"valid":false}"#).unwrap();
        assert!(!r.valid);
    }

    #[test]
    fn json_errors_do_not_quote_values() {
        let e = serde_json::from_str::<LoginResponse>(r#"{"token":42,"expires_at":"x"}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("42"));
        let d = describe_json_error(&e);
        assert!(!d.contains("42"), "{d}");
        assert!(d.contains("wrong shape"), "{d}");
    }
}
