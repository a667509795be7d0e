//! `mnemo admin backup` and `mnemo admin restore`, run as the real binary against databases of
//! the test server (`DATABASE_URL`), with PostgreSQL's client programs from `MNEMO_PG_BIN` or
//! `PATH` (`make test` exports `MNEMO_PG_BIN`).
//!
//! The data is written through the real API: memories with embeddings, relationships, keys (one
//! revoked), an access policy, the audit rows all of that leaves, the stored admin key, and a
//! tenant large enough for its own HNSW index.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use mnemo_server::{AdminKey, AppState, Limits};
use mnemo_store::testing::{server_url, TestDb};
use mnemo_store::Store;

const ADMIN: &str = "backup-test-admin-key-0123456789";

fn url_of(database: &str) -> String {
    let opts: PgConnectOptions = server_url().parse().expect("DATABASE_URL");
    opts.database(database).to_url_lossy().to_string()
}

async fn server_conn() -> PgConnection {
    PgConnection::connect(&url_of("postgres"))
        .await
        .expect("connect to the test server")
}

async fn create_database(name: &str) {
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut server_conn().await)
        .await
        .expect("create database");
}

async fn drop_database(name: &str) {
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut server_conn().await)
        .await
        .expect("drop database");
}

/// A temporary folder holding one file, deleted with it.
struct Scratch {
    dir: PathBuf,
    file: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mnemo-backup-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        Scratch {
            file: dir.join(name),
            dir,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `mnemo admin ARGS` with `DATABASE_URL` = `url`; returns (success, stdout + stderr).
async fn mnemo_admin(url: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .arg("admin")
        .args(args)
        .env("DATABASE_URL", url)
        .env("MNEMO_LOG", "warn")
        .output()
        .await
        .expect("run mnemo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn backup(url: &str, file: &Path) {
    let (ok, out) = mnemo_admin(url, &["backup", &file.display().to_string()]).await;
    assert!(ok, "backup failed:\n{out}");
    assert!(file.is_file(), "no backup file:\n{out}");
}

/// The real app on a random port.
struct Server {
    base: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start(store: Store, limits: Limits) -> Server {
        store
            .refresh_vector_index_cache()
            .await
            .expect("index cache");
        let state = AppState::new(store, None, limits, AdminKey::Stored);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(mnemo_server::serve(
            listener,
            mnemo_server::app(state),
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        Server {
            base,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }

    async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(method, path, key, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {body}"
        );
        body
    }
}

fn vector(seed: usize) -> Vec<f32> {
    (0..384)
        .map(|i| (((i + 1) * (seed + 7)) % 97) as f32 / 97.0 + 0.01)
        .collect()
}

/// Everything a restore must bring back, read as the owner: every row of every table and
/// materialized view (as a checksum per relation), index definitions, policies, Row Level
/// Security flags and the grants of `mnemo_app`.
/// Table, name, roles, USING and WITH CHECK of a policy.
type Policy = (String, String, String, Option<String>, Option<String>);

#[derive(Debug, PartialEq)]
struct Snapshot {
    rows: BTreeMap<String, (i64, String)>,
    indexes: Vec<(String, String)>,
    policies: Vec<Policy>,
    rls: Vec<(String, bool, bool)>,
    grants: Vec<(String, String)>,
}

/// Equal snapshots, or a panic naming what differs.
#[track_caller]
fn assert_same(before: &Snapshot, after: &Snapshot) {
    fn diff<T: std::fmt::Debug + PartialEq>(what: &str, a: &[T], b: &[T]) -> Vec<String> {
        let mut out = Vec::new();
        for x in a.iter().filter(|x| !b.contains(x)) {
            out.push(format!("{what} only before: {x:?}"));
        }
        for x in b.iter().filter(|x| !a.contains(x)) {
            out.push(format!("{what} only after: {x:?}"));
        }
        out
    }
    let rows = |s: &Snapshot| {
        s.rows
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let mut problems = diff("rows", &rows(before), &rows(after));
    problems.extend(diff("index", &before.indexes, &after.indexes));
    problems.extend(diff("policy", &before.policies, &after.policies));
    problems.extend(diff("rls", &before.rls, &after.rls));
    problems.extend(diff("grant", &before.grants, &after.grants));
    assert!(
        problems.is_empty(),
        "the restore differs:\n{}",
        problems.join("\n")
    );
}

async fn snapshot(url: &str) -> Snapshot {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    // Each relation's rows as text; the computed floats of materialized views rounded to 9
    // digits (an average summed in another row order differs in its last bit).
    let relations: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text,
                'ROW(' || string_agg(
                    CASE WHEN c.relkind = 'm' AND a.atttypid IN ('float4'::regtype, 'float8'::regtype)
                         THEN format('round(t.%I::numeric, 9)', a.attname)
                         ELSE format('t.%I', a.attname) END, ', ' ORDER BY a.attnum) || ')::text'
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'm')
         GROUP BY c.relname ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("relations");
    let mut rows = BTreeMap::new();
    for (r, row) in relations {
        let sum: (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), md5(coalesce(string_agg({row}, E'\\n' ORDER BY {row}), ''))
             FROM public.\"{r}\" t"
        ))
        .fetch_one(&mut conn)
        .await
        .expect("checksum");
        rows.insert(r, sum);
    }
    Snapshot {
        rows,
        indexes: sqlx::query_as(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .expect("indexes"),
        policies: sqlx::query_as(
            "SELECT tablename::text, policyname::text, roles::text, qual, with_check
             FROM pg_policies WHERE schemaname = 'public' ORDER BY 1, 2",
        )
        .fetch_all(&mut conn)
        .await
        .expect("policies"),
        rls: sqlx::query_as(
            "SELECT relname::text, relrowsecurity, relforcerowsecurity FROM pg_class
             WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .expect("rls"),
        grants: sqlx::query_as(
            "SELECT table_name::text, privilege_type::text FROM information_schema.role_table_grants
             WHERE grantee = 'mnemo_app' ORDER BY 1, 2",
        )
        .fetch_all(&mut conn)
        .await
        .expect("grants"),
    }
}

/// The answers a restored server must give again, byte for byte.
struct Probe {
    big_key: String,
    small_key: String,
    revoked_key: String,
    answers: Vec<(String, Value)>,
}

const BIG: usize = 40;

/// Fills the database behind `server` through the API; returns the keys and the answers of
/// searches, a graph walk and listings.
async fn fill(server: &Server) -> Probe {
    let project = server
        .ok(
            "POST",
            "/v1/admin/projects",
            ADMIN,
            Some(json!({"name": "backup", "owner_id": "ops"})),
        )
        .await;
    let mut keys = Vec::new();
    for tenant in ["big", "small"] {
        server
            .ok(
                "POST",
                "/v1/admin/tenants",
                ADMIN,
                Some(json!({"tenant_id": tenant, "project_id": project["id"], "name": tenant})),
            )
            .await;
        let key = server
            .ok(
                "POST",
                &format!("/v1/admin/tenants/{tenant}/keys"),
                ADMIN,
                Some(json!({"name": "agent", "scopes": ["*"]})),
            )
            .await;
        keys.push(key["secret"].as_str().expect("secret").to_owned());
    }
    let (big_key, small_key) = (keys[0].clone(), keys[1].clone());
    let revoked = server
        .ok(
            "POST",
            "/v1/admin/tenants/big/keys",
            ADMIN,
            Some(json!({"name": "old", "scopes": ["memories:read"]})),
        )
        .await;
    server
        .ok(
            "DELETE",
            &format!(
                "/v1/admin/tenants/big/keys/{}",
                revoked["id"].as_str().expect("id")
            ),
            ADMIN,
            None,
        )
        .await;

    let words = ["alpha", "bravo", "charlie", "delta", "echo"];
    let memories: Vec<Value> = (0..BIG)
        .map(|i| {
            json!({
                "memory_id": format!("m{i}"),
                "content": { "text": format!("{} note number {i}", words[i % words.len()]) },
                "tags": [words[i % words.len()]],
                "relevance_score": (i % 10) as f64 / 10.0,
                "embedding": vector(i),
            })
        })
        .collect();
    server
        .ok(
            "POST",
            "/v1/memories/batch",
            &big_key,
            Some(json!({ "memories": memories })),
        )
        .await;
    for i in 0..5 {
        server
            .ok(
                "POST",
                "/v1/memories",
                &small_key,
                Some(
                    json!({"memory_id": format!("s{i}"), "content": format!("small {i}"),
                            "embedding": vector(100 + i)}),
                ),
            )
            .await;
    }
    for (s, t, kind) in [
        ("m0", "m1", "supports"),
        ("m1", "m2", "follows"),
        ("m2", "m0", "cites"),
    ] {
        server
            .ok(
                "POST",
                "/v1/relationships",
                &big_key,
                Some(json!({"source": s, "target": t, "relationship_type": kind, "weight": 0.5})),
            )
            .await;
    }
    server
        .ok(
            "POST",
            "/v1/policies",
            &small_key,
            Some(json!({"name": "everything", "resource_type": "memories",
                        "resource_pattern": "*", "permissions": ["read", "write", "delete"]})),
        )
        .await;
    // The big tenant crosses the threshold of this test and gets its own HNSW index.
    let report = server
        .ok("POST", "/v1/admin/maintenance", ADMIN, Some(json!({})))
        .await;
    assert_eq!(report["vector_indexes"]["indexed_tenants"], 1, "{report}");

    let mut answers = Vec::new();
    for (key, path, body) in [
        (
            &big_key,
            "/v1/memories/search",
            json!({"vector": vector(3), "k": 10}),
        ),
        (
            &big_key,
            "/v1/memories/search",
            json!({"query": "charlie note", "mode": "text", "k": 10}),
        ),
        (
            &big_key,
            "/v1/memories/search",
            json!({"query": "delta", "vector": vector(7), "mode": "hybrid", "k": 10, "expand": true}),
        ),
        (
            &small_key,
            "/v1/memories/search",
            json!({"vector": vector(101), "k": 3}),
        ),
    ] {
        let v = server.ok("POST", path, key, Some(body.clone())).await;
        answers.push((format!("{path} {body}"), v));
    }
    for (key, path) in [
        (&big_key, "/v1/memories/m0/graph?depth=3"),
        (&big_key, "/v1/memories?limit=100"),
        (&small_key, "/v1/policies"),
        (&big_key, "/v1/usage"),
    ] {
        answers.push((path.to_owned(), server.ok("GET", path, key, None).await));
    }
    Probe {
        big_key,
        small_key,
        revoked_key: revoked["secret"].as_str().expect("secret").to_owned(),
        answers,
    }
}

/// `v` with every number rounded to 9 decimals: an average over rows read in another order
/// (another plan after the restore's ANALYZE) differs in its last bit.
fn rounded(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            json!((n.as_f64().unwrap_or_default() * 1e9).round() / 1e9)
        }
        Value::Array(a) => Value::Array(a.iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), rounded(v))).collect()),
        other => other.clone(),
    }
}

