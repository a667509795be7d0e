//! Measures MiniLm on each backend: load time, one short query at a time (batch 1), calls of 32
//! texts one after another (batch 32) and 16 concurrent calls of 32 (coalesced by the worker),
//! for ~12-word sentences and ~60-word paragraphs. Each figure is measured `ROUNDS` times
//! (default 5) and printed as best / median / worst in texts per second.
//!
//! ```sh
//! eval "$(bash scripts/env.sh)"
//! cargo run --release -p mnemo-embed --example throughput                 # both backends
//! RAYON_NUM_THREADS=1 MNEMO_EMBED_THREADS=1 cargo run --release -p mnemo-embed --example throughput
//! BACKENDS=onnx cargo run --release -p mnemo-embed --example throughput
//! ```
//!
//! `MNEMO_EMBED_THREADS` sets ONNX Runtime's threads, `RAYON_NUM_THREADS` candle's (both default
//! to all cores); `MNEMO_ONNX_MODEL` and `MNEMO_ONNX_RUNTIME` locate the ONNX files.

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mnemo_embed::{Backend, Embedder, MiniLm, OnnxConfig};

const CALLERS: usize = 16;
const BATCH: usize = 32;
const SEQUENTIAL_CALLS: usize = 8;
const SINGLE_QUERIES: usize = 100;

type Texts = Vec<String>;

fn sentence(i: usize) -> String {
    format!("Sentence {i} tells the memory service about a meeting on Tuesday.")
}

fn paragraph(i: usize) -> String {
    format!(
        "Paragraph {i}: the quarterly planning meeting covered hiring, the budget for the new \
         storage cluster, the migration of the billing service to the new database, the on-call \
         rotation for the holidays, and a proposal to retire the legacy search index once the \
         vector search has been validated against production traffic."
    )
}

fn env_path(name: &str) -> Result<PathBuf, String> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{name} is not set: run `eval \"$(bash scripts/env.sh)\"` first"))
}

/// CPU time this process has used so far (user + system, all threads), from `/proc/self/stat`.
/// On a machine shared with other work, texts per CPU-second is steadier than per wall second.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().skip(11).take(2))
        .into_iter()
        .flatten()
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

/// Texts per second over `rounds` runs of `measure` (best, median, worst), and the best texts
/// per CPU-second.
async fn repeat<F, Fut>(rounds: usize, mut measure: F) -> Result<[f64; 4], Box<dyn Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(usize, f64), Box<dyn Error>>>,
{
    let mut rates = Vec::with_capacity(rounds);
    let mut per_cpu: f64 = 0.0;
    for _ in 0..rounds {
        let cpu = cpu_seconds();
        let (texts, wall) = measure().await?;
        rates.push(texts as f64 / wall);
        let cpu = cpu_seconds() - cpu;
        if cpu > 0.0 {
            per_cpu = per_cpu.max(texts as f64 / cpu);
        }
    }
    rates.sort_by(f64::total_cmp);
    Ok([
        rates[rates.len() - 1],
        rates[rates.len() / 2],
        rates[0],
        per_cpu,
    ])
}

fn report(backend: &str, label: &str, [best, median, worst, per_cpu]: [f64; 4]) {
    println!(
        "{backend:<11} {label:<40} best {best:>6.0}/s  median {median:>6.0}/s  worst {worst:>6.0}/s  \
         ({per_cpu:.0} per CPU-s)"
    );
}

type Measured = Result<(usize, f64), Box<dyn Error>>;

/// Texts embedded and wall seconds taken by `calls` sent one after another.
async fn sequential(model: &Arc<dyn Embedder>, calls: &[Texts]) -> Measured {
    let started = Instant::now();
    let mut texts = 0;
    for call in calls {
        texts += model.embed(call.clone()).await?.len();
    }
    Ok((texts, started.elapsed().as_secs_f64()))
}

/// Texts embedded and wall seconds taken by `calls` sent all at once.
async fn concurrent(model: &Arc<dyn Embedder>, calls: &[Texts]) -> Measured {
    let started = Instant::now();
    let tasks: Vec<_> = calls
        .iter()
        .cloned()
        .map(|texts| {
            let model = Arc::clone(model);
            tokio::spawn(async move { model.embed(texts).await })
        })
        .collect();
    let mut texts = 0;
    for task in tasks {
        texts += task.await??.len();
    }
    Ok((texts, started.elapsed().as_secs_f64()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = env_path("MNEMO_MODEL_DIR")?;
    let rounds: usize = std::env::var("ROUNDS").map_or(Ok(5), |r| r.parse())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: usize = std::env::var("MNEMO_EMBED_THREADS").map_or(Ok(cores), |t| t.parse())?;
    let backends = std::env::var("BACKENDS").unwrap_or_else(|_| "onnx,candle".to_owned());

    println!(
        "{cores} cores; ONNX Runtime threads {threads}; RAYON_NUM_THREADS {}; {rounds} rounds",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    for name in backends.split(',') {
        let backend = match name {
            "candle" => Backend::Candle,
            "onnx" => Backend::Onnx(OnnxConfig {
                model: env_path("MNEMO_ONNX_MODEL")?,
                runtime: env_path("MNEMO_ONNX_RUNTIME")?,
                threads,
            }),
            other => return Err(format!("unknown backend {other:?}: onnx or candle").into()),
        };
        let started = Instant::now();
        let dir = dir.clone();
        let model: Arc<dyn Embedder> = Arc::new(
            tokio::task::spawn_blocking(move || MiniLm::load_with(&dir, &backend)).await??,
        );
        println!("{name:<11} load {:.2} s", started.elapsed().as_secs_f64());
        model.embed((0..BATCH).map(sentence).collect()).await?;

        let queries: Vec<Texts> = (0..SINGLE_QUERIES)
            .map(|i| vec![format!("What did the user say about meeting {i}?")])
            .collect();
        let rates = repeat(rounds, || sequential(&model, &queries)).await?;
        report(name, "batch 1, short query", rates);
        println!(
            "{name:<11} {:<40} best {:>6.2} ms",
            "  = latency of one query",
            1000.0 / rates[0]
        );

        for (label, make) in [
            ("~12-word sentences", sentence as fn(usize) -> String),
            ("~60-word paragraphs", paragraph),
        ] {
            let batches = |count: usize| -> Vec<Texts> {
                (0..count)
                    .map(|call| (0..BATCH).map(|i| make(call * BATCH + i)).collect())
                    .collect()
            };
            let calls = batches(SEQUENTIAL_CALLS);
            let rates = repeat(rounds, || sequential(&model, &calls)).await?;
            report(name, &format!("batch 32, {label}"), rates);
            let calls = batches(CALLERS);
            let rates = repeat(rounds, || concurrent(&model, &calls)).await?;
            report(name, &format!("16 x 32 concurrent, {label}"), rates);
        }
    }
    Ok(())
}
