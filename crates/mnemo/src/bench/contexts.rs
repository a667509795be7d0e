//! `mnemo bench --contexts`: context offloading against a running server, on generated chat
//! transcripts (`mnemo_core::context::corpus`): offload throughput (contexts/s, tokens/s, with the
//! server's embedder), and reconstruction latency for one 100k-token context and for a tenant
//! holding many contexts. Writes `contexts.json` and `contexts.md`.
//!
//! Compression ratios per zstd level and token counting speed are measured without a server by
//! `cargo run --release -p mnemo-core --example context_measure`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{stream, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use mnemo_core::context::corpus;

use super::{latency, machine, BenchArgs, Client, Latency};

/// The planted fact of the 100k-token context and a query that should find it.
const FACT: &str = "The rollback password for the Kestrel cluster is amber-falcon-7731.";
const FACT_QUERY: &str = "What is the rollback password for the Kestrel cluster?";

const QUERY_WORDS: &[&str] = &[
    "deploy",
    "database",
    "migration",
    "error",
    "cache",
    "latency",
    "index",
    "query",
    "rust",
    "python",
    "test",
    "rollback",
    "config",
    "timeout",
    "memory",
    "schema",
    "tool",
    "result",
];

#[derive(Serialize)]
struct Offload {
    contexts: usize,
    tokens: u64,
    chunks: u64,
    original_bytes: u64,
    stored_bytes: u64,
    seconds: f64,
    contexts_per_s: f64,
    tokens_per_s: f64,
    chunks_per_s: f64,
    compression_ratio: f64,
}

#[derive(Serialize)]
struct Rebuild {
    /// Contexts the tenant holds and their chunks.
    contexts: usize,
    chunks: u64,
    token_budget: usize,
    /// `exact` or `hnsw`: how the tenant's chunks are searched.
    strategy: String,
    latency: Latency,
    /// Mean share of the budget the prompts used.
    mean_fill: f64,
    /// Whether the planted fact was in the first packed item (100k-token context only).
    fact_first: Option<bool>,
}

