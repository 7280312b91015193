//! What the HTTP clients of other services (MCIAS, upstream registries)
//! share: the rustls setup with an operator's CA file, reading an answer
//! of bounded size, and error messages that keep the cause.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use mcr_core::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Which TLS versions a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versions {
    /// TLS 1.3 only: services of the platform MCR runs on.
    #[cfg(feature = "mcias")]
    Tls13,
    /// TLS 1.3 and 1.2: registries and webhook receivers on the
    /// internet, some of which still stop at 1.2.
    #[cfg(any(feature = "upstream", feature = "webhooks"))]
    Tls13And12,
}

/// The TLS setup: `ring`, the Mozilla roots plus the certificates of
/// `ca_cert` (PEM). Errors name `field` (the config key) and the file.
pub(crate) fn config(
    field: &'static str,
    ca_cert: Option<&Path>,
    versions: Versions,
) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_cert {
        let shown = path.display();
        let pem = std::fs::read(path)
            .map_err(|e| Error::invalid(field, format!("cannot read {shown}: {e}")))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::invalid(field, format!("{shown} is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::invalid(
                field,
                format!("{shown} holds no PEM certificate"),
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                Error::invalid(
                    field,
                    format!("a certificate in {shown} is not usable: {e}"),
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let protocols: &[&rustls::SupportedProtocolVersion] = match versions {
        #[cfg(feature = "mcias")]
        Versions::Tls13 => &[&rustls::version::TLS13],
        #[cfg(any(feature = "upstream", feature = "webhooks"))]
        Versions::Tls13And12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(protocols)
        .map_err(|e| Error::Unavailable(format!("TLS is not available: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// An error and its causes, `: `-joined: reqwest's own message is only
/// "error sending request"; the cause says "connection refused" or
/// "invalid peer certificate: UnknownIssuer".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Why [`read_at_most`] returned no body.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection failed while the body arrived; the error is
    /// stripped of its URL, as both clients show their errors.
    Transport(reqwest::Error),
    /// The body is over the limit (bytes), by its `Content-Length` or by
    /// what arrived.
    TooLong { limit: u64 },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Transport(e) => f.write_str(&error_chain(e)),
            ReadError::TooLong { limit } => write!(f, "the answer is over {limit} bytes"),
        }
    }
}

/// Reads a whole answer of at most `limit` bytes: refused by its
/// `Content-Length` before a byte is read, else as soon as what arrived
/// passes the limit, so a hostile server never makes us hold more.
pub(crate) async fn read_at_most(
    mut resp: reqwest::Response,
    limit: u64,
) -> std::result::Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLong { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(e.without_url()))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ReadError::TooLong { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
