//! `PolicyRuleStore` on SQLite.

use async_trait::async_trait;
use mcr_core::policy::{Rule, RuleDraft};
use mcr_core::ports::{PolicyRuleStore, StoredRules};
use mcr_core::{Error, Result};
use rusqlite::types::Type;
use rusqlite::{params, Connection, Row};

use super::rows::{all, change, now, one};
use super::{sql, storage, SqliteMetaStore};

fn rule_of(row: &Row<'_>) -> rusqlite::Result<Rule> {
    let json: &str = row.get_ref(1)?.as_str()?;
    let mut rule: Rule = serde_json::from_str(json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e)))?;
    // The column is the authority: the JSON was written before or
    // together with it.
    rule.id = row.get(0)?;
    Ok(rule)
}

/// Writes a rule's columns and JSON, stamped `updated` (milliseconds);
/// returns the rows changed (0 if there is no rule with its id).
fn store_rule(conn: &Connection, rule: &Rule, updated: i64) -> Result<usize> {
    let json = serde_json::to_string(rule).map_err(|e| storage("encoding a policy rule", e))?;
    change(
        conn,
        sql::UPDATE_RULE,
        params![rule.id, rule.priority, rule.enabled, json, updated],
    )
}

/// Advances the rule set's generation, inside the change's transaction.
fn next_generation(conn: &Connection) -> Result<()> {
    change(conn, sql::NEXT_RULE_GENERATION, [])?;
    Ok(())
}

#[async_trait]
impl PolicyRuleStore for SqliteMetaStore {
    async fn list_rules(&self) -> Result<StoredRules> {
        // One read transaction: the generation is that of these rules.
        self.read("listing policy rules", |tx| {
            let generation: i64 = one(tx, sql::RULE_GENERATION, [], |r| r.get(0))?
                .ok_or_else(|| storage("reading the policy generation", "its row is missing"))?;
            Ok(StoredRules {
                generation: u64::try_from(generation)
                    .map_err(|e| storage("reading the policy generation", e))?,
                rules: all(tx, sql::LIST_RULES, [], rule_of)?,
            })
        })
        .await
    }

    async fn rule_generation(&self) -> Result<u64> {
        self.run("reading the policy generation", |c| {
            let generation: i64 = one(c, sql::RULE_GENERATION, [], |r| r.get(0))?
                .ok_or_else(|| storage("reading the policy generation", "its row is missing"))?;
            u64::try_from(generation).map_err(|e| storage("reading the policy generation", e))
        })
        .await
    }

    async fn get_rule(&self, id: i64) -> Result<Option<Rule>> {
        self.run("reading a policy rule", move |c| {
            one(c, sql::GET_RULE, [id], rule_of)
        })
        .await
    }

    async fn create_rule(&self, draft: &RuleDraft) -> Result<Rule> {
        let draft = draft.clone();
        self.write("creating a policy rule", move |tx| {
            // AUTOINCREMENT: ids only grow, never reused after a delete,
            // so an audit entry's rule id names one rule forever. One clock
            // reading: a new rule was last updated when it was created.
            let at = now();
            change(
                tx,
                sql::INSERT_RULE,
                params![draft.priority, draft.enabled, at],
            )?;
            let rule = draft.into_rule(tx.last_insert_rowid());
            store_rule(tx, &rule, at)?;
            next_generation(tx)?;
            Ok(rule)
        })
        .await
    }

    async fn update_rule(&self, current: &Rule, updated: &Rule) -> Result<()> {
        let (current, updated) = (current.clone(), updated.clone());
        self.write("updating a policy rule", move |tx| {
            match one(tx, sql::GET_RULE, [current.id], rule_of)? {
                None => return Err(Error::not_found("policy rule", current.id)),
                Some(stored) if stored != current => {
                    return Err(Error::Conflict(format!(
                        "policy rule {} changed since it was read; read it again",
                        current.id
                    )))
                }
                Some(_) => {}
            }
            store_rule(tx, &updated, now())?;
            next_generation(tx)
        })
        .await
    }

    async fn delete_rule(&self, id: i64) -> Result<bool> {
        self.write("deleting a policy rule", move |tx| {
            let deleted = change(tx, sql::DELETE_RULE, [id])? > 0;
            if deleted {
                next_generation(tx)?;
            }
            Ok(deleted)
        })
        .await
    }
}
