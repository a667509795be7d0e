//! Scale-out on Citus: [`distribute`] turns a migrated schema on a Citus coordinator into the
//! distributed layout ([`LAYOUT`]), idempotently, and [`placements`] reads back what Citus holds.
//!
//! What Citus needs, and why the steps are in this order (all measured on Citus 14.0.1):
//! - Foreign keys first come off (and go back at the end): `create_reference_table('tenants')`
//!   would otherwise pull every table that references `tenants` into a Citus *local* table, and
//!   local tables cannot have the Row Level Security policies Mnemo relies on. The dropped keys are
//!   kept in `mnemo_citus_saved_fks` until they are back, so an interrupted run resumes.
//! - Triggers: Citus refuses to distribute a table with triggers unless
//!   `citus.enable_unsafe_triggers` is on. Mnemo's triggers only act on the row being written
//!   (`mnemo_touch_updated_at`) or read reference tables, which every node has.
//! - Row Level Security works on distributed tables when `SET LOCAL` commands reach the workers
//!   (`citus.propagate_set_commands = 'local'`) and the application role `mnemo_app` may log in
//!   there (Citus opens worker connections as the current role): both are set here, on the
//!   database and the role, so no server configuration is left to luck.
//! - Policies on reference tables may not contain subqueries; Mnemo's call functions instead.

use std::fmt;

use sqlx::{PgPool, Row};

use crate::StoreError;

/// Where a table lives on a Citus cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Copied to every node: control-plane tables, small and read before the tenant is known.
    Reference,
    /// Hash-distributed by `tenant_id`, co-located with `contextual_memories`: a tenant's rows of
    /// every such table sit in the same shard group, so each tenant statement routes to one node.
    Distributed,
    /// Left on the coordinator.
    Local,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Placement::Reference => "reference",
            Placement::Distributed => "distributed",
            Placement::Local => "local",
        })
    }
}

/// The table that every distributed table is co-located with (it goes first).
pub const COLOCATION_ANCHOR: &str = "contextual_memories";

/// Every table of the schema and its placement, in the order [`distribute`] creates them:
/// reference tables parents first, then the anchor of the co-location group, then the other
/// distributed tables. A migration that adds a table must add it here (the schema tests and
/// [`distribute`] refuse a table with no placement).
pub const LAYOUT: &[(&str, Placement)] = &[
    ("projects", Placement::Reference),
    ("tenants", Placement::Reference),
    ("api_keys", Placement::Reference),
    ("mnemo_settings", Placement::Reference),
    ("federated_sessions", Placement::Reference),
    ("aggregated_insights", Placement::Reference),
    (COLOCATION_ANCHOR, Placement::Distributed),
    ("contextual_memories_archive", Placement::Distributed),
    ("memory_relationships", Placement::Distributed),
    ("memory_relationships_archive", Placement::Distributed),
    ("offloaded_contexts", Placement::Distributed),
    ("context_chunks", Placement::Distributed),
    ("tenant_access_policies", Placement::Distributed),
    ("tenant_sharing_rules", Placement::Distributed),
    ("data_retention_policies", Placement::Distributed),
    ("federated_participants", Placement::Distributed),
    ("federated_memberships", Placement::Distributed),
    ("federated_contributions", Placement::Distributed),
    ("federated_privacy_ledger", Placement::Distributed),
    ("audit_log", Placement::Distributed),
    ("audit_log_archive", Placement::Distributed),
    ("tenant_usage", Placement::Distributed),
    ("tenant_daily_activity", Placement::Distributed),
    // System-wide metrics have a NULL tenant_id, which cannot be a distribution column; they
    // are written and read on the coordinator.
    ("performance_metrics", Placement::Local),
    ("_sqlx_migrations", Placement::Local),
];

/// The placement [`LAYOUT`] gives a table.
pub fn placement_of(table: &str) -> Option<Placement> {
    LAYOUT.iter().find(|(t, _)| *t == table).map(|(_, p)| *p)
}

#[derive(Debug, thiserror::Error)]
pub enum DistributeError {
    #[error("the citus extension is not installed in this database: `mnemo admin distribute` runs on a Citus coordinator (see docs/scaling.md)")]
    NotCitus,
    #[error("this node is not the Citus coordinator: run `mnemo admin distribute` against the coordinator")]
    NotCoordinator,
    #[error("the Citus cluster has no worker nodes: add them with citus_add_node() first")]
    NoWorkers,
    #[error("tables with no placement in the Citus layout (add them to mnemo_store::citus::LAYOUT): {}", .0.join(", "))]
    Unplaced(Vec<String>),
    #[error("the distributed layout does not match after distributing: {}", .0.join("; "))]
    Mismatch(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for DistributeError {
    fn from(e: sqlx::Error) -> Self {
        DistributeError::Store(e.into())
    }
}

/// One table as Citus holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TablePlacement {
    pub table: String,
    pub placement: String,
    /// Shards of the table (1 for a reference table, 0 for a local one).
    pub shards: i64,
    /// Citus' co-location group (0 for a local table).
    pub colocation_id: i32,
}

/// What [`distribute`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DistributeReport {
    pub citus_version: String,
    pub workers: i64,
    /// Tables this run turned into reference or distributed tables (empty on a re-run).
    pub created: Vec<String>,
    /// Foreign keys dropped and put back.
    pub foreign_keys: usize,
    pub tables: Vec<TablePlacement>,
}

