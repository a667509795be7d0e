//! Federated learning's rules as the database enforces them (migration 0006): the session
//! lifecycle for every role, terms and ledgers that cannot be rewritten, contributions and
//! insights confined by Row Level Security, and the guards of the privileged functions.

use mnemo_core::federated::accounting::epsilon_of;
use mnemo_core::federated::lifecycle::LEGAL_STATUS_CHANGES;
use mnemo_core::SessionStatus;
use mnemo_store::testing::TestDb;
use sqlx::PgPool;
use uuid::Uuid;

use super::{app_tx, db_error, two_tenants};

const RESTRICT_VIOLATION: &str = "23001";
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// A forming session of `initiator`, created by the owner; returns its id.
async fn session(pool: &PgPool, initiator: Uuid, name: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO federated_sessions (session_id, topic, initiator_tenant_id, min_participants)
         VALUES ($1, 'topic', $2, 2) RETURNING id",
    )
    .bind(name)
    .bind(initiator)
    .fetch_one(pool)
    .await
    .expect("session")
}

async fn set_status(pool: &PgPool, id: Uuid, to: SessionStatus) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE federated_sessions SET status = $2::session_status,
                failure_reason = CASE WHEN $2 = 'failed' THEN 'cancelled' END
         WHERE id = $1",
    )
    .bind(id)
    .bind(to.as_str())
    .execute(pool)
    .await
    .map(|_| ())
}

/// Legal changes that bring a new session to `status`.
fn path_to(status: SessionStatus) -> &'static [SessionStatus] {
    use SessionStatus as S;
    match status {
        S::Forming => &[],
        S::Active => &[S::Active],
        S::Aggregating => &[S::Active, S::Aggregating],
        S::Completed => &[S::Active, S::Aggregating, S::Completed],
        S::Failed => &[S::Failed],
    }
}

#[tokio::test]
async fn the_status_changes_the_database_allows_are_the_lifecycles() {
    let db = TestDb::new().await;
    let mut sql: Vec<(String, String)> = sqlx::query_as(
        "SELECT from_status::text, to_status::text FROM mnemo_session_status_changes()",
    )
    .fetch_all(db.store.pool())
    .await
    .expect("status changes");
    let mut core: Vec<(String, String)> = LEGAL_STATUS_CHANGES
        .iter()
        .map(|(a, b)| (a.as_str().to_owned(), b.as_str().to_owned()))
        .collect();
    sql.sort();
    core.sort();
    assert_eq!(sql, core);
}

