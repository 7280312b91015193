//! One manifest: its JSON pretty-printed, config, layers with sizes, the
//! platforms of an index (each a link) and its referrers with their
//! `artifactType` (`RegistryService.GetManifest`).

use askama::Template;
use axum::response::Response;
use mcr_core::manifest::Descriptor;
use mcr_core::registry::ManifestDetail;
use mcr_grpc::pb;

use super::{manifest_href, render, repo_href, size, time, Chrome};
use crate::backend::answer;
use crate::csrf::CsrfToken;
use crate::error::UiError;
use crate::session::Session;
use crate::state::Web;

pub struct Link {
    digest: String,
    href: String,
}

pub struct PlatformRow {
    platform: String,
    digest: String,
    digest_short: String,
    href: String,
    media_type: String,
    size: String,
}

pub struct LayerRow {
    digest: String,
    media_type: String,
    size: String,
    size_bytes: u64,
}

pub struct ConfigView {
    digest: String,
    media_type: String,
    size: String,
}

pub struct ReferrerRow {
    artifact_type: String,
    digest: String,
    digest_short: String,
    href: String,
    size: String,
    annotations: String,
}

#[derive(Template)]
#[template(path = "manifest.html")]
struct ManifestPage {
    chrome: Chrome,
    repository: String,
    repo_href: String,
    digest: String,
    digest_short: String,
    media_type: String,
    size: String,
    created: String,
    artifact_type: Option<String>,
    subject: Option<Link>,
    pull: String,
    annotations: Vec<(String, String)>,
    platforms: Vec<PlatformRow>,
    config: Option<ConfigView>,
    config_json: Option<String>,
    layers: Vec<LayerRow>,
    layers_total: String,
    referrers: Vec<ReferrerRow>,
    json: String,
}

/// JSON text indented for reading; text that is not JSON as it is.
fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_string())
}

/// The page of `reference` in `name` (the repository page's router sends
/// `…/-/manifests/…` here).
pub async fn page(
    web: &Web,
    session: &Session,
    csrf: &CsrfToken,
    name: &str,
    reference: &str,
) -> Result<Response, UiError> {
    let mut c = web.backend().clients(Some(session))?;
    let m: ManifestDetail = answer(
        c.registry
            .get_manifest(pb::GetManifestRequest {
                repository: name.to_string(),
                reference: reference.to_string(),
            })
            .await
            .map_err(|s| web.backend().failed(s))?
            .into_inner(),
    )?;
    let name = m.repository.to_string();
    let link = |d: &Descriptor| manifest_href(&name, &d.digest.to_string());
    render(&ManifestPage {
        chrome: Chrome::new(session, csrf, "repositories"),
        repo_href: repo_href(&name),
        digest: m.digest.to_string(),
        digest_short: m.digest.short(),
        media_type: m.media_type.to_string(),
        size: size(m.size),
        created: time(m.created),
        artifact_type: m.artifact_type.as_ref().map(ToString::to_string),
        subject: m.subject.as_ref().map(|s| Link {
            digest: s.to_string(),
            href: manifest_href(&name, &s.to_string()),
        }),
        pull: web.pull_ref(&name, &format!("@{}", m.digest)),
        annotations: m.annotations.clone().into_iter().collect(),
        platforms: m
            .manifests
            .iter()
            .map(|d| PlatformRow {
                platform: d
                    .platform()
                    .map_or_else(|| "(no platform)".into(), |p| p.to_string()),
                digest: d.digest.to_string(),
                digest_short: d.digest.short(),
                href: link(d),
                media_type: d.media_type.to_string(),
                size: size(d.size),
            })
            .collect(),
        config: m.config.as_ref().map(|c| ConfigView {
            digest: c.digest.to_string(),
            media_type: c.media_type.to_string(),
            size: size(c.size),
        }),
        config_json: m.config_content.as_deref().map(pretty),
        layers_total: size(m.layers.iter().map(|l| l.size).sum()),
        layers: m
            .layers
            .iter()
            .map(|l| LayerRow {
                digest: l.digest.to_string(),
                media_type: l.media_type.to_string(),
                size: size(l.size),
                size_bytes: l.size,
            })
            .collect(),
        referrers: m
            .referrers
            .iter()
            .map(|r| ReferrerRow {
                artifact_type: r
                    .artifact_type
                    .as_ref()
                    .map_or_else(|| "-".into(), ToString::to_string),
                digest: r.digest.to_string(),
                digest_short: r.digest.short(),
                href: link(r),
                size: size(r.size),
                annotations: r
                    .annotations
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            })
            .collect(),
        json: pretty(&m.raw),
        repository: name.clone(),
    })
}
