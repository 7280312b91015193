//! `RetentionStore` on PostgreSQL: policies as JSON rows, and a
//! repository's manifest graph read in one snapshot.

use std::collections::BTreeMap;

use async_trait::async_trait;
use mcr_core::digest::Digest;
use mcr_core::names::{RepoName, Tag};
use mcr_core::ports::RetentionStore;
use mcr_core::retention::{GraphManifest, GraphTag, ManifestGraph, RetentionPolicy, RetentionSpec};
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};
use tokio_postgres::Row;

use super::rows::{all, change, one, parsed, parsed_opt, time_at};
use super::{sql, PostgresMetaStore, StepResult, TxError};

fn policy_of(row: &Row) -> StepResult<RetentionPolicy> {
    let json: &str = row.try_get(1)?;
    // Deserializing checks the body again, as on the way in.
    let spec: RetentionSpec = serde_json::from_str(json).map_err(|e| {
        TxError::Engine(Error::storage(
            "reading a retention policy",
            format!("the database holds an invalid policy: {e}"),
        ))
    })?;
    Ok(RetentionPolicy {
        id: row.try_get(0)?,
        spec,
        created: time_at(row, 2)?,
        updated: time_at(row, 3)?,
    })
}

fn json_of(spec: &RetentionSpec) -> Result<String> {
    serde_json::to_string(spec).map_err(|e| Error::storage("encoding a retention policy", e))
}

#[async_trait]
impl RetentionStore for PostgresMetaStore {
    async fn list_retention_policies(&self) -> Result<Vec<RetentionPolicy>> {
        self.run("listing retention policies", (), |c, ()| {
            Box::pin(async move { all(c, sql::LIST_RETENTION, &[], policy_of).await })
        })
        .await
    }

    async fn get_retention_policy(&self, id: i64) -> Result<Option<RetentionPolicy>> {
        self.run("reading a retention policy", id, |c, id| {
            Box::pin(async move { one(c, sql::GET_RETENTION, &[id], policy_of).await })
        })
        .await
    }

    async fn create_retention_policy(
        &self,
        spec: &RetentionSpec,
        now: Timestamp,
    ) -> Result<RetentionPolicy> {
        let data = (json_of(spec)?, now.as_millis());
        let id = self
            .write("creating a retention policy", data, |tx, (json, at)| {
                Box::pin(async move {
                    // An identity column: ids are never reused after a delete.
                    one(
                        tx,
                        sql::INSERT_RETENTION,
                        &[json, at],
                        |r| Ok(r.try_get(0)?),
                    )
                    .await?
                    .ok_or_else(|| {
                        TxError::Engine(Error::storage(
                            "creating a retention policy",
                            "no id came back",
                        ))
                    })
                })
            })
            .await?;
        Ok(RetentionPolicy {
            id,
            spec: spec.clone(),
            created: now,
            updated: now,
        })
    }

    async fn replace_retention_policy(
        &self,
        id: i64,
        spec: &RetentionSpec,
        now: Timestamp,
    ) -> Result<Option<RetentionPolicy>> {
        let data = (id, json_of(spec)?, now.as_millis());
        self.write(
            "replacing a retention policy",
            data,
            |tx, (id, json, at)| {
                Box::pin(async move {
                    change(tx, sql::REPLACE_RETENTION, &[id, json, at]).await?;
                    one(tx, sql::GET_RETENTION, &[id], policy_of).await
                })
            },
        )
        .await
    }

    async fn delete_retention_policy(&self, id: i64) -> Result<bool> {
        self.write("deleting a retention policy", id, |tx, id| {
            Box::pin(async move { Ok(change(tx, sql::DELETE_RETENTION, &[id]).await? > 0) })
        })
        .await
    }

    async fn manifest_graph(&self, repo: &RepoName) -> Result<ManifestGraph> {
        let name = repo.as_str().to_string();
        self.read("reading a repository's manifest graph", name, |tx, name| {
            Box::pin(async move {
                let mut children: BTreeMap<Digest, Vec<Digest>> = BTreeMap::new();
                for (parent, child) in all(tx, sql::GRAPH_CHILDREN, &[name], |r| {
                    Ok((parsed(r, 0, Digest::parse)?, parsed(r, 1, Digest::parse)?))
                })
                .await?
                {
                    children.entry(parent).or_default().push(child);
                }
                let manifests = all(tx, sql::GRAPH_MANIFESTS, &[name], |r| {
                    Ok(GraphManifest {
                        digest: parsed(r, 0, Digest::parse)?,
                        created: time_at(r, 1)?,
                        subject: parsed_opt(r, 2, Digest::parse)?,
                        children: Vec::new(),
                    })
                })
                .await?
                .into_iter()
                .map(|mut m| {
                    m.children = children.remove(&m.digest).unwrap_or_default();
                    m
                })
                .collect();
                let tags = all(tx, sql::GRAPH_TAGS, &[name], |r| {
                    Ok(GraphTag {
                        name: parsed(r, 0, Tag::new)?,
                        digest: parsed(r, 1, Digest::parse)?,
                        updated: time_at(r, 2)?,
                    })
                })
                .await?;
                Ok(ManifestGraph { manifests, tags })
            })
        })
        .await
    }
}