#[tokio::test]
async fn the_database_refuses_every_illegal_status_change_even_as_the_owner() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    let mut checked = 0;
    for (i, from) in SessionStatus::ALL.iter().enumerate() {
        for (j, to) in SessionStatus::ALL.iter().enumerate() {
            if from == to {
                continue;
            }
            let id = session(pool, a, &format!("s-{i}-{j}")).await;
            for step in path_to(*from) {
                set_status(pool, id, *step).await.expect("legal path");
            }
            let result = set_status(pool, id, *to).await;
            let legal = LEGAL_STATUS_CHANGES.contains(&(*from, *to));
            match (legal, result) {
                (true, Ok(())) => {}
                (false, Err(e)) => {
                    let (code, message) = db_error(&e);
                    assert_eq!(code, RESTRICT_VIOLATION, "{from} → {to}: {message}");
                    assert_eq!(
                        e.as_database_error().and_then(|d| d.constraint()),
                        Some("federated_sessions_status_transition")
                    );
                }
                (legal, result) => panic!("{from} → {to}: legal {legal}, got {result:?}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 20);
    // A session starts forming.
    let err = sqlx::query(
        "INSERT INTO federated_sessions (session_id, topic, initiator_tenant_id, status)
         VALUES ('born-active', 't', $1, 'active')",
    )
    .bind(a)
    .execute(pool)
    .await
    .expect_err("a session born active");
    assert_eq!(db_error(&err).0, RESTRICT_VIOLATION);
}

#[tokio::test]
async fn a_sessions_terms_cannot_change_after_creation() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    let id = session(pool, a, "s").await;
    for change in [
        "privacy_epsilon = 2",
        "privacy_level = 'basic'",
        "aggregation_method = 'hybrid'",
        "min_participants = 5",
        "topic_spec = '{\"tags\": [\"other\"]}'",
        "rule = '{}'::jsonb || '{\"robustness\": null}'",
        "plan_rho = 1, plan_delta = 1e-9",
    ] {
        let err = sqlx::query(&format!(
            "UPDATE federated_sessions SET {change} WHERE id = $1"
        ))
        .bind(id)
        .execute(pool)
        .await
        .expect_err(change);
        assert_eq!(
            err.as_database_error().and_then(|d| d.constraint()),
            Some("federated_sessions_terms"),
            "{change}"
        );
    }
}

#[tokio::test]
async fn a_privacy_ledger_never_shrinks_even_as_the_owner() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    sqlx::query(
        "INSERT INTO federated_participants (tenant_id, rho_spent, delta_spent) VALUES ($1, 0.5, 1e-8)",
    )
    .bind(a)
    .execute(pool)
    .await
    .expect("participant");
    for change in ["rho_spent = 0", "delta_spent = 0", "rho_spent = 0.4999"] {
        let err = sqlx::query(&format!(
            "UPDATE federated_participants SET {change} WHERE tenant_id = $1"
        ))
        .bind(a)
        .execute(pool)
        .await
        .expect_err(change);
        assert_eq!(db_error(&err).0, RESTRICT_VIOLATION, "{change}");
    }
    sqlx::query("UPDATE federated_participants SET rho_spent = 0.6 WHERE tenant_id = $1")
        .bind(a)
        .execute(pool)
        .await
        .expect("growing is fine");
    // The application role cannot touch the sums at all, nor delete the row.
    let mut tx = app_tx(pool, Some(a)).await;
    let err = sqlx::query("UPDATE federated_participants SET rho_spent = 0.7 WHERE tenant_id = $1")
        .bind(a)
        .execute(&mut *tx)
        .await
        .expect_err("mnemo_app writes the ledger");
    assert_eq!(db_error(&err).0, INSUFFICIENT_PRIVILEGE);
    drop(tx);
    let mut tx = app_tx(pool, Some(a)).await;
    let err = sqlx::query("DELETE FROM federated_participants WHERE tenant_id = $1")
        .bind(a)
        .execute(&mut *tx)
        .await
        .expect_err("mnemo_app deletes its ledger");
    assert_eq!(db_error(&err).0, INSUFFICIENT_PRIVILEGE);
}

#[tokio::test]
async fn the_sql_conversion_agrees_with_mnemo_core() {
    let db = TestDb::new().await;
    for (rho, delta) in [
        (0.0, 1e-6),
        (0.013, 8e-9),
        (1.0696, 8e-9),
        (1.353, 1e-6),
        (5.0, 1e-3),
    ] {
        let sql: f64 = sqlx::query_scalar("SELECT mnemo_epsilon_of($1, $2)")
            .bind(rho)
            .bind(delta)
            .fetch_one(db.store.pool())
            .await
            .expect("mnemo_epsilon_of");
        let core = epsilon_of(rho, delta);
        assert!(
            (sql - core).abs() <= 1e-12 * core.max(1.0),
            "ρ {rho} δ {delta}: {sql} vs {core}"
        );
    }
}

/// A's session with A and B as members, each with a contribution.
async fn session_with_members(pool: &PgPool) -> (Uuid, Uuid, Uuid) {
    let (a, b) = two_tenants(pool).await;
    let id = session(pool, a, "s").await;
    for t in [a, b] {
        sqlx::query("INSERT INTO federated_participants (tenant_id) VALUES ($1)")
            .bind(t)
            .execute(pool)
            .await
            .expect("participant");
        sqlx::query("INSERT INTO federated_memberships (tenant_id, session_id) VALUES ($1, $2)")
            .bind(t)
            .bind(id)
            .execute(pool)
            .await
            .expect("membership");
        sqlx::query(
            "INSERT INTO federated_contributions (tenant_id, session_id, centroid, memory_count)
             VALUES ($1, $2, array_fill(0.1::float8, ARRAY[384]), 2)",
        )
        .bind(t)
        .bind(id)
        .execute(pool)
        .await
        .expect("contribution");
    }
    sqlx::query("UPDATE tenants SET isolation_level = 'federated'")
        .execute(pool)
        .await
        .expect("federate");
    (a, b, id)
}

#[tokio::test]
async fn a_contribution_is_readable_by_no_other_member_of_its_session() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b, id) = session_with_members(pool).await;
    for (me, other) in [(a, b), (b, a)] {
        let mut tx = app_tx(pool, Some(me)).await;
        let seen: Vec<Uuid> = sqlx::query_scalar(
            "SELECT tenant_id FROM federated_contributions WHERE session_id = $1",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .expect("read contributions");
        assert_eq!(seen, [me], "{other} leaked");
    }
}

