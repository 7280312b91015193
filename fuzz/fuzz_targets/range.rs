//! `Range` (blob reads) and `Content-Range` (upload chunks). The input is
//! `<header value>\n<content length>\n<blob size>`; missing numbers are 0.
//! Accepted ranges print back and parse to themselves, resolve within the
//! blob, and a chunk range fits exactly the lengths it covers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcr_core::ports::ByteRange;
use mcr_http::oci::{ContentRange, RangeSpec};

/// `r` resolved against a blob of `size` bytes is inside it and starts
/// where asked; it is refused only when it starts past the end.
fn check_resolve(r: ByteRange, size: u64) {
    match r.resolve(size) {
        Some((offset, len)) => {
            assert_eq!(offset, r.start);
            assert!(len >= 1);
            assert!(u128::from(offset) + u128::from(len) <= u128::from(size));
            if let Some(end) = r.end {
                assert!(u128::from(offset) + u128::from(len) - 1 <= u128::from(end));
            }
        }
        None => assert!(r.start >= size, "{r:?} refused for a blob of {size} bytes"),
    }
}

fuzz_target!(|s: &str| {
    let mut parts = s.splitn(3, '\n');
    let value = parts.next().unwrap_or_default();
    let mut number = || {
        parts
            .next()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (length, size) = (number(), number());

    match RangeSpec::parse(value) {
        Some(RangeSpec::Bytes(r)) => {
            assert!(r.end.is_none_or(|e| e >= r.start));
            let end = r.end.map(|e| e.to_string()).unwrap_or_default();
            let again = format!("bytes={}-{end}", r.start);
            assert_eq!(RangeSpec::parse(&again), Some(RangeSpec::Bytes(r)));
            check_resolve(r, size);
        }
        Some(RangeSpec::Suffix(n)) => {
            assert!(n >= 1);
            assert_eq!(
                RangeSpec::parse(&format!("bytes=-{n}")),
                Some(RangeSpec::Suffix(n))
            );
            // How the blob handler turns a suffix into a range.
            let r = ByteRange {
                start: size.saturating_sub(n),
                end: None,
            };
            if size > 0 {
                assert_eq!(r.resolve(size).map(|(_, len)| len), Some(n.min(size)));
            }
            check_resolve(r, size);
        }
        None => {}
    }

    if let Some(c) = ContentRange::parse(value) {
        assert!(c.start() <= c.end());
        for again in [
            format!("{}-{}", c.start(), c.end()),
            format!("bytes {}-{}/*", c.start(), c.end()),
        ] {
            assert_eq!(ContentRange::parse(&again), Some(c));
        }
        let covered = u128::from(c.end()) - u128::from(c.start()) + 1;
        assert_eq!(c.fits(length), u128::from(length) == covered);
        if let Ok(exact) = u64::try_from(covered) {
            assert!(c.fits(exact));
        }
    }
});
