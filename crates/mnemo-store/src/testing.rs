//! A fresh, migrated database per test, cloned from a template that is migrated once per schema
//! version. `DATABASE_URL` names the server (the owner role); `make test` provides it.

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use crate::{Store, MIGRATOR};

pub struct TestDb {
    pub store: Store,
    /// Connection URL of this test's database (owner role).
    pub url: String,
    pub name: String,
}

pub fn server_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with `make test` (it provisions PostgreSQL), or \
         export DATABASE_URL=postgres://USER@HOST:PORT/DB",
    )
}

fn template_name() -> String {
    let mut h = Sha256::new();
    for m in MIGRATOR.iter() {
        h.update(m.version.to_le_bytes());
        h.update(&*m.checksum);
    }
    format!("mnemo_tmpl_{}", &hex::encode(h.finalize())[..16])
}

fn url_for(db: &str) -> String {
    let opts: PgConnectOptions = server_url()
        .parse()
        .expect("DATABASE_URL is not a valid URL");
    opts.database(db).to_url_lossy().to_string()
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin_opts: PgConnectOptions = server_url()
            .parse()
            .expect("DATABASE_URL is not a valid URL");
        let mut admin = PgConnection::connect_with(&admin_opts.clone().database("postgres"))
            .await
            .expect("connect to the test server");
        let template = template_name();
        // One process migrates the template; the others wait on the lock and then find it.
        sqlx::query("SELECT pg_advisory_lock(727272)")
            .execute(&mut admin)
            .await
            .expect("lock");
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&template)
                .fetch_one(&mut admin)
                .await
                .expect("look up template");
        if !exists {
            let building = format!("{template}_building");
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{building}\""))
                .execute(&mut admin)
                .await
                .expect("drop");
            sqlx::query(&format!("CREATE DATABASE \"{building}\""))
                .execute(&mut admin)
                .await
                .expect("create");
            let mut conn = PgConnection::connect(&url_for(&building))
                .await
                .expect("connect template");
            MIGRATOR.run(&mut conn).await.expect("migrate template");
            conn.close().await.expect("close");
            sqlx::query(&format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
            ))
            .execute(&mut admin)
            .await
            .expect("rename template");
        }
        sqlx::query("SELECT pg_advisory_unlock(727272)")
            .execute(&mut admin)
            .await
            .expect("unlock");

        let name = format!("mnemo_t_{}", Uuid::new_v4().simple());
        sqlx::query(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .execute(&mut admin)
        .await
        .expect("create test database");
        let url = url_for(&name);
        let store = Store::connect(&url, 8)
            .await
            .expect("connect test database");
        TestDb { store, url, name }
    }
}
