//! `RetentionStore` on SQLite: policies as JSON rows, and a repository's
//! manifest graph read in one transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use mcr_core::digest::Digest;
use mcr_core::names::{RepoName, Tag};
use mcr_core::ports::RetentionStore;
use mcr_core::retention::{GraphManifest, GraphTag, ManifestGraph, RetentionPolicy, RetentionSpec};
use mcr_core::time::Timestamp;
use mcr_core::Result;
use rusqlite::types::Type;
use rusqlite::{params, Row};

use super::rows::{all, change, one, parsed, parsed_opt, repo_id};
use super::{sql, storage, SqliteMetaStore};

fn policy_of(row: &Row<'_>) -> rusqlite::Result<RetentionPolicy> {
    let json: &str = row.get_ref(1)?.as_str()?;
    // Deserializing checks the body again, as on the way in.
    let spec: RetentionSpec = serde_json::from_str(json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e)))?;
    Ok(RetentionPolicy {
        id: row.get(0)?,
        spec,
        created: Timestamp::from_millis(row.get(2)?),
        updated: Timestamp::from_millis(row.get(3)?),
    })
}

fn json_of(spec: &RetentionSpec) -> Result<String> {
    serde_json::to_string(spec).map_err(|e| storage("encoding a retention policy", e))
}

#[async_trait]
impl RetentionStore for SqliteMetaStore {
    async fn list_retention_policies(&self) -> Result<Vec<RetentionPolicy>> {
        self.run("listing retention policies", |c| {
            all(c, sql::LIST_RETENTION, [], policy_of)
        })
        .await
    }

    async fn get_retention_policy(&self, id: i64) -> Result<Option<RetentionPolicy>> {
        self.run("reading a retention policy", move |c| {
            one(c, sql::GET_RETENTION, [id], policy_of)
        })
        .await
    }

    async fn create_retention_policy(
        &self,
        spec: &RetentionSpec,
        now: Timestamp,
    ) -> Result<RetentionPolicy> {
        let (spec, json) = (spec.clone(), json_of(spec)?);
        self.write("creating a retention policy", move |tx| {
            // AUTOINCREMENT: ids are never reused after a delete.
            change(tx, sql::INSERT_RETENTION, params![json, now.as_millis()])?;
            Ok(RetentionPolicy {
                id: tx.last_insert_rowid(),
                spec,
                created: now,
                updated: now,
            })
        })
        .await
    }

    async fn replace_retention_policy(
        &self,
        id: i64,
        spec: &RetentionSpec,
        now: Timestamp,
    ) -> Result<Option<RetentionPolicy>> {
        let json = json_of(spec)?;
        self.write("replacing a retention policy", move |tx| {
            change(
                tx,
                sql::REPLACE_RETENTION,
                params![id, json, now.as_millis()],
            )?;
            one(tx, sql::GET_RETENTION, [id], policy_of)
        })
        .await
    }

    async fn delete_retention_policy(&self, id: i64) -> Result<bool> {
        self.write("deleting a retention policy", move |tx| {
            Ok(change(tx, sql::DELETE_RETENTION, [id])? > 0)
        })
        .await
    }

    async fn manifest_graph(&self, repo: &RepoName) -> Result<ManifestGraph> {
        let repo = repo.clone();
        self.read("reading a repository's manifest graph", move |tx| {
            let Some(id) = repo_id(tx, &repo)? else {
                return Ok(ManifestGraph::default());
            };
            let mut children: BTreeMap<Digest, Vec<Digest>> = BTreeMap::new();
            for (parent, child) in all(tx, sql::GRAPH_CHILDREN, [id], |r| {
                Ok((parsed(r, 0, Digest::parse)?, parsed(r, 1, Digest::parse)?))
            })? {
                children.entry(parent).or_default().push(child);
            }
            let manifests = all(tx, sql::GRAPH_MANIFESTS, [id], |r| {
                Ok(GraphManifest {
                    digest: parsed(r, 0, Digest::parse)?,
                    created: Timestamp::from_millis(r.get(1)?),
                    subject: parsed_opt(r, 2, Digest::parse)?,
                    children: Vec::new(),
                })
            })?
            .into_iter()
            .map(|mut m| {
                m.children = children.remove(&m.digest).unwrap_or_default();
                m
            })
            .collect();
            let tags = all(tx, sql::GRAPH_TAGS, [id], |r| {
                Ok(GraphTag {
                    name: parsed(r, 0, Tag::new)?,
                    digest: parsed(r, 1, Digest::parse)?,
                    updated: Timestamp::from_millis(r.get(2)?),
                })
            })?;
            Ok(ManifestGraph { manifests, tags })
        })
        .await
    }
}
