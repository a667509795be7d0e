//! PostgreSQL going away under a write load, and coming back.
//!
//! The test runs its own PostgreSQL (never the shared server other tests use): `initdb` into a
//! temporary folder with the binaries of `MNEMO_PG_BIN` (or `PATH`), as the unprivileged
//! `mnemo-pg` user when run as root (as `scripts/env.sh` does), on a free port. A server runs on
//! it with a 1 s acquire timeout while four clients write memories; PostgreSQL is stopped with
//! `pg_ctl stop -m immediate` (no shutdown checkpoint, connections cut: what a crash looks like
//! to clients), then started again.
//!
//! It takes about 15 s on a 2-core machine in a debug build: initdb ~2 s, migrations ~2 s, the
//! load before, during and after the outage ~8 s, crash recovery ~1 s.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use mnemo_server::{jobs, AdminKey, AppState, Limits};
use mnemo_store::{PoolConfig, Store};

const ADMIN: &str = "outage-test-admin-key-0123456789";
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// The folder with initdb, pg_ctl, … (`MNEMO_PG_BIN`, as `make test` exports it, or `PATH`).
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("MNEMO_PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .expect(
            "this test runs its own PostgreSQL: set MNEMO_PG_BIN to the folder with initdb and \
             pg_ctl (`make test` does), or put them on PATH",
        )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A throwaway PostgreSQL cluster on a free port; stopped and deleted on drop.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// The OS user PostgreSQL runs as when the test runs as root (PostgreSQL refuses root).
    os_user: Option<String>,
}

