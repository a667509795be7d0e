//! `mnemo bench`: ingest and search against a running server, with recall measured against exact
//! brute force and the seed's naive design (one global IVFFlat index, filter by tenant) measured on
//! the same queries. Writes `report.json` and `report.md`. With `--contexts`, the context
//! offloading benchmark instead ([`contexts`]).

mod contexts;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use futures::{stream, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Base URL of the running server.
    #[arg(long, env = "MNEMO_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, env = "MNEMO_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: String,
    /// Memories in total (up to 1,000,000).
    #[arg(long, default_value_t = 100_000)]
    pub memories: usize,
    #[arg(long, default_value_t = 1_000)]
    pub tenants: usize,
    /// Zipf exponent of tenant sizes.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Vector clusters.
    #[arg(long, default_value_t = 64)]
    pub clusters: usize,
    /// Queries per tenant-size bucket.
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// Concurrent HTTP ingest batches.
    #[arg(long, default_value_t = 8)]
    pub ingest_workers: usize,
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Skip the naive-design comparison (needs DATABASE_URL).
    #[arg(long)]
    pub skip_naive: bool,
    /// Skip local embedding throughput (needs MNEMO_MODEL_DIR).
    #[arg(long)]
    pub skip_embed: bool,
    #[arg(long, env = "MNEMO_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    #[command(flatten)]
    pub local_engine: crate::config::LocalEngineArgs,
    /// Keep the benchmark's project and tenants afterwards.
    #[arg(long)]
    pub keep: bool,
    #[arg(long, default_value = ".mnemo/bench")]
    pub out: PathBuf,
    /// Benchmark context offloading instead of memories (see `--context-*`).
    #[arg(long)]
    pub contexts: bool,
    /// Contexts of 1k–20k tokens offloaded for the throughput figure.
    #[arg(long, default_value_t = 100)]
    pub context_count: usize,
    /// Offload requests in flight.
    #[arg(long, default_value_t = 2)]
    pub context_workers: usize,
    /// Contexts of the tenant that holds many.
    #[arg(long, default_value_t = 10_000)]
    pub tenant_contexts: usize,
    /// Their size in tokens (each between half and one and a half times this).
    #[arg(long, default_value_t = 200)]
    pub tenant_context_tokens: usize,
    /// Reconstructions timed per tenant.
    #[arg(long, default_value_t = 100)]
    pub context_queries: usize,
    /// Token budget of those reconstructions.
    #[arg(long, default_value_t = 4_000)]
    pub token_budget: usize,
}

const DIM: usize = 384;
const K: usize = 10;

fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Tenant sizes following Zipf(s), each at least 1, summing to `total`.
fn zipf_sizes(total: usize, tenants: usize, s: f64) -> Vec<usize> {
    let w: Vec<f64> = (0..tenants)
        .map(|i| 1.0 / ((i + 1) as f64).powf(s))
        .collect();
    let sum: f64 = w.iter().sum();
    let mut sizes: Vec<usize> = w
        .iter()
        .map(|x| ((x / sum) * total as f64).round().max(1.0) as usize)
        .collect();
    let diff = total as i64 - sizes.iter().sum::<usize>() as i64;
    sizes[0] = (sizes[0] as i64 + diff).max(1) as usize;
    sizes
}

struct Dataset {
    sizes: Vec<usize>,
    /// Per tenant, its vectors (memory_id is `m{index}`).
    vectors: Vec<Vec<Vec<f32>>>,
}

fn generate(args: &BenchArgs) -> Dataset {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let centers: Vec<Vec<f32>> = (0..args.clusters)
        .map(|_| normalize((0..DIM).map(|_| gaussian(&mut rng)).collect()))
        .collect();
    let sizes = zipf_sizes(args.memories, args.tenants, args.zipf);
    let vectors = sizes
        .iter()
        .map(|&n| {
            let own: Vec<usize> = (0..4).map(|_| rng.gen_range(0..args.clusters)).collect();
            (0..n)
                .map(|_| {
                    let c = &centers[own[rng.gen_range(0..own.len())]];
                    normalize(c.iter().map(|x| x + 0.06 * gaussian(&mut rng)).collect())
                })
                .collect()
        })
        .collect();
    Dataset { sizes, vectors }
}

