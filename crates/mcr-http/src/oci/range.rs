//! The `Range` of a blob read and the `Content-Range` of an upload chunk:
//! the single-range forms the OCI Distribution API uses (RFC 9110 §14.2,
//! §14.4). Parsing is pure, so the handlers and the fuzz targets share it.

use mcr_core::ports::ByteRange;

/// What a `Range` header asks of a blob: one range of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=<start>-[<end>]`: `start..=end`, or from `start` to the end
    /// of the blob; `end ≥ start` always.
    Bytes(ByteRange),
    /// `bytes=-<n>`: the last `n` bytes, `n ≥ 1`; where they start depends
    /// on the blob's size.
    Suffix(u64),
}

impl RangeSpec {
    /// Parses a `Range` value. `None` for anything but a single byte range:
    /// another unit, several ranges, an end before the start, or a suffix
    /// of zero bytes.
    pub fn parse(value: &str) -> Option<RangeSpec> {
        let spec = value.trim().strip_prefix("bytes=")?;
        let (start, end) = spec.split_once('-')?;
        if start.trim().is_empty() {
            let n: u64 = end.trim().parse().ok()?;
            return (n > 0).then_some(RangeSpec::Suffix(n));
        }
        let start: u64 = start.trim().parse().ok()?;
        let end = match end.trim() {
            "" => None,
            e => Some(e.parse::<u64>().ok()?),
        };
        if end.is_some_and(|e| e < start) {
            return None;
        }
        Some(RangeSpec::Bytes(ByteRange { start, end }))
    }
}

/// Where an upload chunk goes: bytes `start..=end` of the blob, from a
/// `Content-Range` of `<start>-<end>` (the distribution-spec's form) or
/// `bytes <start>-<end>/<size or *>` (RFC 9110's). `start ≤ end` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    start: u64,
    end: u64,
}

impl ContentRange {
    /// Parses a `Content-Range` value; `None` when it is not one range with
    /// `start ≤ end`. The complete length after `/`, if any, is ignored: an
    /// upload does not know it yet.
    pub fn parse(value: &str) -> Option<ContentRange> {
        let s = value.trim();
        let s = s.strip_prefix("bytes ").unwrap_or(s);
        let s = s.split('/').next().unwrap_or(s);
        let (start, end) = s.split_once('-')?;
        let start: u64 = start.trim().parse().ok()?;
        let end: u64 = end.trim().parse().ok()?;
        (start <= end).then_some(ContentRange { start, end })
    }

    /// The offset of the chunk's first byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The offset of the chunk's last byte.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Whether a body of `content_length` bytes fills exactly this range.
    /// (`0-18446744073709551615` covers 2^64 bytes, which no length says:
    /// the range's size is never computed, only compared.)
    pub fn fits(&self, content_length: u64) -> bool {
        content_length
            .checked_sub(1)
            .is_some_and(|last| last == self.end - self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_byte_ranges() {
        let bytes = |start, end| Some(RangeSpec::Bytes(ByteRange { start, end }));
        assert_eq!(RangeSpec::parse("bytes=0-9"), bytes(0, Some(9)));
        assert_eq!(RangeSpec::parse(" bytes=5- "), bytes(5, None));
        assert_eq!(RangeSpec::parse("bytes=-3"), Some(RangeSpec::Suffix(3)));
        for bad in [
            "",
            "bytes=",
            "bytes=-0",
            "bytes=9-5",
            "items=0-1",
            "bytes=0-1,3-4",
        ] {
            assert_eq!(RangeSpec::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_chunk_ranges_in_both_forms() {
        let r = ContentRange::parse("0-9").unwrap();
        assert_eq!((r.start(), r.end()), (0, 9));
        assert!(r.fits(10) && !r.fits(9) && !r.fits(0));
        let all = ContentRange::parse("0-18446744073709551615").unwrap();
        assert!(!all.fits(0) && !all.fits(u64::MAX));
        assert!(ContentRange::parse("7-7").unwrap().fits(1));
        assert_eq!(
            ContentRange::parse("bytes 10-19/*"),
            Some(ContentRange { start: 10, end: 19 })
        );
        for bad in ["", "5", "9-5", "-1", "a-b"] {
            assert_eq!(ContentRange::parse(bad), None, "{bad}");
        }
    }
}