#[tokio::test]
async fn only_the_initiator_of_an_aggregating_session_reads_and_settles_it() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b, id) = session_with_members(pool).await;
    let inputs = |tenant: Uuid| async move {
        let mut tx = app_tx(pool, Some(tenant)).await;
        sqlx::query("SELECT count(*) FROM mnemo_fed_aggregation_inputs($1)")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map(|_| ())
    };
    // Forming: nobody, not even the initiator.
    let err = inputs(a).await.expect_err("forming");
    assert_eq!(db_error(&err).0, INSUFFICIENT_PRIVILEGE);
    for s in [SessionStatus::Active, SessionStatus::Aggregating] {
        set_status(pool, id, s).await.expect("status");
    }
    let err = inputs(b)
        .await
        .expect_err("a member who is not the initiator");
    assert_eq!(db_error(&err).0, INSUFFICIENT_PRIVILEGE);
    let mut tx = app_tx(pool, Some(a)).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM mnemo_fed_aggregation_inputs($1)")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .expect("the initiator reads them");
    assert_eq!(n, 2);
    drop(tx);
    let mut tx = app_tx(pool, Some(b)).await;
    let err = sqlx::query("SELECT mnemo_fed_fail($1, 'cancelled', '{}', '{}')")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect_err("a member fails the initiator's session");
    assert_eq!(db_error(&err).0, INSUFFICIENT_PRIVILEGE);
}

#[tokio::test]
async fn insights_are_readable_by_their_contributors_only_and_written_by_no_tenant() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b, id) = session_with_members(pool).await;
    sqlx::query(
        "INSERT INTO aggregated_insights (session_id, insight_type, content) VALUES ($1, 'x', '{}')",
    )
    .bind(id)
    .execute(pool)
    .await
    .expect("insight");
    sqlx::query("UPDATE federated_memberships SET status = 'contributed' WHERE tenant_id = $1")
        .bind(a)
        .execute(pool)
        .await
        .expect("contributed");
    for (tenant, expected) in [(a, 1i64), (b, 0)] {
        let mut tx = app_tx(pool, Some(tenant)).await;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM aggregated_insights")
            .fetch_one(&mut *tx)
            .await
            .expect("read insights");
        assert_eq!(n, expected);
    }
    let mut tx = app_tx(pool, Some(a)).await;
    let err = sqlx::query(
        "INSERT INTO aggregated_insights (session_id, insight_type, content) VALUES ($1, 'forged', '{}')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .expect_err("a tenant writes an insight");
    assert_eq!(db_error(&err).0, INSUFFICIENT_PRIVILEGE);
}