fn bucket_of(n: usize) -> usize {
    match n {
        0..=100 => 0,
        101..=10_000 => 1,
        _ => 2,
    }
}

const BUCKETS: [&str; 3] = ["1–100", "101–10k", ">10k"];

struct Query {
    tenant: usize,
    bucket: usize,
    vector: Vec<f32>,
    truth: Vec<String>,
}

fn make_queries(args: &BenchArgs, data: &Dataset) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x9e37);
    let mut out = Vec::new();
    for bucket in 0..3 {
        let tenants: Vec<usize> = (0..data.sizes.len())
            .filter(|&t| bucket_of(data.sizes[t]) == bucket)
            .collect();
        if tenants.is_empty() {
            continue;
        }
        for _ in 0..args.queries {
            let t = tenants[rng.gen_range(0..tenants.len())];
            let base = &data.vectors[t][rng.gen_range(0..data.sizes[t])];
            let vector = normalize(base.iter().map(|x| x + 0.03 * gaussian(&mut rng)).collect());
            let mut scored: Vec<(f32, usize)> = data.vectors[t]
                .iter()
                .enumerate()
                .map(|(i, v)| (-dot(v, &vector), i))
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let truth = scored
                .iter()
                .take(K)
                .map(|(_, i)| format!("m{i}"))
                .collect();
            out.push(Query {
                tenant: t,
                bucket,
                vector,
                truth,
            });
        }
    }
    out
}

fn recall(served: &[String], truth: &[String]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    served.iter().filter(|s| truth.contains(s)).count() as f64 / truth.len() as f64
}

#[derive(Serialize, Clone)]
struct Latency {
    requests: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    qps: f64,
}

fn latency(mut samples: Vec<Duration>, wall: Duration) -> Latency {
    samples.sort();
    let pick = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    Latency {
        requests: samples.len(),
        p50_ms: pick(0.50),
        p95_ms: pick(0.95),
        p99_ms: pick(0.99),
        qps: samples.len() as f64 / wall.as_secs_f64(),
    }
}

#[derive(Serialize)]
struct BucketRecall {
    bucket: &'static str,
    tenants: usize,
    queries: usize,
    mnemo_recall: f64,
    naive_recall: Option<f64>,
    naive_short_results: Option<usize>,
    mnemo_p50_ms: f64,
    mnemo_p99_ms: f64,
    naive_p50_ms: Option<f64>,
    naive_p99_ms: Option<f64>,
    /// The naive design with a B-tree on tenant beside the IVFFlat index (planner's choice).
    naive_btree_recall: Option<f64>,
    naive_btree_p99_ms: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    machine: String,
    memories: usize,
    tenants: usize,
    largest_tenant: usize,
    ingest_seconds: f64,
    ingest_memories_per_s: f64,
    ingest_requests: usize,
    index_build_seconds: f64,
    hnsw_tenants: usize,
    search_c1: Latency,
    search_c16: Latency,
    buckets: Vec<BucketRecall>,
    strategies: serde_json::Value,
    embed_batch1_per_s: Option<f64>,
    embed_batch32_per_s: Option<f64>,
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn post(
        &self,
        path: &str,
        key: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let r = self
            .http
            .post(format!("{}{}", self.url, path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status}: {v}");
        }
        Ok(v)
    }
}

