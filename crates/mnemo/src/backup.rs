//! `mnemo admin backup FILE` and `mnemo admin restore FILE`: PostgreSQL's own `pg_dump` and
//! `pg_restore` (custom format), with progress on the terminal.
//!
//! What a plain `pg_restore` would miss, and what restore does about it:
//! - roles are cluster-wide, not in a dump: `mnemo_app` is created first when missing (as
//!   migration 0001 does), and the restoring role is made a member;
//! - objects are restored with `--no-owner`, so the URL's role owns them, whoever owned them when
//!   the backup was taken;
//! - the `owner_maintenance` policies name the role that ran the migrations (`TO <role>`): they
//!   are left out of the restore and created again for the URL's role;
//! - materialized views are refreshed after that, not by `pg_restore`: under forced Row Level
//!   Security, an owner that is not a superuser reads the tables behind them only through its
//!   `owner_maintenance` policy;
//! - `COMMENT ON EXTENSION` needs to own the extension, which a role restoring into a database
//!   where an administrator created `vector` does not: left out;
//! - after the data, pending migrations run (a backup of an older version is brought up to this
//!   binary's schema) and `ANALYZE` gives the planner its statistics back.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};

use mnemo_store::Store;

/// Finds one of PostgreSQL's client programs: in `MNEMO_PG_BIN` (which `scripts/env.sh` exports
/// for the embedded server), else on `PATH`.
pub fn pg_program(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MNEMO_PG_BIN").filter(|d| !d.is_empty()) {
        let path = Path::new(&dir).join(name);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "{name} not found in MNEMO_PG_BIN ({}): point it at the folder holding PostgreSQL's \
             client programs",
            path.display()
        );
    }
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
    {
        return Ok(path);
    }
    bail!(
        "{name} not found: set MNEMO_PG_BIN to the folder holding PostgreSQL's client programs \
         (for the embedded server, `eval \"$(bash scripts/env.sh)\"` sets it) or put them on PATH; \
         use the version of the server or a newer one"
    )
}

/// Connection parameters libpq understands in a URL's query (PostgreSQL 18).
const LIBPQ_PARAMS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

/// sqlx's spellings of libpq parameters.
fn libpq_param(name: &str) -> Option<&str> {
    let name = match name {
        "ssl-mode" => "sslmode",
        "ssl-root-cert" => "sslrootcert",
        "ssl-cert" => "sslcert",
        "ssl-key" => "sslkey",
        other => other,
    };
    LIBPQ_PARAMS.contains(&name).then_some(name)
}

/// The libpq view of `DATABASE_URL`: the URL without its password (which would show in the
/// process list) and without sqlx's own parameters (`statement-cache-capacity`), which libpq
/// refuses; the password goes to `PGPASSWORD`.
struct LibpqTarget {
    url: String,
    password: Option<String>,
    database: String,
}