/// The installed Citus version, or `None` when the database has no citus extension.
pub async fn citus_version(pool: &PgPool) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'citus'")
            .fetch_optional(pool)
            .await?,
    )
}

/// The tables of the schema (not partitions: a partition follows its parent).
async fn schema_tables(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
           AND NOT c.relispartition AND c.relname <> 'mnemo_citus_saved_fks'
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?)
}

/// Turns the migrated schema into [`LAYOUT`] on a Citus coordinator with at least one worker.
/// Safe to run again (it skips what is done) and to resume after an interruption.
pub async fn distribute(pool: &PgPool) -> Result<DistributeReport, DistributeError> {
    let citus_version = citus_version(pool)
        .await?
        .ok_or(DistributeError::NotCitus)?;
    let coordinator: bool = sqlx::query_scalar("SELECT citus_is_coordinator()")
        .fetch_one(pool)
        .await?;
    if !coordinator {
        return Err(DistributeError::NotCoordinator);
    }
    let workers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND shouldhaveshards AND groupid <> 0",
    )
    .fetch_one(pool)
    .await?;
    if workers == 0 {
        return Err(DistributeError::NoWorkers);
    }
    let unplaced: Vec<String> = schema_tables(pool)
        .await?
        .into_iter()
        .filter(|t| placement_of(t).is_none())
        .collect();
    if !unplaced.is_empty() {
        return Err(DistributeError::Unplaced(unplaced));
    }

    // The settings every later session needs: on the database (new connections pick them up)
    // and the role (propagated to the workers by Citus).
    sqlx::query(
        "DO $$ BEGIN
             EXECUTE format('ALTER DATABASE %I SET citus.propagate_set_commands = %L', current_database(), 'local');
             EXECUTE format('ALTER DATABASE %I SET citus.enable_unsafe_triggers = on', current_database());
         END $$",
    )
    .execute(pool)
    .await?;
    sqlx::query("ALTER ROLE mnemo_app LOGIN")
        .execute(pool)
        .await?;

    // One connection for the rest: the session settings below apply to it.
    let mut conn = pool.acquire().await?;
    sqlx::query("SET citus.enable_unsafe_triggers = on")
        .execute(&mut *conn)
        .await?;

    let mut created = Vec::new();
    let pending: Vec<(&str, Placement)> = {
        let done: Vec<String> =
            sqlx::query_scalar("SELECT logicalrelid::regclass::text FROM pg_dist_partition")
                .fetch_all(&mut *conn)
                .await?;
        LAYOUT
            .iter()
            .copied()
            .filter(|(t, p)| *p != Placement::Local && !done.iter().any(|d| d == t))
            .collect()
    };

    // Keep the foreign keys between the tables still to be placed (and those pointing at them),
    // then drop them; they come back below, also on a resumed run.
    if !pending.is_empty() {
        let names: Vec<&str> = pending.iter().map(|(t, _)| *t).collect();
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS mnemo_citus_saved_fks (
                 tbl text NOT NULL, name text NOT NULL, def text NOT NULL, PRIMARY KEY (tbl, name))",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO mnemo_citus_saved_fks (tbl, name, def)
             SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
             FROM pg_constraint c
             WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
               AND (c.conrelid::regclass::text = ANY($1) OR c.confrelid::regclass::text = ANY($1))
               AND c.conparentid = 0
             ON CONFLICT DO NOTHING",
        )
        .bind(&names)
        .execute(&mut *tx)
        .await?;
        let saved: Vec<(String, String)> =
            sqlx::query_as("SELECT tbl, name FROM mnemo_citus_saved_fks")
                .fetch_all(&mut *tx)
                .await?;
        for (tbl, name) in &saved {
            sqlx::query(&format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                quote_ident(tbl),
                quote_ident(name)
            ))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }

    for (table, placement) in &pending {
        match placement {
            Placement::Reference => {
                sqlx::query("SELECT create_reference_table($1::regclass)")
                    .bind(*table)
                    .execute(&mut *conn)
                    .await?;
            }
            Placement::Distributed if *table == COLOCATION_ANCHOR => {
                sqlx::query(
                    "SELECT create_distributed_table($1::regclass, 'tenant_id', colocate_with => 'none')",
                )
                .bind(*table)
                .execute(&mut *conn)
                .await?;
            }
            Placement::Distributed => {
                sqlx::query(
                    "SELECT create_distributed_table($1::regclass, 'tenant_id', colocate_with => $2)",
                )
                .bind(*table)
                .bind(COLOCATION_ANCHOR)
                .execute(&mut *conn)
                .await?;
            }
            Placement::Local => {}
        }
        // Rows copied from the local table stay on the coordinator's disk, invisible; free them.
        sqlx::query("SELECT truncate_local_data_after_distributing_table($1::regclass)")
            .bind(*table)
            .execute(&mut *conn)
            .await?;
        created.push((*table).to_owned());
    }

    let has_saved: bool =
        sqlx::query_scalar("SELECT to_regclass('mnemo_citus_saved_fks') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    let mut foreign_keys = 0;
    if has_saved {
        let saved: Vec<(String, String, String)> =
            sqlx::query_as("SELECT tbl, name, def FROM mnemo_citus_saved_fks ORDER BY tbl, name")
                .fetch_all(&mut *conn)
                .await?;
        for (tbl, name, def) in &saved {
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2)",
            )
            .bind(tbl)
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
            if !exists {
                sqlx::query(&format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {}",
                    quote_ident(tbl),
                    quote_ident(name),
                    def
                ))
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query("DELETE FROM mnemo_citus_saved_fks WHERE tbl = $1 AND name = $2")
                .bind(tbl)
                .bind(name)
                .execute(&mut *conn)
                .await?;
        }
        foreign_keys = saved.len();
        sqlx::query("DROP TABLE mnemo_citus_saved_fks")
            .execute(&mut *conn)
            .await?;
    }
    drop(conn);

    let tables = placements(pool).await?;
    let mismatches = check_layout(&tables);
    if !mismatches.is_empty() {
        return Err(DistributeError::Mismatch(mismatches));
    }
    Ok(DistributeReport {
        citus_version,
        workers,
        created,
        foreign_keys,
        tables,
    })
}