pub async fn run(database_url: &str, args: BenchArgs) -> anyhow::Result<()> {
    if args.contexts {
        return contexts::run(&args).await;
    }
    if args.memories > 1_000_000 || args.tenants == 0 || args.tenants > args.memories {
        bail!("--memories must be ≤ 1,000,000 and ≥ --tenants ≥ 1");
    }
    std::fs::create_dir_all(&args.out)?;
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        url: args.url.trim_end_matches('/').to_owned(),
    });
    eprintln!(
        "bench: generating {} vectors over {} tenants",
        args.memories, args.tenants
    );
    let data = generate(&args);
    let queries = make_queries(&args, &data);

    // Tenants and keys.
    let run_id = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let project = client
        .post(
            "/v1/admin/projects",
            &args.admin_key,
            json!({"name": format!("bench-{run_id}"), "owner_id": "bench"}),
        )
        .await?;
    let project_id = project["id"].as_str().context("project id")?.to_owned();
    eprintln!("bench: creating tenants and keys");
    let keys: Vec<String> = stream::iter(0..args.tenants)
        .map(|t| {
            let (client, admin, project_id, run_id) = (
                client.clone(),
                args.admin_key.clone(),
                project_id.clone(),
                run_id.clone(),
            );
            async move {
                let tid = format!("bench-{run_id}-{t}");
                client
                    .post(
                        "/v1/admin/tenants",
                        &admin,
                        json!({"tenant_id": tid, "project_id": project_id, "name": tid}),
                    )
                    .await?;
                let k = client
                    .post(
                        &format!("/v1/admin/tenants/{tid}/keys"),
                        &admin,
                        json!({"name": "bench", "scopes": ["*"]}),
                    )
                    .await?;
                anyhow::Ok(k["secret"].as_str().context("secret")?.to_owned())
            }
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    // Ingest.
    // Bodies are built as the stream pulls them (at a million memories, all of them at once
    // would not fit in memory); building them is part of the measured ingest.
    let batches: Vec<(usize, usize)> = data
        .vectors
        .iter()
        .enumerate()
        .flat_map(|(t, vs)| (0..vs.len().div_ceil(args.batch)).map(move |c| (t, c)))
        .collect();
    let ingest_requests = batches.len();
    eprintln!("bench: ingesting in {ingest_requests} HTTP batches");
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = stream::iter(batches)
        .map(|(t, c)| {
            let start = c * args.batch;
            let chunk = &data.vectors[t][start..(start + args.batch).min(data.sizes[t])];
            let memories: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let n = start + i;
                    json!({"memory_id": format!("m{n}"), "content": {"text": format!("bench memory {n} of tenant {t}")}, "embedding": v})
                })
                .collect();
            let body = json!({ "memories": memories });
            let (client, key) = (client.clone(), keys[t].clone());
            async move { client.post("/v1/memories/batch", &key, body).await.map(|_| ()) }
        })
        .buffer_unordered(args.ingest_workers)
        .collect()
        .await;
    let ingest = started.elapsed();
    for r in results {
        r?;
    }
    eprintln!(
        "bench: ingested in {:.1}s; building per-tenant vector indexes",
        ingest.as_secs_f64()
    );
    // Each maintenance run builds a few indexes; run it until it builds none.
    let started = Instant::now();
    let mut hnsw_tenants = 0;
    loop {
        let m = client
            .post("/v1/admin/maintenance", &args.admin_key, json!({}))
            .await?;
        hnsw_tenants = m["vector_indexes"]["indexed_tenants"]
            .as_u64()
            .unwrap_or(hnsw_tenants as u64) as usize;
        if m["vector_indexes"]["built"]
            .as_array()
            .is_none_or(|b| b.is_empty())
        {
            break;
        }
    }
    let index_build = started.elapsed();

    // Search over HTTP.
    let search = |q: &Query| {
        let (client, key) = (client.clone(), keys[q.tenant].clone());
        let body = json!({"vector": q.vector, "k": K, "mode": "vector"});
        async move {
            let t = Instant::now();
            let v = client.post("/v1/memories/search", &key, body).await?;
            let took = t.elapsed();
            let ids: Vec<String> = v["results"]
                .as_array()
                .context("results")?
                .iter()
                .filter_map(|r| r["memory"]["memory_id"].as_str().map(str::to_owned))
                .collect();
            anyhow::Ok((took, ids, v["strategy"].as_str().unwrap_or("").to_owned()))
        }
    };
    // Warm-up: connections, plan caches.
    for q in queries.iter().take(50) {
        search(q).await?;
    }
    eprintln!("bench: {} queries at concurrency 1", queries.len());
    let started = Instant::now();
    let mut c1 = Vec::new();
    for q in &queries {
        c1.push(search(q).await?);
    }
    let c1_wall = started.elapsed();
    eprintln!("bench: {} queries at concurrency 16", queries.len() * 4);
    let started = Instant::now();
    let c16: Vec<anyhow::Result<_>> = stream::iter(queries.iter().cycle().take(queries.len() * 4))
        .map(search)
        .buffer_unordered(16)
        .collect()
        .await;
    let c16_wall = started.elapsed();
    let c16: Vec<Duration> = c16
        .into_iter()
        .map(|r| r.map(|x| x.0))
        .collect::<Result<_, _>>()?;

    let mut strategies = std::collections::BTreeMap::<String, usize>::new();
    for (_, _, s) in &c1 {
        *strategies.entry(s.clone()).or_default() += 1;
    }

    // The seed's naive design on the same data and queries.
    let (naive, naive_btree) = if args.skip_naive {
        (None, None)
    } else {
        let (a, b) = naive_design(database_url, &data, &queries, &run_id).await?;
        (Some(a), Some(b))
    };

    let mut buckets = Vec::new();
    for (b, &name) in BUCKETS.iter().enumerate() {
        let idx: Vec<usize> = (0..queries.len())
            .filter(|&i| queries[i].bucket == b)
            .collect();
        if idx.is_empty() {
            continue;
        }
        let mean =
            |f: &dyn Fn(usize) -> f64| idx.iter().map(|&i| f(i)).sum::<f64>() / idx.len() as f64;
        let lat = latency(
            idx.iter().map(|&i| c1[i].0).collect(),
            Duration::from_secs(1),
        );
        let naive_lat = naive.as_ref().map(|n| {
            latency(
                idx.iter().map(|&i| n[i].0).collect(),
                Duration::from_secs(1),
            )
        });
        buckets.push(BucketRecall {
            bucket: name,
            tenants: data.sizes.iter().filter(|&&n| bucket_of(n) == b).count(),
            queries: idx.len(),
            mnemo_recall: mean(&|i| recall(&c1[i].1, &queries[i].truth)),
            naive_recall: naive
                .as_ref()
                .map(|n| mean(&|i| recall(&n[i].1, &queries[i].truth))),
            naive_short_results: naive.as_ref().map(|n| {
                idx.iter()
                    .filter(|&&i| n[i].1.len() < queries[i].truth.len())
                    .count()
            }),
            mnemo_p50_ms: lat.p50_ms,
            mnemo_p99_ms: lat.p99_ms,
            naive_p50_ms: naive_lat.as_ref().map(|l| l.p50_ms),
            naive_p99_ms: naive_lat.as_ref().map(|l| l.p99_ms),
            naive_btree_recall: naive_btree
                .as_ref()
                .map(|n| mean(&|i| recall(&n[i].1, &queries[i].truth))),
            naive_btree_p99_ms: naive_btree.as_ref().map(|n| {
                latency(
                    idx.iter().map(|&i| n[i].0).collect(),
                    Duration::from_secs(1),
                )
                .p99_ms
            }),
        });
    }

    let (embed1, embed32) = if args.skip_embed {
        (None, None)
    } else {
        embed_throughput(args.model_dir.as_deref(), &args.local_engine).await?
    };

    let report = Report {
        machine: machine(),
        memories: args.memories,
        tenants: args.tenants,
        largest_tenant: data.sizes[0],
        ingest_seconds: ingest.as_secs_f64(),
        ingest_memories_per_s: args.memories as f64 / ingest.as_secs_f64(),
        ingest_requests,
        index_build_seconds: index_build.as_secs_f64(),
        hnsw_tenants,
        search_c1: latency(c1.iter().map(|x| x.0).collect(), c1_wall),
        search_c16: latency(c16, c16_wall),
        buckets,
        strategies: json!(strategies),
        embed_batch1_per_s: embed1,
        embed_batch32_per_s: embed32,
    };
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report);
    std::fs::write(args.out.join("report.md"), &md)?;
    println!("{md}");
    eprintln!("bench: wrote {}/report.{{json,md}}", args.out.display());

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

