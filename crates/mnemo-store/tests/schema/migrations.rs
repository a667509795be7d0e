//! Migrations applied to a database that has them are a no-op.

use mnemo_store::testing::{server_url, TestDb};
use mnemo_store::MIGRATOR;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// What the schema consists of, by name: any object created, dropped, renamed or re-granted shows.
/// Partitions are counted, not named: their names depend on the month the migrations ran in.
const FINGERPRINT: &str = r#"
WITH partitions AS (SELECT oid, reltype FROM pg_class WHERE relispartition),
objects(kind, item) AS (
    SELECT 'class', relname || ':' || relkind::text || ':' || coalesce(relacl::text, '')
    FROM pg_class WHERE relnamespace = 'public'::regnamespace AND NOT relispartition
    UNION ALL
    SELECT 'constraint', conrelid::regclass || '.' || conname || ':' || pg_get_constraintdef(oid)
    FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace AND conrelid NOT IN (SELECT oid FROM partitions)
    UNION ALL
    SELECT 'policy', polrelid::regclass || '.' || polname FROM pg_policy
    UNION ALL
    SELECT 'function', oid::regprocedure || '=' || coalesce(proacl::text, '')
    FROM pg_proc WHERE pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'trigger', tgrelid::regclass || '.' || tgname FROM pg_trigger
    WHERE NOT tgisinternal AND tgparentid = 0
    UNION ALL
    SELECT 'type', typname FROM pg_type
    WHERE typnamespace = 'public'::regnamespace
      AND typrelid NOT IN (SELECT oid FROM partitions) AND typelem NOT IN (SELECT reltype FROM partitions)
    UNION ALL
    SELECT 'partitions', count(*)::text FROM pg_inherits
)
SELECT md5(string_agg(kind || ' ' || item, E'\n' ORDER BY kind, item)) FROM objects"#;

/// (version, checksum, installed_on) of every applied migration.
const APPLIED: &str =
    "SELECT version, checksum, installed_on::text FROM _sqlx_migrations ORDER BY version";

#[tokio::test]
async fn migrations_applied_twice_are_a_no_op() {
    // A database created empty, not cloned from the migrated template, so the first run applies
    // every migration from scratch on a cluster where the role `mnemo_app` already exists.
    let db = TestDb::new().await;
    let server: PgConnectOptions = server_url().parse().expect("DATABASE_URL");
    let mut admin = PgConnection::connect_with(&server.clone().database(&db.name))
        .await
        .expect("connect");
    let name = format!("mnemo_t_{}_fresh", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create database");
    let mut conn = PgConnection::connect_with(&server.database(&name))
        .await
        .expect("connect fresh database");

    MIGRATOR.run(&mut conn).await.expect("first run");
    let applied_once: Vec<(i64, Vec<u8>, String)> = sqlx::query_as(APPLIED)
        .fetch_all(&mut conn)
        .await
        .expect("_sqlx_migrations");
    assert_eq!(applied_once.len(), MIGRATOR.iter().count());
    let fingerprint_once: String = sqlx::query_scalar(FINGERPRINT)
        .fetch_one(&mut conn)
        .await
        .expect("fingerprint");

    MIGRATOR.run(&mut conn).await.expect("second run");
    let applied_twice: Vec<(i64, Vec<u8>, String)> = sqlx::query_as(APPLIED)
        .fetch_all(&mut conn)
        .await
        .expect("_sqlx_migrations");
    let fingerprint_twice: String = sqlx::query_scalar(FINGERPRINT)
        .fetch_one(&mut conn)
        .await
        .expect("fingerprint");
    assert_eq!(
        applied_twice, applied_once,
        "the second run applied something"
    );
    assert_eq!(fingerprint_twice, fingerprint_once);

    // The fresh database matches the template every other test uses.
    let template_fingerprint: String = sqlx::query_scalar(FINGERPRINT)
        .fetch_one(db.store.pool())
        .await
        .expect("fingerprint");
    assert_eq!(template_fingerprint, fingerprint_once);

    // Left for scripts/test.sh to drop with the other mnemo_t_* databases: DROP DATABASE forces a
    // checkpoint, which can take seconds on a busy server.
    conn.close().await.expect("close");
}

#[tokio::test]
async fn store_migrate_on_a_migrated_database_changes_nothing() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let before: String = sqlx::query_scalar(FINGERPRINT)
        .fetch_one(pool)
        .await
        .expect("fingerprint");
    let applied: Vec<(i64, Vec<u8>, String)> = sqlx::query_as(APPLIED)
        .fetch_all(pool)
        .await
        .expect("_sqlx_migrations");
    db.store.migrate().await.expect("migrate");
    db.store.migrate().await.expect("migrate again");
    let after: String = sqlx::query_scalar(FINGERPRINT)
        .fetch_one(pool)
        .await
        .expect("fingerprint");
    let reapplied: Vec<(i64, Vec<u8>, String)> = sqlx::query_as(APPLIED)
        .fetch_all(pool)
        .await
        .expect("_sqlx_migrations");
    assert_eq!((after, reapplied), (before, applied));
}
