//! Measures MiniLm: load time, single-text latency, and throughput when 16 callers each send
//! 32 texts at once (the worker coalesces them).
//!
//! `eval "$(bash scripts/env.sh)" && cargo run --release -p mnemo-embed --example throughput`
//! (`RAYON_NUM_THREADS` sets the threads of each forward pass).

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mnemo_embed::{Embedder, MiniLm};

const CALLERS: usize = 16;
const TEXTS_PER_CALL: usize = 32;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::var_os("MNEMO_MODEL_DIR")
        .map(PathBuf::from)
        .ok_or("MNEMO_MODEL_DIR is not set: run `eval \"$(bash scripts/env.sh)\"` first")?;

    let started = Instant::now();
    let model: Arc<dyn Embedder> =
        Arc::new(tokio::task::spawn_blocking(move || MiniLm::load(&dir)).await??);
    println!("load: {:.2} s", started.elapsed().as_secs_f64());

    model.embed(vec!["warm up".to_owned()]).await?;
    let started = Instant::now();
    for _ in 0..20 {
        model
            .embed(vec!["A man is eating food.".to_owned()])
            .await?;
    }
    println!(
        "one text: {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0 / 20.0
    );

    let sentence =
        |i: usize| format!("Sentence {i} tells the memory service about a meeting on Tuesday.");
    let paragraph = |i: usize| {
        format!(
            "Paragraph {i}: the quarterly planning meeting covered hiring, the budget for the \
             new storage cluster, the migration of the billing service to the new database, \
             the on-call rotation for the holidays, and a proposal to retire the legacy search \
             index once the vector search has been validated against production traffic."
        )
    };
    for (label, make) in [
        ("~12-word sentences", &sentence as &dyn Fn(usize) -> String),
        ("~60-word paragraphs", &paragraph),
    ] {
        let started = Instant::now();
        let calls: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let model = Arc::clone(&model);
                let texts = (0..TEXTS_PER_CALL)
                    .map(|i| make(caller * TEXTS_PER_CALL + i))
                    .collect();
                tokio::spawn(async move { model.embed(texts).await })
            })
            .collect();
        for call in calls {
            call.await??;
        }
        let texts = (CALLERS * TEXTS_PER_CALL) as f64;
        println!(
            "{label}: {:.0} texts/s ({CALLERS} concurrent calls of {TEXTS_PER_CALL})",
            texts / started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