type NaiveResult = Vec<(Duration, Vec<String>)>;

/// The seed's design on the same data: one global IVFFlat index (lists = √N, probes = 1) and a
/// `WHERE tenant = …` filter. Runs the queries twice: with the IVFFlat index alone, and with a
/// B-tree on tenant beside it (where the planner may prefer an exact scan).
async fn naive_design(
    database_url: &str,
    data: &Dataset,
    queries: &[Query],
    run_id: &str,
) -> anyhow::Result<(NaiveResult, NaiveResult)> {
    use pgvector::Vector;
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .context("naive design needs DATABASE_URL")?;
    let table = format!("bench_naive_{run_id}");
    eprintln!("bench: loading the naive design ({table})");
    sqlx::query(&format!(
        "CREATE UNLOGGED TABLE {table} (tenant int NOT NULL, memory_id text NOT NULL, embedding vector(384) NOT NULL)"
    ))
    .execute(&mut conn)
    .await?;
    let rows: Vec<(i32, String, Vector)> = data
        .vectors
        .iter()
        .enumerate()
        .flat_map(|(t, vs)| {
            vs.iter()
                .enumerate()
                .map(move |(i, v)| (t as i32, format!("m{i}"), Vector::from(v.clone())))
        })
        .collect();
    for chunk in rows.chunks(5000) {
        let tenants: Vec<i32> = chunk.iter().map(|r| r.0).collect();
        let ids: Vec<String> = chunk.iter().map(|r| r.1.clone()).collect();
        let vectors: Vec<Vector> = chunk.iter().map(|r| r.2.clone()).collect();
        sqlx::query(&format!(
            "INSERT INTO {table} SELECT * FROM unnest($1::int[], $2::text[], $3::vector[])"
        ))
        .bind(tenants)
        .bind(ids)
        .bind(vectors)
        .execute(&mut conn)
        .await?;
    }
    let lists = ((rows.len() as f64).sqrt().round() as i64).max(1);
    sqlx::query("SET maintenance_work_mem = '1GB'")
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!(
        "CREATE INDEX ON {table} USING ivfflat (embedding vector_cosine_ops) WITH (lists = {lists})"
    ))
    .execute(&mut conn)
    .await?;
    sqlx::query(&format!("ANALYZE {table}"))
        .execute(&mut conn)
        .await?;
    let sql = format!(
        "SELECT memory_id FROM {table} WHERE tenant = $1 ORDER BY embedding <=> $2 LIMIT {K}"
    );
    let ivfflat_only = naive_queries(&mut conn, &sql, queries).await?;
    sqlx::query(&format!("CREATE INDEX ON {table} (tenant)"))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("ANALYZE {table}"))
        .execute(&mut conn)
        .await?;
    let with_btree = naive_queries(&mut conn, &sql, queries).await?;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&mut conn)
        .await?;
    Ok((ivfflat_only, with_btree))
}