impl LibpqTarget {
    fn parse(database_url: &str) -> anyhow::Result<Self> {
        let mut url = url::Url::parse(database_url).context("DATABASE_URL is not a valid URL")?;
        let password = url.password().map(percent_decode);
        url.set_password(None)
            .map_err(|()| anyhow::anyhow!("DATABASE_URL cannot carry a password"))?;
        let params: Vec<(String, String)> = url
            .query_pairs()
            .filter_map(|(k, v)| Some((libpq_param(&k)?.to_owned(), v.into_owned())))
            .collect();
        url.set_query(None);
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        let database = url.path().trim_start_matches('/');
        if database.is_empty() {
            bail!("DATABASE_URL names no database (postgres://user@host:port/DATABASE)");
        }
        let database = percent_decode(database);
        Ok(Self {
            url: url.to_string(),
            password,
            database,
        })
    }

    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env("PGAPPNAME", "mnemo-admin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of progress, rewritten in place on a terminal and one line per step otherwise.
struct Progress {
    total: usize,
    done: usize,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn step(&mut self, what: &str) {
        self.done += 1;
        let line = format!("[{}/{}] {what}", self.done, self.total.max(self.done));
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.tty && self.done > 0 {
            eprintln!();
        }
    }
}

/// Runs a pg_dump/pg_restore, turning its `--verbose` lines into progress (`steps` picks the
/// lines that are a step, and says what to show). The full output is shown when it fails.
async fn run_verbose(
    mut cmd: tokio::process::Command,
    total: usize,
    steps: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let program = format!("{:?}", cmd.as_std().get_program());
    let mut child = cmd.spawn().with_context(|| format!("starting {program}"))?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut progress = Progress::new(total);
    let mut log = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if let Some(step) = steps(&line) {
            progress.step(&step);
        }
        log.push(line);
    }
    let status = child.wait().await?;
    progress.finish();
    if !status.success() {
        let tail: Vec<&str> = log
            .iter()
            .filter(|l| !steps_like_noise(l))
            .map(String::as_str)
            .collect();
        let shown = &tail[tail.len().saturating_sub(30)..];
        bail!("{program} failed ({status}):\n{}", shown.join("\n"));
    }
    Ok(())
}

/// Verbose chatter that says nothing about a failure.
fn steps_like_noise(line: &str) -> bool {
    let l = line
        .trim_start_matches("pg_dump: ")
        .trim_start_matches("pg_restore: ");
    l.starts_with("creating ")
        || l.starts_with("processing ")
        || l.starts_with("dumping ")
        || l.starts_with("reading ")
        || l.starts_with("executing ")
}

fn quoted(line: &str) -> Option<&str> {
    let start = line.find('"')? + 1;
    let end = line[start..].find('"')? + start;
    Some(&line[start..end])
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn connect_options(database_url: &str) -> anyhow::Result<PgConnectOptions> {
    let opts: PgConnectOptions = database_url
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    // A restore's ANALYZE or refresh is slow by nature: no "slow statement" warnings.
    Ok(opts
        .application_name("mnemo-admin")
        .disable_statement_logging())
}

/// `mnemo admin backup FILE`: a custom-format dump of the whole database (schema, data, the
/// migration history and the admin key's hash), written to `FILE.partial` and renamed when
/// complete, so a failed backup never leaves a truncated file under the final name.
pub async fn backup(database_url: &str, file: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let pg_dump = pg_program("pg_dump")?;
    let target = LibpqTarget::parse(database_url)?;
    let mut conn = PgConnection::connect_with(&connect_options(database_url)?)
        .await
        .context("connecting to PostgreSQL")?;
    let (tables, bytes): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_toast%'",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    eprintln!(
        "backing up database {:?}: {tables} tables, {} on disk (with indexes)",
        target.database,
        mib(bytes as u64)
    );

    let partial = partial_path(file);
    let mut cmd = target.command(&pg_dump);
    cmd.arg("--format=custom")
        .arg("--verbose")
        .arg("--file")
        .arg(&partial)
        .arg("--dbname")
        .arg(&target.url);
    let result = run_verbose(cmd, tables as usize, |line| {
        line.contains("dumping contents of table")
            .then(|| quoted(line).unwrap_or(line).to_owned())
    })
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, file)
        .with_context(|| format!("renaming {} to {}", partial.display(), file.display()))?;
    let size = std::fs::metadata(file)?.len();
    println!(
        "backup written to {} ({}) in {:.1} s",
        file.display(),
        mib(size),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    file.with_file_name(name)
}

/// The archive's table of contents, minus what restore recreates itself.
struct RestoreList {
    /// The `pg_restore --use-list` text.
    list: String,
    /// Tables that had an `owner_maintenance` policy.
    owner_policies: Vec<String>,
    /// Materialized views that held data, to refresh once the policies exist.
    materialized_views: Vec<String>,
    /// Steps shown as progress: table data and indexes.
    steps: usize,
}

impl RestoreList {
    /// Lines look like `3478; 3256 42240 POLICY public api_keys owner_maintenance postgres`.
    fn from_toc(toc: &str) -> Self {
        let mut list = String::new();
        let mut owner_policies = Vec::new();
        let mut materialized_views = Vec::new();
        let mut steps = 0;
        for line in toc.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let kind = fields.get(3..).unwrap_or_default();
            match kind {
                ["POLICY", "public", table, "owner_maintenance", ..] => {
                    owner_policies.push((*table).to_owned());
                    continue;
                }
                ["COMMENT", "-", "EXTENSION", ..] => continue,
                ["MATERIALIZED", "VIEW", "DATA", "public", view, ..] => {
                    materialized_views.push((*view).to_owned());
                    continue;
                }
                ["TABLE", "DATA", ..] | ["INDEX", ..] => steps += 1,
                _ => {}
            }
            list.push_str(line);
            list.push('\n');
        }
        Self {
            list,
            owner_policies,
            materialized_views,
            steps,
        }
    }
}

