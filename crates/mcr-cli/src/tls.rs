//! The roots a client trusts: the public web roots, plus a private CA.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// The public roots, plus the certificates of the PEM file `ca_cert`;
/// errors name the file as `what` (`--ca-cert`, `web.ca_cert`).
pub(crate) fn trusted_roots(ca_cert: Option<&Path>, what: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_cert {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{what} {shown}: cannot read it: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{what} {shown} is not PEM: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{what} {shown} holds no PEM certificate"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{what} {shown}: a certificate is not usable: {e}"))?;
        }
    }
    Ok(roots)
}