async fn naive_queries(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    queries: &[Query],
) -> anyhow::Result<NaiveResult> {
    use pgvector::Vector;
    let run = async |conn: &mut sqlx::PgConnection, q: &Query| -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(sql)
            .bind(q.tenant as i32)
            .bind(Vector::from(q.vector.clone()))
            .fetch_all(conn)
            .await?)
    };
    for q in queries.iter().take(20) {
        run(&mut *conn, q).await?;
    }
    let mut out = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let ids = run(&mut *conn, q).await?;
        out.push((t.elapsed(), ids));
    }
    Ok(out)
}

async fn embed_throughput(
    dir: Option<&std::path::Path>,
    engine: &crate::config::LocalEngineArgs,
) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    use mnemo_embed::Embedder;
    let Some(dir) = dir else {
        eprintln!("bench: MNEMO_MODEL_DIR not set; skipping embedding throughput");
        return Ok((None, None));
    };
    let dir = dir.to_owned();
    let backend = engine.backend()?;
    eprintln!("bench: local embedding on {}", backend.name());
    let model = tokio::task::spawn_blocking(move || mnemo_embed::MiniLm::load_with(&dir, &backend))
        .await??;
    let words = [
        "memory", "agent", "user", "prefers", "dark", "mode", "meeting", "moved", "to", "tuesday",
        "the", "report", "was", "late", "because", "of", "rain",
    ];
    let mut rng = StdRng::seed_from_u64(7);
    let sentence = |rng: &mut StdRng| {
        (0..12)
            .map(|_| words[rng.gen_range(0..words.len())])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let texts: Vec<String> = (0..256).map(|_| sentence(&mut rng)).collect();
    model.embed(texts[..8].to_vec()).await?;
    let t = Instant::now();
    for s in &texts[..64] {
        model.embed(vec![s.clone()]).await?;
    }
    let b1 = 64.0 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in texts.chunks(32) {
        model.embed(chunk.to_vec()).await?;
    }
    let b32 = texts.len() as f64 / t.elapsed().as_secs_f64();
    Ok((Some(b1), Some(b32)))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

fn markdown(r: &Report) -> String {
    let opt =
        |v: Option<f64>, d: usize| v.map(|x| format!("{x:.d$}")).unwrap_or_else(|| "–".into());
    let mut s = format!(
        "## Mnemo benchmark\n\nMachine: {}. {} memories over {} tenants (Zipf; largest {}), supplied 384-dim clustered vectors.\n\n\
         | metric | value |\n|---|---|\n\
         | ingest (HTTP batches of ≤ 1,000, supplied vectors) | {:.0} memories/s ({} requests, {:.1} s) |\n\
         | per-tenant HNSW build (maintenance run) | {:.1} s, {} tenants indexed |\n\
         | search, concurrency 1 | p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, {:.0} QPS |\n\
         | search, concurrency 16 | p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, {:.0} QPS |\n\
         | local embedding (MiniLM, ~12 words) | batch 1: {} /s, batch 32: {} /s |\n\n\
         Recall@10 against exact brute force, per tenant-size bucket. Mnemo over HTTP; naive = the seed's design in SQL, \
         one global IVFFlat index (lists = √N, probes = 1) with `WHERE tenant = …`; naive+B-tree = the same with a B-tree \
         on tenant beside it, where the planner may choose an exact scan instead:\n\n\
         | bucket | tenants | queries | Mnemo recall@10 | naive recall@10 | naive short lists | naive+B-tree recall@10 | Mnemo p50 / p99 ms (HTTP) | naive p50 / p99 ms (SQL) | naive+B-tree p99 ms (SQL) |\n|---|---|---|---|---|---|---|---|---|---|\n",
        r.machine, r.memories, r.tenants, r.largest_tenant, r.ingest_memories_per_s, r.ingest_requests, r.ingest_seconds,
        r.index_build_seconds, r.hnsw_tenants,
        r.search_c1.p50_ms, r.search_c1.p95_ms, r.search_c1.p99_ms, r.search_c1.qps,
        r.search_c16.p50_ms, r.search_c16.p95_ms, r.search_c16.p99_ms, r.search_c16.qps,
        opt(r.embed_batch1_per_s, 0), opt(r.embed_batch32_per_s, 0),
    );
    for b in &r.buckets {
        s += &format!(
            "| {} | {} | {} | {:.3} | {} | {} | {} | {:.2} / {:.2} | {} / {} | {} |\n",
            b.bucket,
            b.tenants,
            b.queries,
            b.mnemo_recall,
            opt(b.naive_recall, 3),
            b.naive_short_results
                .map(|n| n.to_string())
                .unwrap_or_else(|| "–".into()),
            opt(b.naive_btree_recall, 3),
            b.mnemo_p50_ms,
            b.mnemo_p99_ms,
            opt(b.naive_p50_ms, 2),
            opt(b.naive_p99_ms, 2),
            opt(b.naive_btree_p99_ms, 2),
        );
    }
    s += &format!(
        "\nSearch strategies used at concurrency 1: {}\n",
        r.strategies
    );
    s
}
