//! Manifest parsing, all four formats: OCI image manifest and index,
//! Docker schema2 manifest and manifest list. The first input byte picks
//! the request's `Content-Type` (`'0'` none, `'1'`..`'4'` the four formats,
//! `'5'` another type); the rest is the body.
//!
//! A parsed manifest has the shape of its kind, its descriptors survive a
//! JSON round trip, and it parses the same when the `Content-Type` it is
//! served with is sent back, as a client copying it to another registry
//! does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcr_core::manifest::{Descriptor, Manifest, ManifestKind};
use mcr_core::media::{self, MediaType};

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some(media::OCI_IMAGE_MANIFEST),
    Some(media::OCI_IMAGE_INDEX),
    Some(media::DOCKER_MANIFEST_V2),
    Some(media::DOCKER_MANIFEST_LIST),
    Some("application/json"),
];

fn round_trips(d: &Descriptor) {
    let json = serde_json::to_vec(d).expect("a descriptor serializes");
    let back: Descriptor = serde_json::from_slice(&json).expect("its own JSON parses");
    assert_eq!(&back, d);
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, raw)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()]
        .map(|mt| MediaType::new(mt).expect("a valid media type"));
    let Ok(m) = Manifest::parse(content_type.as_ref(), raw) else {
        return;
    };

    if let Some(ct) = &content_type {
        assert_eq!(
            m.kind.media_type(),
            ct.as_str(),
            "kind differs from Content-Type"
        );
    }
    assert_eq!(m.media_type().as_str(), m.kind.media_type());
    assert_eq!(
        ManifestKind::from_media_type(m.media_type().as_str()),
        Some(m.kind)
    );
    if m.kind.is_index() {
        assert!(m.config.is_none() && m.layers.is_empty());
    } else {
        assert!(m.config.is_some() && m.manifests.is_empty());
    }
    assert!(m.required_blobs().count() <= 1 + m.layers.len());
    assert!(m.required_blobs().all(|d| !d.is_external()));
    let _ = m.referrer_artifact_type();
    m.config
        .iter()
        .chain(&m.layers)
        .chain(&m.manifests)
        .chain(&m.subject)
        .for_each(round_trips);

    let served_as = m.media_type();
    let again = Manifest::parse(Some(&served_as), raw).expect("parses with its own media type");
    assert_eq!(again, m);
});