fn test_limits() -> Limits {
    Limits {
        vector_index_min_rows: BIG as i64 - 10,
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_restored_database_has_every_row_key_and_index_and_answers_searches_alike() {
    let source = TestDb::new().await;
    source.store.init_admin_key(ADMIN).await.expect("admin key");
    let server = Server::start(source.store.clone(), test_limits()).await;
    let probe = fill(&server).await;
    drop(server);
    // Bring the analytics views up to date, so the refresh a restore does finds the same rows.
    source
        .store
        .refresh_analytics_views()
        .await
        .expect("refresh");
    // Let the off-path `last_used_at` updates of the keys land.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let scratch = Scratch::new("mnemo.dump");
    let file = &scratch.file;
    backup(&source.url, file).await;
    let before = snapshot(&source.url).await;
    source.store.close().await;
    drop_database(&source.name).await;

    let restored = format!("{}_restored", source.name);
    create_database(&restored).await;
    let started = std::time::Instant::now();
    let (ok, out) = mnemo_admin(
        &url_of(&restored),
        &["restore", &file.display().to_string()],
    )
    .await;
    assert!(ok, "restore failed:\n{out}");
    eprintln!(
        "backup of {} bytes restored in {:.1} s",
        std::fs::metadata(file).map_or(0, |m| m.len()),
        started.elapsed().as_secs_f64()
    );
    let after = snapshot(&url_of(&restored)).await;
    assert_same(&before, &after);

    let store = Store::connect(&url_of(&restored), 4)
        .await
        .expect("connect");
    let server = Server::start(store.clone(), test_limits()).await;
    for (what, expected) in &probe.answers {
        let (key, method, path, body) = match what.split_once(' ') {
            Some((path, body)) => {
                let body: Value = serde_json::from_str(body).expect("body");
                let key = if body["vector"] == json!(vector(101)) {
                    &probe.small_key
                } else {
                    &probe.big_key
                };
                (key, "POST", path, Some(body))
            }
            None if what == "/v1/policies" => (&probe.small_key, "GET", what.as_str(), None),
            None => (&probe.big_key, "GET", what.as_str(), None),
        };
        let got = server.ok(method, path, key, body).await;
        assert_eq!(rounded(&got), rounded(expected), "{what}");
    }
    assert_eq!(probe.answers[0].1["strategy"], "hnsw");
    let (status, _) = server
        .call("GET", "/v1/memories/m0", &probe.revoked_key, None)
        .await;
    assert_eq!(status, 401, "a key revoked before the backup stays revoked");
    let tenants = server.ok("GET", "/v1/admin/tenants", ADMIN, None).await;
    assert_eq!(tenants.as_array().map(Vec::len), Some(2), "{tenants}");
    drop(server);
    store.close().await;
    drop_database(&restored).await;
}

#[tokio::test]
async fn restore_refuses_a_database_that_is_not_empty_without_force() {
    let db = TestDb::new().await;
    let scratch = Scratch::new("schema.dump");
    let file = &scratch.file;
    backup(&db.url, file).await;
    db.store.init_admin_key(ADMIN).await.expect("marker");

    let (ok, out) = mnemo_admin(&db.url, &["restore", &file.display().to_string()]).await;
    assert!(!ok, "restore over a non-empty database succeeded:\n{out}");
    assert!(
        out.contains("is not empty") && out.contains("--force"),
        "{out}"
    );
    assert!(
        db.store.admin_key_hash().await.expect("read").is_some(),
        "the refused restore changed the database"
    );
    db.store.close().await;
    drop_database(&db.name).await;
}

#[tokio::test]
async fn restore_with_force_replaces_a_database_that_is_not_empty() {
    let db = TestDb::new().await;
    let scratch = Scratch::new("schema.dump");
    let file = &scratch.file;
    backup(&db.url, file).await;
    db.store
        .init_admin_key(ADMIN)
        .await
        .expect("written after the backup");
    db.store.close().await;

    let (ok, out) = mnemo_admin(
        &db.url,
        &["restore", "--force", &file.display().to_string()],
    )
    .await;
    assert!(ok, "restore --force failed:\n{out}");
    let store = Store::connect(&db.url, 2).await.expect("connect");
    assert_eq!(
        store.admin_key_hash().await.expect("read"),
        None,
        "what was written after the backup is gone"
    );
    store.close().await;
    drop_database(&db.name).await;
}

#[tokio::test]
async fn restore_of_something_that_is_not_a_backup_changes_nothing() {
    let db = TestDb::new().await;
    let scratch = Scratch::new("not-a-backup.dump");
    let file = &scratch.file;
    std::fs::write(file, b"hello").expect("write");
    let (ok, out) = mnemo_admin(
        &db.url,
        &["restore", "--force", &file.display().to_string()],
    )
    .await;
    assert!(!ok && out.contains("not a readable backup"), "{out}");
    assert!(
        db.store.pgvector_version().await.is_ok(),
        "the database was dropped for an unreadable file"
    );
    db.store.close().await;
    drop_database(&db.name).await;
}

/// A configured server where another role restores: objects belong to the URL's role (not the
/// one that owned them at backup time), the `owner_maintenance` policies name it, and the owner
/// still sees every row through Row Level Security.
#[tokio::test]
async fn a_restore_by_another_role_makes_it_the_owner_with_its_own_maintenance_policies() {
    let source = TestDb::new().await;
    source.store.init_admin_key(ADMIN).await.expect("admin key");
    let server = Server::start(source.store.clone(), test_limits()).await;
    let probe = fill(&server).await;
    drop(server);
    let scratch = Scratch::new("mnemo.dump");
    let file = &scratch.file;
    backup(&source.url, file).await;

    let role = format!("mnemo_t_owner_{}", uuid::Uuid::new_v4().simple());
    let database = format!("{}_as_role", source.name);
    let mut admin = server_conn().await;
    for sql in [
        format!("CREATE ROLE \"{role}\" LOGIN"),
        format!("GRANT mnemo_app TO \"{role}\""),
        format!("CREATE DATABASE \"{database}\" OWNER \"{role}\""),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.expect(&sql);
    }
    // `vector` is not a trusted extension: an administrator creates it for a non-superuser.
    let mut db = PgConnection::connect(&url_of(&database))
        .await
        .expect("connect");
    sqlx::query("CREATE EXTENSION vector")
        .execute(&mut db)
        .await
        .expect("extension");
    db.close().await.expect("close");
    let opts: PgConnectOptions = url_of(&database).parse().expect("url");
    let role_url = opts.username(&role).to_url_lossy().to_string();

    let (ok, out) = mnemo_admin(&role_url, &["restore", &file.display().to_string()]).await;
    assert!(ok, "restore as {role} failed:\n{out}");

    let mut db = PgConnection::connect(&url_of(&database))
        .await
        .expect("connect");
    let foreign: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm')
           AND pg_get_userbyid(relowner) <> $1",
    )
    .bind(&role)
    .fetch_all(&mut db)
    .await
    .expect("owners");
    assert!(foreign.is_empty(), "not owned by {role}: {foreign:?}");
    let policy_roles: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT roles::text FROM pg_policies WHERE policyname = 'owner_maintenance'",
    )
    .fetch_all(&mut db)
    .await
    .expect("policies");
    assert_eq!(policy_roles, vec![format!("{{{role}}}")]);
    db.close().await.expect("close");

    let store = Store::connect(&role_url, 4)
        .await
        .expect("connect as the role");
    let server = Server::start(store.clone(), test_limits()).await;
    let tenants = server.ok("GET", "/v1/admin/tenants", ADMIN, None).await;
    assert_eq!(tenants.as_array().map(Vec::len), Some(2), "{tenants}");
    let usage = server.ok("GET", "/v1/usage", &probe.big_key, None).await;
    assert_eq!(usage["total_memories"], BIG as i64, "{usage}");
    drop(server);
    store.close().await;
    source.store.close().await;
    drop_database(&database).await;
    drop_database(&source.name).await;
    sqlx::query(&format!("DROP ROLE \"{role}\""))
        .execute(&mut admin)
        .await
        .expect("drop role");
}