#[derive(Serialize)]
struct Report {
    machine: String,
    load_before: String,
    load_after: String,
    throughput: Offload,
    long_context: Offload,
    long_rebuild: Rebuild,
    many_offload: Offload,
    many_rebuild: Rebuild,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn tenant(client: &Client, admin: &str, project: &str, tid: &str) -> anyhow::Result<String> {
    client
        .post(
            "/v1/admin/tenants",
            admin,
            json!({"tenant_id": tid, "project_id": project, "name": tid}),
        )
        .await?;
    let k = client
        .post(
            &format!("/v1/admin/tenants/{tid}/keys"),
            admin,
            json!({"name": "bench", "scopes": ["*"]}),
        )
        .await?;
    Ok(k["secret"].as_str().context("secret")?.to_owned())
}

/// Offloads the transcripts `(id, messages JSON)` with `workers` requests in flight.
async fn offload_all(
    client: &Arc<Client>,
    key: &str,
    docs: Vec<(String, String)>,
    workers: usize,
) -> anyhow::Result<Offload> {
    let n = docs.len();
    let started = Instant::now();
    let answers: Vec<anyhow::Result<Value>> = stream::iter(docs)
        .map(|(id, messages)| {
            let (client, key) = (client.clone(), key.to_owned());
            async move {
                let raw = serde_json::value::RawValue::from_string(messages)?;
                client
                    .post(
                        "/v1/contexts",
                        &key,
                        json!({ "context_id": id, "messages": raw }),
                    )
                    .await
            }
        })
        .buffer_unordered(workers.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let mut o = Offload {
        contexts: n,
        tokens: 0,
        chunks: 0,
        original_bytes: 0,
        stored_bytes: 0,
        seconds,
        contexts_per_s: n as f64 / seconds,
        tokens_per_s: 0.0,
        chunks_per_s: 0.0,
        compression_ratio: 0.0,
    };
    for a in answers {
        let a = a?;
        o.tokens += a["token_count"].as_u64().unwrap_or(0);
        o.chunks += a["chunk_count"].as_u64().unwrap_or(0);
        o.original_bytes += a["original_bytes"].as_u64().unwrap_or(0);
        o.stored_bytes += a["stored_bytes"].as_u64().unwrap_or(0);
    }
    o.tokens_per_s = o.tokens as f64 / seconds;
    o.chunks_per_s = o.chunks as f64 / seconds;
    o.compression_ratio = o.original_bytes as f64 / o.stored_bytes.max(1) as f64;
    Ok(o)
}

/// `queries` reconstructions one after the other; the first query is `first` when given.
async fn rebuild(
    client: &Client,
    key: &str,
    queries: usize,
    budget: usize,
    first: Option<&str>,
    rng: &mut StdRng,
) -> anyhow::Result<(Latency, f64, Option<bool>)> {
    let mut samples = Vec::with_capacity(queries);
    let mut fill = 0.0;
    let mut fact_first = None;
    let started = Instant::now();
    for i in 0..queries {
        let query = match (i, first) {
            (0, Some(q)) => q.to_owned(),
            _ => (0..rng.gen_range(2..5))
                .map(|_| QUERY_WORDS[rng.gen_range(0..QUERY_WORDS.len())])
                .collect::<Vec<_>>()
                .join(" "),
        };
        let t = Instant::now();
        let out = client
            .post(
                "/v1/contexts/reconstruct",
                key,
                json!({ "query": query, "token_budget": budget }),
            )
            .await?;
        samples.push(t.elapsed());
        let used = out["tokens_used"].as_u64().unwrap_or(0) as usize;
        if used > budget {
            anyhow::bail!("a prompt of {used} tokens for a budget of {budget}");
        }
        fill += used as f64 / budget as f64;
        if i == 0 && first.is_some() {
            let prompt = out["prompt"].as_str().unwrap_or("");
            let head = prompt.split("\n\n[").next().unwrap_or("");
            fact_first = Some(head.contains("amber-falcon-7731"));
        }
    }
    Ok((
        latency(samples, started.elapsed()),
        fill / queries.max(1) as f64,
        fact_first,
    ))
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(1800))
            .build()?,
        url: args.url.trim_end_matches('/').to_owned(),
    });
    let load_before = load_average();
    let run_id = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let project = client
        .post(
            "/v1/admin/projects",
            &args.admin_key,
            json!({"name": format!("bench-contexts-{run_id}"), "owner_id": "bench"}),
        )
        .await?;
    let project_id = project["id"].as_str().context("project id")?.to_owned();
    let mut rng = StdRng::seed_from_u64(args.seed);

    // Offload throughput on transcripts of 1k–20k tokens (log-uniform).
    let key = tenant(
        &client,
        &args.admin_key,
        &project_id,
        &format!("bc-{run_id}-t"),
    )
    .await?;
    let sizes = corpus::log_uniform_sizes(args.seed, args.context_count, 1_000, 20_000);
    let docs: Vec<(String, String)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (
                format!("t{i}"),
                corpus::generate(args.seed * 1_000 + i as u64, n).messages_json,
            )
        })
        .collect();
    eprintln!("bench: offloading {} contexts of 1k–20k tokens", docs.len());
    let throughput = offload_all(&client, &key, docs, args.context_workers).await?;

    // One 100k-token context with a planted fact.
    let key = tenant(
        &client,
        &args.admin_key,
        &project_id,
        &format!("bc-{run_id}-l"),
    )
    .await?;
    let long = corpus::generate_with_fact(args.seed + 1, 100_000, FACT, 0.5);
    eprintln!("bench: offloading a 100k-token context");
    let long_context =
        offload_all(&client, &key, vec![("long".into(), long.messages_json)], 1).await?;
    eprintln!("bench: {} reconstructions over it", args.context_queries);
    let (lat, fill, fact_first) = rebuild(
        &client,
        &key,
        args.context_queries,
        args.token_budget,
        Some(FACT_QUERY),
        &mut rng,
    )
    .await?;
    let long_rebuild = Rebuild {
        contexts: 1,
        chunks: long_context.chunks,
        token_budget: args.token_budget,
        strategy: search_strategy(&client, &key).await?,
        latency: lat,
        mean_fill: fill,
        fact_first,
    };

    // A tenant holding many small contexts.
    let key = tenant(
        &client,
        &args.admin_key,
        &project_id,
        &format!("bc-{run_id}-m"),
    )
    .await?;
    let docs: Vec<(String, String)> = (0..args.tenant_contexts)
        .map(|i| {
            let n =
                rng.gen_range(args.tenant_context_tokens / 2..=args.tenant_context_tokens * 3 / 2);
            (
                format!("m{i}"),
                corpus::generate(args.seed * 7_919 + i as u64, n).messages_json,
            )
        })
        .collect();
    eprintln!(
        "bench: offloading {} contexts of ~{} tokens into one tenant",
        docs.len(),
        args.tenant_context_tokens
    );
    let many_offload = offload_all(&client, &key, docs, args.context_workers).await?;
    eprintln!("bench: building the tenant's chunk index (if over the threshold)");
    loop {
        let m = client
            .post("/v1/admin/maintenance", &args.admin_key, json!({}))
            .await?;
        if m["vector_indexes"]["context_chunks"]["built"]
            .as_array()
            .is_none_or(|b| b.is_empty())
        {
            break;
        }
    }
    eprintln!("bench: {} reconstructions over them", args.context_queries);
    let (lat, fill, _) = rebuild(
        &client,
        &key,
        args.context_queries,
        args.token_budget,
        None,
        &mut rng,
    )
    .await?;
    let many_rebuild = Rebuild {
        contexts: many_offload.contexts,
        chunks: many_offload.chunks,
        token_budget: args.token_budget,
        strategy: search_strategy(&client, &key).await?,
        latency: lat,
        mean_fill: fill,
        fact_first: None,
    };

    let report = Report {
        machine: machine(),
        load_before,
        load_after: load_average(),
        throughput,
        long_context,
        long_rebuild,
        many_offload,
        many_rebuild,
    };
    std::fs::write(
        args.out.join("contexts.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report);
    std::fs::write(args.out.join("contexts.md"), &md)?;
    println!("{md}");
    eprintln!("bench: wrote {}/contexts.{{json,md}}", args.out.display());
    if !args.keep {
        let r = client
            .http
            .delete(format!(
                "{}/v1/admin/projects/{project_id}?cascade=true",
                client.url
            ))
            .bearer_auth(&args.admin_key)
            .send()
            .await?;
        if !r.status().is_success() {
            eprintln!("bench: could not delete the bench project: {}", r.status());
        }
    }
    Ok(())
}

/// How the tenant's chunks are searched now (`exact` or `hnsw`).
async fn search_strategy(client: &Client, key: &str) -> anyhow::Result<String> {
    let v = client
        .post(
            "/v1/contexts/search",
            key,
            json!({ "query": "database migration", "mode": "vector" }),
        )
        .await?;
    Ok(v["strategy"].as_str().unwrap_or("–").to_owned())
}

fn markdown(r: &Report) -> String {
    let offload = |what: &str, o: &Offload| {
        format!(
            "| {what} | {} | {} | {} | {:.1} s | {:.2} | {:.0} | {:.0} | {:.2} |\n",
            o.contexts,
            o.tokens,
            o.chunks,
            o.seconds,
            o.contexts_per_s,
            o.tokens_per_s,
            o.chunks_per_s,
            o.compression_ratio
        )
    };
    let rebuild = |what: &str, b: &Rebuild| {
        format!(
            "| {what} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} % | {} |\n",
            b.contexts,
            b.chunks,
            b.strategy,
            b.latency.requests,
            b.latency.p50_ms,
            b.latency.p95_ms,
            b.latency.p99_ms,
            b.mean_fill * 100.0,
            b.fact_first.map_or("–".to_owned(), |f| f.to_string()),
        )
    };
    let mut s = format!(
        "## Contexts\n\nMachine: {}. Load average (1, 5, 15 min) before: {}; after: {}.\n\n\
         Offload over HTTP (the server compresses, chunks, embeds every chunk and the summary's \
         candidate sentences with its embedder, summarizes, and writes in one transaction):\n\n\
         | corpus | contexts | tokens | chunks | wall | contexts/s | tokens/s | chunks/s | compression ratio |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        r.machine, r.load_before, r.load_after
    );
    s += &offload("1k–20k tokens (log-uniform)", &r.throughput);
    s += &offload("one 100k-token context", &r.long_context);
    s += &offload("many small contexts, one tenant", &r.many_offload);
    s += &format!(
        "\nReconstruction over HTTP, one request at a time (query embedded, hybrid chunk search, \
         summaries, packing counted with o200k_base), budget {} tokens:\n\n\
         | tenant | contexts | chunks | chunk search | requests | p50 ms | p95 ms | p99 ms | budget used | planted fact first |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        r.long_rebuild.token_budget
    );
    s += &rebuild("one 100k-token context", &r.long_rebuild);
    s += &rebuild("many small contexts", &r.many_rebuild);
    s
}
