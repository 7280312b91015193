//! What probes and metrics ask of the daemon, without a caller:
//! readiness (whether the registry can serve requests now, as opposed to
//! health: the process answers at all) and the stores' totals.

use serde::Serialize;

use super::Registry;
use crate::error::{Error, Result};
use crate::ports::StoreTotals;

/// What the readiness probe found: each store's problem, `None` when it
/// is usable. Serialises as `{"database": null | "why", "storage": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// The metadata store (`MetaStore::probe`).
    pub database: Option<String>,
    /// The blob store (`BlobStore::probe`).
    pub storage: Option<String>,
}

impl Readiness {
    /// Whether every store is usable.
    pub fn is_ready(&self) -> bool {
        self.database.is_none() && self.storage.is_none()
    }

    /// What is wrong, for a person: `database: <why>; storage: <why>`,
    /// or `None` when ready.
    pub fn reason(&self) -> Option<String> {
        let problems: Vec<String> = [("database", &self.database), ("storage", &self.storage)]
            .into_iter()
            .filter_map(|(what, problem)| problem.as_ref().map(|p| format!("{what}: {p}")))
            .collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

impl Registry {
    /// Probes the metadata and blob stores, both at once. Needs no
    /// caller: load balancers and orchestrators ask it unauthenticated
    /// (`GET /v1/ready`, `AdminService.Ready`). A store that is not
    /// usable is logged as a warning with the reason.
    pub async fn readiness(&self) -> Readiness {
        let (database, storage) =
            futures_util::future::join(self.meta.probe(), self.blobs.probe()).await;
        let readiness = Readiness {
            database: database.err().map(problem),
            storage: storage.err().map(problem),
        };
        if let Some(reason) = readiness.reason() {
            tracing::warn!(%reason, "not ready");
        }
        readiness
    }

    /// Blobs stored, their bytes, and upload sessions open, for the
    /// metrics endpoint (served on its own listener, so no caller).
    pub async fn store_totals(&self) -> Result<StoreTotals> {
        self.meta.totals().await
    }
}

/// The probe's own words: the component is named beside it already, so a
/// storage failure needs no "storage error:" in front.
fn problem(e: Error) -> String {
    match e {
        Error::Storage(s) => s.to_string(),
        Error::Unavailable(why) => why,
        other => other.to_string(),
    }
}
