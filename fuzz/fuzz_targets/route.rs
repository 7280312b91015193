//! The OCI path router: any path after `/v2/` either routes or is refused,
//! never panics; what it routes holds names and digests that validate
//! again, and printing the route as a path routes back to it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::names::{Reference, RepoName};
use mcr_http::oci::OciRoute;

/// The canonical path of a route, as a client would send it.
fn path(route: &OciRoute) -> String {
    match route {
        OciRoute::Manifest(r, reference) => format!("{r}/manifests/{reference}"),
        OciRoute::Blob(r, d) => format!("{r}/blobs/{d}"),
        OciRoute::UploadStart(r) => format!("{r}/blobs/uploads/"),
        OciRoute::Upload(r, id) => format!("{r}/blobs/uploads/{id}"),
        OciRoute::Tags(r) => format!("{r}/tags/list"),
        OciRoute::Referrers(r, d) => format!("{r}/referrers/{d}"),
    }
}

fuzz_target!(|p: &str| {
    let Ok(Some(route)) = OciRoute::parse(p) else {
        return;
    };
    let repo = route.repository();
    assert_eq!(RepoName::new(repo.as_str()).ok().as_ref(), Some(repo));
    match &route {
        OciRoute::Manifest(_, Reference::Digest(d))
        | OciRoute::Blob(_, d)
        | OciRoute::Referrers(_, d) => {
            assert_eq!(Digest::parse(&d.to_string()).ok().as_ref(), Some(d));
        }
        OciRoute::Manifest(_, reference) => {
            assert_eq!(
                Reference::parse(&reference.to_string()).ok().as_ref(),
                Some(reference)
            );
        }
        OciRoute::Upload(_, id) => assert_eq!(UploadId::parse(id.as_str()).ok().as_ref(), Some(id)),
        OciRoute::UploadStart(_) | OciRoute::Tags(_) => {}
    }
    let again = path(&route);
    assert_eq!(OciRoute::parse(&again).ok(), Some(Some(route)), "{again}");
});