impl Cluster {
    fn init() -> Cluster {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!("mnemo-outage-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the cluster's folder");
        let os_user = is_root()
            .then(|| std::env::var("MNEMO_PG_OS_USER").unwrap_or_else(|_| "mnemo-pg".to_owned()));
        if let Some(user) = &os_user {
            let ok = Command::new("chown")
                .arg(user)
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "chown {} to {user}: run scripts/env.sh once as root to create that user",
                dir.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = Cluster {
            bin,
            dir,
            port,
            os_user,
        };
        cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        );
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs (as the PostgreSQL user when root); panics on failure.
    fn pg(&self, program: &str, args: &[&str]) {
        let status = self
            .command(program, args)
            .status()
            .expect("run a PostgreSQL program");
        assert!(status.success(), "{program} {args:?} failed: {status}");
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        let mut cmd = match &self.os_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        cmd.args(args).stdout(std::process::Stdio::null());
        cmd
    }

    fn start(&self) {
        let log = self.dir.join("postgres.log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=50",
            self.port,
            self.dir.display()
        );
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// What a crash looks like to clients: every connection cut at once, no checkpoint.
    fn stop_immediately(&self) {
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command(
                "pg_ctl",
                &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
            )
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the writers saw.
#[derive(Default)]
struct Outcomes {
    /// Memory ids whose create was answered 201.
    acknowledged: Vec<String>,
    /// 503 `database_unavailable` answers, each with a `Retry-After`.
    unavailable: usize,
    /// Anything else: other statuses, 503s without `Retry-After`, transport errors.
    unexpected: Vec<String>,
    slowest: Duration,
}

async fn writer(
    client: reqwest::Client,
    base: String,
    key: String,
    n: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Outcomes>>,
) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = format!("w{n}-{i}");
        let vector: Vec<f32> = (0..384)
            .map(|d| ((d * (i + n)) % 17) as f32 + 1.0)
            .collect();
        let started = Instant::now();
        let res = client
            .post(format!("{base}/v1/memories"))
            .bearer_auth(&key)
            .json(
                &json!({ "memory_id": id, "content": { "text": format!("note {id}") },
                           "embedding": vector }),
            )
            .send()
            .await;
        // Read the whole answer before taking the lock.
        let answer = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let body: Value = r.json().await.unwrap_or_default();
                Ok((status, retry_after, body))
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        let backoff = {
            let mut seen = seen.lock().expect("lock");
            seen.slowest = seen.slowest.max(took);
            match answer {
                Ok((201, _, _)) => {
                    seen.acknowledged.push(id);
                    false
                }
                Ok((503, true, body)) if body["error"]["code"] == "database_unavailable" => {
                    seen.unavailable += 1;
                    true
                }
                Ok((status, retry_after, body)) => {
                    seen.unexpected.push(format!(
                        "{id}: {status} (Retry-After: {retry_after}) {body}"
                    ));
                    false
                }
                Err(e) => {
                    seen.unexpected.push(format!("{id}: transport error {e}"));
                    false
                }
            }
        };
        if backoff {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(client: &reqwest::Client, base: &str) -> u16 {
    client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

async fn wait_until_ready(client: &reqwest::Client, base: &str, limit: Duration) {
    let started = Instant::now();
    while readyz(client, base).await != 200 {
        assert!(started.elapsed() < limit, "readyz not 200 within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_survive_a_postgres_outage_and_the_server_recovers_by_itself() {
    let test_started = Instant::now();
    let cluster = Cluster::init();
    cluster.start();
    let store = Store::connect_with(
        &cluster.url(),
        PoolConfig {
            max_connections: 8,
            acquire_timeout: ACQUIRE_TIMEOUT,
        },
    )
    .await
    .expect("connect to the test cluster");
    store.migrate().await.expect("migrate");
    let limits = Limits::default();
    let state = AppState::new(
        store.clone(),
        None,
        limits.clone(),
        AdminKey::configured(ADMIN),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(mnemo_server::serve(
        listener,
        mnemo_server::app(state),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");

    let admin = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let project: Value = admin("/v1/admin/projects", json!({"name": "p", "owner_id": "o"}))
        .await
        .expect("create project")
        .json()
        .await
        .expect("project");
    admin(
        "/v1/admin/tenants",
        json!({"tenant_id": "t", "project_id": project["id"], "name": "t"}),
    )
    .await
    .expect("create tenant");
    let key: Value = admin(
        "/v1/admin/tenants/t/keys",
        json!({"name": "k", "scopes": ["*"]}),
    )
    .await
    .expect("create key")
    .json()
    .await
    .expect("key");
    let key = key["secret"].as_str().expect("secret").to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Outcomes::default()));
    let writers: Vec<_> = (0..4)
        .map(|n| {
            tokio::spawn(writer(
                client.clone(),
                base.clone(),
                key.clone(),
                n,
                stop.clone(),
                seen.clone(),
            ))
        })
        .collect();
    let acked = || seen.lock().expect("lock").acknowledged.len();
    let unavailable = || seen.lock().expect("lock").unavailable;

    wait_for("writes before the outage", Duration::from_secs(30), || {
        acked() >= 40
    })
    .await;
    cluster.stop_immediately();
    let outage_started = Instant::now();
    let acked_at_outage = acked();

    wait_for(
        "503 database_unavailable answers",
        Duration::from_secs(20),
        || unavailable() >= 4,
    )
    .await;
    assert_eq!(
        readyz(&client, &base).await,
        503,
        "readyz while PostgreSQL is down"
    );
    let jobs_started = Instant::now();
    let report = jobs::run_all(&store, &limits).await;
    assert!(
        !report.errors.is_empty() && jobs_started.elapsed() < Duration::from_secs(15),
        "background jobs during the outage: {:?} after {:?}",
        report.errors,
        jobs_started.elapsed()
    );

    cluster.start();
    let outage = outage_started.elapsed();
    let restarted = Instant::now();
    wait_until_ready(&client, &base, Duration::from_secs(30)).await;
    let acked_after_restart = acked();
    wait_for("writes after the restart", Duration::from_secs(30), || {
        acked() >= acked_after_restart + 40
    })
    .await;
    let recovered = restarted.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let report = jobs::run_all(&store, &limits).await;
    assert!(
        report.errors.is_empty(),
        "background jobs after the outage: {:?}",
        report.errors
    );

    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    assert!(
        seen.unexpected.is_empty(),
        "answers other than 201 and 503: {:#?}",
        seen.unexpected
    );
    assert!(
        seen.slowest < ACQUIRE_TIMEOUT * 5,
        "a request took {:?}: not bounded by the acquire timeout",
        seen.slowest
    );
    let stored: HashSet<String> = sqlx::query_scalar("SELECT memory_id FROM contextual_memories")
        .fetch_all(store.pool())
        .await
        .expect("read back")
        .into_iter()
        .collect();
    let lost: Vec<&String> = seen
        .acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    eprintln!(
        "outage test: {} acknowledged ({} before the outage), {} answered 503, {} stored; \
         outage {:.1} s, recovered {:.1} s after the restart, slowest answer {:.2} s, \
         whole test {:.1} s",
        seen.acknowledged.len(),
        acked_at_outage,
        seen.unavailable,
        stored.len(),
        outage.as_secs_f64(),
        recovered.as_secs_f64(),
        seen.slowest.as_secs_f64(),
        test_started.elapsed().as_secs_f64()
    );
    let _ = stop_server.send(());
    store.close().await;
    drop(cluster);
}