/// What a database holds besides extensions: its tables, views, sequences, functions and types
/// outside the system schemas. Empty for a new database, or one where only `CREATE EXTENSION
/// vector` was run.
async fn user_objects(conn: &mut PgConnection) -> anyhow::Result<(i64, Vec<String>)> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "WITH objs AS (
             SELECT c.oid, 'pg_class'::regclass AS cls, c.relnamespace AS nsp, c.relname::text AS name
             FROM pg_class c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             UNION ALL
             SELECT p.oid, 'pg_proc'::regclass, p.pronamespace, p.proname || '()' FROM pg_proc p
             UNION ALL
             SELECT t.oid, 'pg_type'::regclass, t.typnamespace, t.typname::text FROM pg_type t
             WHERE t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND t.typrelid = 0)
         )
         SELECT count(*) OVER (), n.nspname || '.' || o.name
         FROM objs o JOIN pg_namespace n ON n.oid = o.nsp
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = o.cls AND d.objid = o.oid AND d.deptype = 'e')
         ORDER BY 2 LIMIT 5",
    )
    .fetch_all(&mut *conn)
    .await?;
    let count = rows.first().map_or(0, |r| r.0);
    Ok((count, rows.into_iter().map(|r| r.1).collect()))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A connection to the cluster's maintenance database, to create or drop the target.
async fn maintenance_connection(opts: &PgConnectOptions) -> anyhow::Result<PgConnection> {
    let mut last = None;
    for db in ["postgres", "template1"] {
        match PgConnection::connect_with(&opts.clone().database(db)).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || anyhow::anyhow!("no maintenance database"),
        |e| anyhow::Error::new(e).context("connecting to the maintenance database (postgres)"),
    ))
}