/// Every table of [`LAYOUT`] as Citus' metadata (`pg_dist_partition`, `pg_dist_shard`) has it.
pub async fn placements(pool: &PgPool) -> Result<Vec<TablePlacement>, StoreError> {
    let names: Vec<&str> = LAYOUT.iter().map(|(t, _)| *t).collect();
    let rows = sqlx::query(
        "SELECT t.name,
                CASE p.partmethod WHEN 'h' THEN 'distributed'
                                  WHEN 'n' THEN CASE WHEN p.repmodel = 't' THEN 'reference' ELSE 'citus local' END
                                  ELSE 'local' END AS placement,
                (SELECT count(*) FROM pg_dist_shard s WHERE s.logicalrelid = p.logicalrelid) AS shards,
                coalesce(p.colocationid, 0) AS colocation_id
         FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord)
         LEFT JOIN pg_dist_partition p ON p.logicalrelid = to_regclass(t.name)
         ORDER BY t.ord",
    )
    .bind(&names)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TablePlacement {
            table: r.get("name"),
            placement: r.get("placement"),
            shards: r.get("shards"),
            colocation_id: r.get("colocation_id"),
        })
        .collect())
}

/// Differences between what Citus holds and [`LAYOUT`]; empty when they agree.
pub fn check_layout(tables: &[TablePlacement]) -> Vec<String> {
    let anchor_group = tables
        .iter()
        .find(|t| t.table == COLOCATION_ANCHOR)
        .map(|t| t.colocation_id);
    let mut out = Vec::new();
    for t in tables {
        let Some(want) = placement_of(&t.table) else {
            continue;
        };
        if t.placement != want.to_string() {
            out.push(format!("{} is {}, expected {want}", t.table, t.placement));
        } else if want == Placement::Distributed && Some(t.colocation_id) != anchor_group {
            out.push(format!(
                "{} is not co-located with {COLOCATION_ANCHOR}",
                t.table
            ));
        }
    }
    out
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_anchor_is_the_first_distributed_table() {
        let first = LAYOUT
            .iter()
            .find(|(_, p)| *p == Placement::Distributed)
            .map(|(t, _)| *t);
        assert_eq!(first, Some(COLOCATION_ANCHOR));
    }

    #[test]
    fn no_table_is_placed_twice() {
        for (i, (t, _)) in LAYOUT.iter().enumerate() {
            assert!(LAYOUT[i + 1..].iter().all(|(u, _)| u != t), "{t} twice");
        }
    }

    #[test]
    fn a_distributed_table_outside_the_anchor_group_is_a_mismatch() {
        let t = |table: &str, placement: &str, colocation_id| TablePlacement {
            table: table.into(),
            placement: placement.into(),
            shards: 32,
            colocation_id,
        };
        let tables = [
            t(COLOCATION_ANCHOR, "distributed", 2),
            t("memory_relationships", "distributed", 3),
            t("tenants", "reference", 1),
            t("performance_metrics", "local", 0),
        ];
        assert_eq!(
            check_layout(&tables),
            vec!["memory_relationships is not co-located with contextual_memories".to_owned()]
        );
    }
}
