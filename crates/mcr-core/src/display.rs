//! How quantities read for people, one way for `mcrctl`'s tables and the
//! web UI's pages, and how sizes people write are read back; and how a URL
//! that may carry credentials is quoted in a message or a log.

use crate::error::Error;

/// A byte count in binary units: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A size as people write it: `50GiB`, `512MiB`, `10GB`, `1000` (bytes).
/// `Invalid` (field `size`) naming what is wrong.
pub fn parse_size(s: &str) -> Result<u64, Error> {
    let invalid = |reason: String| Error::invalid("size", reason);
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| invalid(format!("{s:?} is not a size like 50GiB")))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        u => {
            return Err(invalid(format!(
                "{s:?}: unknown unit {u:?} (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            )))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| invalid(format!("{s:?} is too large")))
}

/// `url` with what may be a secret shown as `***`: anything before an `@`
/// in its authority (`https://u:p@host/x` → `https://***@host/x`), the
/// path after its first segment (`/services/T0/B0/XyZ` → `/services/***`:
/// Slack- and Teams-style webhooks carry their token there), each query
/// parameter's value (`?token=abc&v` → `?token=***&***`, a bare
/// parameter being a value) and the fragment (`#***`). So a message, a
/// log or a listing quoting a configured URL (an upstream, a webhook)
/// never shows its credentials, and still shows its shape. Works on the
/// text, which may not even parse as a URL: a text without `scheme://`
/// is taken as starting with its authority.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (tail, fragment) = match tail.split_once('#') {
        Some((t, f)) => (t, Some(f)),
        None => (tail, None),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    match authority.rfind('@') {
        Some(at) => {
            out.push_str("***");
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    match path.get(1..).and_then(|p| p.split_once('/')) {
        Some((first, rest)) if !rest.trim_matches('/').is_empty() => {
            out.push('/');
            out.push_str(first);
            out.push_str("/***");
        }
        _ => out.push_str(path),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((name, _)) => format!("{name}=***"),
                None if p.is_empty() => String::new(),
                None => "***".to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        if !fragment.is_empty() {
            out.push_str("***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_never_quoted() {
        // The `@` in the query is no authority's; the query's value is
        // redacted as a value.
        assert_eq!(
            redact_url("https://u:p@ci.example/h?x=y@z"),
            "https://***@ci.example/h?x=***"
        );
        assert_eq!(redact_url("bob:pw@host:5000"), "***@host:5000");
        assert_eq!(redact_url("https://ci.example/h"), "https://ci.example/h");
        assert_eq!(redact_url("https://u:p@x:5000/v2"), "https://***@x:5000/v2");
        assert_eq!(redact_url("https://x/a@b"), "https://x/a@b");
    }

    #[test]
    fn paths_query_values_and_fragments_in_a_url_are_never_quoted() {
        assert_eq!(
            redact_url("https://ci.example/hooks?token=s3cret"),
            "https://ci.example/hooks?token=***"
        );
        assert_eq!(
            redact_url("https://ci.example/h?a=1&key=s3cret&&bare"),
            "https://ci.example/h?a=***&key=***&&***"
        );
        assert_eq!(
            redact_url("https://u:p@ci.example?sig=x#frag"),
            "https://***@ci.example?sig=***#***"
        );
        assert_eq!(redact_url("https://ci.example/h?"), "https://ci.example/h?");
        assert_eq!(redact_url("https://ci.example/h#"), "https://ci.example/h#");
        assert_eq!(redact_url("host:5000/v2?t=1"), "host:5000/v2?t=***");
        assert_eq!(
            redact_url("https://hooks.example/services/T0/B0/XyZ?a=1"),
            "https://hooks.example/services/***?a=***"
        );
        assert_eq!(redact_url("http://h:9/hook/"), "http://h:9/hook/");
        assert_eq!(redact_url("http://h:9//"), "http://h:9//");
        for secret in ["s3cret", "hunter2"] {
            let url = format!("https://a:{secret}@x/p/{secret}?t={secret}#{secret}");
            assert!(!redact_url(&url).contains(secret), "{url}");
        }
    }

    #[test]
    fn sizes_are_read_with_binary_and_decimal_units() {
        assert_eq!(parse_size("50GiB").unwrap(), 50 << 30);
        assert_eq!(parse_size("10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_size(" 1000 ").unwrap(), 1000);
        assert_eq!(parse_size("3 MiB").unwrap(), 3 << 20);
        for (bad, says) in [
            ("", "is not a size"),
            ("GiB", "is not a size"),
            ("5 parsecs", "unknown unit"),
            ("99999999999TiB", "too large"),
        ] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