/// `mnemo admin restore FILE [--force]`: into the database of `DATABASE_URL`, which must be
/// empty or not exist yet (it is created); with `force`, a non-empty one is dropped and created
/// again first. The restore is one transaction: a failure leaves the database empty.
pub async fn restore(database_url: &str, file: &Path, force: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let pg_restore = pg_program("pg_restore")?;
    let target = LibpqTarget::parse(database_url)?;
    let opts = connect_options(database_url)?;

    // Read the archive before touching the database: a wrong file changes nothing.
    let toc = tokio::process::Command::new(&pg_restore)
        .arg("--list")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("starting {}", pg_restore.display()))?;
    if !toc.status.success() {
        bail!(
            "{} is not a readable backup: {}",
            file.display(),
            String::from_utf8_lossy(&toc.stderr).trim()
        );
    }
    let list = RestoreList::from_toc(&String::from_utf8_lossy(&toc.stdout));

    prepare_empty_database(&opts, &target.database, force).await?;

    let mut conn = PgConnection::connect_with(&opts)
        .await
        .context("connecting to the target database")?;
    ensure_app_role(&mut conn).await?;
    conn.close().await?;

    let list_file = std::env::temp_dir().join(format!("mnemo-restore-{}.list", std::process::id()));
    std::fs::write(&list_file, &list.list)?;
    let mut cmd = target.command(&pg_restore);
    cmd.arg("--verbose")
        .arg("--no-owner")
        .arg("--single-transaction")
        .arg("--exit-on-error")
        .arg("--use-list")
        .arg(&list_file)
        .arg("--dbname")
        .arg(&target.url)
        .arg(file);
    eprintln!(
        "restoring {} into database {:?}",
        file.display(),
        target.database
    );
    let result = run_verbose(cmd, list.steps, |line| {
        let name = quoted(line).unwrap_or(line);
        if line.contains("processing data for table") {
            Some(format!("data of {name}"))
        } else if line.contains("creating INDEX") {
            Some(format!("index {name}"))
        } else {
            None
        }
    })
    .await;
    let _ = std::fs::remove_file(&list_file);
    result?;

    let mut conn = PgConnection::connect_with(&opts).await?;
    let mut tx = conn.begin().await?;
    for table in &list.owner_policies {
        sqlx::query(&format!(
            "CREATE POLICY owner_maintenance ON public.{} TO CURRENT_USER USING (true) WITH CHECK (true)",
            quote_ident(table)
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("recreating the owner_maintenance policy of {table}"))?;
    }
    for view in &list.materialized_views {
        eprintln!("refreshing materialized view {view}");
        sqlx::query(&format!(
            "REFRESH MATERIALIZED VIEW public.{}",
            quote_ident(view)
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("refreshing {view}"))?;
    }
    tx.commit().await?;
    conn.close().await?;
    let store = Store::connect(database_url, 2).await?;
    store.migrate().await.context(
        "the data is restored, but this version's migrations do not apply to it (a backup \
             taken by a newer Mnemo needs that version)",
    )?;
    store.close().await;
    eprintln!("analyzing");
    let mut conn = PgConnection::connect_with(&opts).await?;
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    conn.close().await?;
    println!(
        "restored {} into database {:?} in {:.1} s",
        file.display(),
        target.database,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Makes sure the target database exists and is empty: creates it when missing; refuses a
/// non-empty one unless `force`, then drops and creates it again.
async fn prepare_empty_database(
    opts: &PgConnectOptions,
    database: &str,
    force: bool,
) -> anyhow::Result<()> {
    let mut admin = maintenance_connection(opts).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut admin)
            .await?;
    let create = format!("CREATE DATABASE {}", quote_ident(database));
    if !exists {
        eprintln!("database {database:?} does not exist: creating it");
        sqlx::query(&create)
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {database:?}"))?;
        return Ok(());
    }
    let mut conn = PgConnection::connect_with(opts)
        .await
        .context("connecting to the target database")?;
    let (count, sample) = user_objects(&mut conn).await?;
    conn.close().await?;
    if count == 0 {
        return Ok(());
    }
    if !force {
        bail!(
            "database {database:?} is not empty ({count} objects, e.g. {}): restore refuses to \
             overwrite it. Restore into an empty or new database (set DATABASE_URL to it), or \
             pass --force to drop this one and restore in its place (stop the servers using it \
             first)",
            sample.join(", ")
        );
    }
    eprintln!("--force: dropping database {database:?} ({count} objects) and creating it again");
    sqlx::query(&format!(
        "DROP DATABASE {} WITH (FORCE)",
        quote_ident(database)
    ))
    .execute(&mut admin)
    .await
    .with_context(|| {
        format!(
            "dropping database {database:?} (the URL's role must own it); or drop and create it \
             yourself, then restore without --force"
        )
    })?;
    sqlx::query(&create)
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating database {database:?}"))?;
    Ok(())
}

/// Roles live in the cluster, not in a dump: the role tenant requests run as must exist before
/// the grants to it are restored, and the restoring role must be a member to `SET ROLE` to it.
/// The same statement as migration 0001.
async fn ensure_app_role(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "DO $$
         BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mnemo_app') THEN
                 CREATE ROLE mnemo_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
             END IF;
             IF NOT pg_has_role(current_user, 'mnemo_app', 'MEMBER') THEN
                 EXECUTE format('GRANT mnemo_app TO %I', current_user);
             END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN
             NULL;
         END
         $$",
    )
    .execute(conn)
    .await
    .context(
        "creating the role mnemo_app (roles are not in a backup): an administrator can run \
         `CREATE ROLE mnemo_app NOLOGIN; GRANT mnemo_app TO <the URL's role>`",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restore_list_leaves_out_owner_policies_extension_comments_and_view_refreshes() {
        let toc = "\
;
; Archive created at 2026-11-27
3530; 0 0 COMMENT - EXTENSION vector 
1050; 1247 41624 TYPE public archival_policy postgres
3478; 3256 42240 POLICY public aggregated_insights owner_maintenance postgres
3487; 3256 42250 POLICY public aggregated_insights initiator_insert postgres
3500; 0 42100 TABLE DATA public api_keys postgres
3511; 0 42276 MATERIALIZED VIEW DATA public tenant_memory_analytics postgres
3600; 1259 42300 INDEX public api_keys_tenant_idx postgres
";
        let list = RestoreList::from_toc(toc);
        assert_eq!(list.owner_policies, vec!["aggregated_insights"]);
        assert_eq!(list.materialized_views, vec!["tenant_memory_analytics"]);
        assert!(!list.list.contains("MATERIALIZED VIEW DATA"));
        assert_eq!(list.steps, 2);
        assert!(!list.list.contains("owner_maintenance"));
        assert!(!list.list.contains("COMMENT - EXTENSION"));
        assert!(list.list.contains("initiator_insert"));
        assert!(list.list.contains("TYPE public archival_policy"));
    }

    #[test]
    fn the_password_leaves_the_url_for_pgpassword() {
        let t = LibpqTarget::parse(
            "postgres://mnemo:p%40ss%2Fw@db.example:5433/my%20db?sslmode=require",
        )
        .expect("valid URL");
        assert_eq!(t.password.as_deref(), Some("p@ss/w"));
        assert_eq!(t.database, "my db");
        assert!(!t.url.contains("p%40ss"), "{}", t.url);
        assert!(t.url.contains("mnemo@db.example:5433"), "{}", t.url);
        assert!(t.url.ends_with("?sslmode=require"), "{}", t.url);
    }

    #[test]
    fn parameters_only_sqlx_knows_leave_the_url() {
        let t = LibpqTarget::parse(
            "postgres://u@h/db?statement-cache-capacity=100&ssl-mode=disable&application_name=x",
        )
        .expect("valid URL");
        assert_eq!(
            t.url,
            "postgres://u@h/db?sslmode=disable&application_name=x"
        );
    }

    #[test]
    fn a_url_without_a_database_is_refused() {
        assert!(LibpqTarget::parse("postgres://u@h:5432").is_err());
    }
}
