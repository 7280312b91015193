//! A request head read off the socket, and whether mcrsrv answers it
//! itself.

use axum::body::Body;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// Longest head mcrsrv waits for before handing the connection to hyper,
/// which applies the same limit and answers 431.
pub(super) const MAX_HEAD: usize = crate::server::listen::MAX_HEAD_BYTES;

/// Most header fields in a head mcrsrv parses itself; more go to hyper.
const MAX_HEADERS: usize = 64;

/// What the bytes received so far hold.
// Returned once per request and matched at once, never stored: boxing the
// request would only add an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(super) enum Head {
    /// More bytes are needed to see a whole head.
    Partial,
    /// A well-formed HTTP/1.1 GET or HEAD without a body: the request, the
    /// length of its head in the buffer, and whether the client asked to
    /// close the connection after it.
    Claimed {
        request: Request<Body>,
        len: usize,
        close: bool,
    },
    /// Anything else — another method, a body, an upgrade, `Expect`,
    /// HTTP/1.0 or HTTP/2, a malformed or oversized head: hyper serves it,
    /// and the rest of the connection.
    HandOff,
}

/// Parses the head at the start of `buf`.
pub(super) fn parse(buf: &[u8]) -> Head {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => match claim(&parsed) {
            Some((request, close)) => Head::Claimed {
                request,
                len,
                close,
            },
            None => Head::HandOff,
        },
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Head::Partial,
        _ => Head::HandOff,
    }
}

/// The request, if it is one mcrsrv answers itself, with whether the
/// client asked to close.
fn claim(parsed: &httparse::Request<'_, '_>) -> Option<(Request<Body>, bool)> {
    let method = match parsed.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ => return None,
    };
    if parsed.version? != 1 {
        return None;
    }
    let path = parsed.path?;
    // Origin form only; hyper handles the rest (absolute form, `*`).
    if !path.starts_with('/') {
        return None;
    }
    let uri: Uri = path.parse().ok()?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut close = false;
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        if name == CONTENT_LENGTH && value != "0"
            || name == TRANSFER_ENCODING
            || name == EXPECT
            || name == UPGRADE
        {
            return None;
        }
        if name == CONNECTION {
            if has_token(&value, "upgrade") {
                return None;
            }
            close |= has_token(&value, "close");
        }
        headers.append(name, value);
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some((request, close))
}

/// Whether a comma-separated header value lists `token` (any case).
pub(super) fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(raw: &str) -> (Request<Body>, usize, bool) {
        match parse(raw.as_bytes()) {
            Head::Claimed {
                request,
                len,
                close,
            } => (request, len, close),
            Head::Partial => panic!("partial: {raw:?}"),
            Head::HandOff => panic!("handed off: {raw:?}"),
        }
    }

    fn handed_off(raw: &str) -> bool {
        matches!(parse(raw.as_bytes()), Head::HandOff)
    }

    #[test]
    fn bodiless_gets_and_heads_are_claimed_with_their_headers() {
        let raw = "GET /v2/a/b/blobs/sha256:00?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\nAccept: a\r\nAccept: b\r\n\r\nGET /next";
        let (req, len, close) = claimed(raw);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/v2/a/b/blobs/sha256:00");
        assert_eq!(req.uri().query(), Some("x=1"));
        assert_eq!(req.headers()["authorization"], "Bearer t");
        assert_eq!(req.headers().get_all("accept").iter().count(), 2);
        assert_eq!(
            &raw[len..],
            "GET /next",
            "the head ends where the next begins"
        );
        assert!(!close);
        let (req, _, close) = claimed(
            "HEAD / HTTP/1.1\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(req.method(), Method::HEAD);
        assert!(close);
    }

    #[test]
    fn anything_with_a_body_or_unusual_goes_to_hyper() {
        for raw in [
            "POST /v2/a/blobs/uploads/ HTTP/1.1\r\n\r\n",
            "PUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /x HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            "GET /x HTTP/1.0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET http://h/x HTTP/1.1\r\n\r\n",
            "GET /x HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(handed_off(raw), "{raw:?} should go to hyper");
        }
        // A TLS ClientHello sent to the plain port.
        assert!(matches!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            Head::HandOff
        ));
    }

    #[test]
    fn a_head_in_pieces_waits_until_it_is_too_long() {
        assert!(matches!(
            parse(b"GET /x HTTP/1.1\r\nHost: h\r\n"),
            Head::Partial
        ));
        let mut long = b"GET /x HTTP/1.1\r\nX-Filler: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert!(matches!(parse(&long), Head::HandOff));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert!(handed_off(&format!("GET /x HTTP/1.1\r\n{many}\r\n")));
    }
}
