//! The `mnemo` binary: `serve`, `migrate`, `admin …` and `bench`.
//!
//! - [`config`]: command line and environment (every flag has a `MNEMO_*` variable).
//! - [`serve`]: wiring the store, embedder and HTTP app; background jobs; graceful shutdown.
//! - [`admin`]: the admin operations of the HTTP API, for people without an HTTP client.
//! - [`backup`]: `admin backup` / `admin restore` with pg_dump and pg_restore.
//! - [`bench`]: the benchmark (ingest, search latency, recall vs. exact and vs. the naive design).

mod admin;
mod backup;
mod bench;
mod config;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use config::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mnemo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(&cli.database_url, args).await,
            Command::Migrate => {
                let store = mnemo_store::Store::connect(&cli.database_url, 2).await?;
                store.migrate().await?;
                println!("migrations applied");
                Ok(())
            }
            Command::Admin(cmd) => admin::run(&cli.database_url, cmd).await,
            Command::Bench(args) => bench::run(&cli.database_url, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mnemo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("MNEMO_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
