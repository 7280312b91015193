//! `PolicyRuleStore` on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use mcr_core::policy::{Rule, RuleDraft};
use mcr_core::ports::{PolicyRuleStore, StoredRules};
use mcr_core::{Error, Result};
use tokio_postgres::Row;

use super::rows::{all, change, now, one, u64_at};
use super::{sql, PostgresMetaStore, StepResult, TxError};

fn rule_of(row: &Row) -> StepResult<Rule> {
    let json: &str = row.try_get(1)?;
    let mut rule: Rule = serde_json::from_str(json).map_err(|e| {
        TxError::Engine(Error::storage(
            "reading a policy rule",
            format!("the database holds an invalid rule: {e}"),
        ))
    })?;
    // The column is the authority: the JSON was written together with it.
    rule.id = row.try_get(0)?;
    Ok(rule)
}

/// Writes a rule's columns and JSON, stamped `updated` (milliseconds);
/// returns the rows changed (0 if there is no rule with its id).
async fn store_rule<C: GenericClient + Sync>(c: &C, rule: &Rule, updated: i64) -> StepResult<u64> {
    let json = serde_json::to_string(rule)
        .map_err(|e| TxError::Engine(Error::storage("encoding a policy rule", e)))?;
    change(
        c,
        sql::UPDATE_RULE,
        &[
            &rule.id,
            &i64::from(rule.priority),
            &rule.enabled,
            &json,
            &updated,
        ],
    )
    .await
}

#[async_trait]
impl PolicyRuleStore for PostgresMetaStore {
    async fn list_rules(&self) -> Result<StoredRules> {
        // One snapshot: the generation is that of these rules.
        self.read("listing policy rules", (), |tx, ()| {
            Box::pin(async move {
                let generation = one(tx, sql::RULE_GENERATION, &[], |r| u64_at(r, 0))
                    .await?
                    .ok_or_else(|| {
                        TxError::Engine(Error::storage(
                            "reading the policy generation",
                            "its row is missing",
                        ))
                    })?;
                Ok(StoredRules {
                    generation,
                    rules: all(tx, sql::LIST_RULES, &[], rule_of).await?,
                })
            })
        })
        .await
    }

    async fn rule_generation(&self) -> Result<u64> {
        self.run("reading the policy generation", (), |c, ()| {
            Box::pin(async move {
                one(c, sql::RULE_GENERATION, &[], |r| u64_at(r, 0))
                    .await?
                    .ok_or_else(|| {
                        TxError::Engine(Error::storage(
                            "reading the policy generation",
                            "its row is missing",
                        ))
                    })
            })
        })
        .await
    }

    async fn get_rule(&self, id: i64) -> Result<Option<Rule>> {
        self.run("reading a policy rule", id, |c, id| {
            Box::pin(async move { one(c, sql::GET_RULE, &[id], rule_of).await })
        })
        .await
    }

    async fn create_rule(&self, draft: &RuleDraft) -> Result<Rule> {
        self.write("creating a policy rule", draft.clone(), |tx, draft| {
            Box::pin(async move {
                // An identity column: ids only grow, never reused after a
                // delete, so an audit entry's rule id names one rule
                // forever. One clock reading: a new rule was last updated
                // when it was created.
                let at = now();
                let id: i64 = one(
                    tx,
                    sql::INSERT_RULE,
                    &[&i64::from(draft.priority), &draft.enabled, &at],
                    |r| Ok(r.try_get(0)?),
                )
                .await?
                .ok_or_else(|| {
                    TxError::Engine(Error::storage("creating a policy rule", "no id came back"))
                })?;
                let rule = draft.clone().into_rule(id);
                store_rule(tx, &rule, at).await?;
                change(tx, sql::NEXT_RULE_GENERATION, &[]).await?;
                Ok(rule)
            })
        })
        .await
    }

    async fn update_rule(&self, current: &Rule, updated: &Rule) -> Result<()> {
        let data = (current.clone(), updated.clone());
        self.write("updating a policy rule", data, |tx, (current, updated)| {
            Box::pin(async move {
                match one(tx, sql::LOCK_RULE, &[&current.id], rule_of).await? {
                    None => return Err(Error::not_found("policy rule", current.id).into()),
                    Some(stored) if stored != *current => {
                        return Err(Error::Conflict(format!(
                            "policy rule {} changed since it was read; read it again",
                            current.id
                        ))
                        .into())
                    }
                    Some(_) => {}
                }
                store_rule(tx, updated, now()).await?;
                change(tx, sql::NEXT_RULE_GENERATION, &[]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_rule(&self, id: i64) -> Result<bool> {
        self.write("deleting a policy rule", id, |tx, id| {
            Box::pin(async move {
                let deleted = change(tx, sql::DELETE_RULE, &[id]).await? > 0;
                if deleted {
                    change(tx, sql::NEXT_RULE_GENERATION, &[]).await?;
                }
                Ok(deleted)
            })
        })
        .await
    }
}
