//! The ONNX Runtime engine: `model.onnx` (written at provisioning from the same
//! `model.safetensors` by `scripts/export-minilm-onnx.py`, pooling and normalization inside the
//! graph) run by `libonnxruntime` from the PyPI `onnxruntime` wheel, loaded at startup.
//!
//! About twice candle's throughput on the same cores: fused attention, LayerNorm and GELU kernels
//! and MLAS matrix products.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::text::Padded;

/// Where the ONNX Runtime engine finds its files, and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxConfig {
    /// `model.onnx`, with the `export.json` the exporter writes beside it.
    pub model: PathBuf,
    /// The ONNX Runtime shared library, `libonnxruntime.so.1.*`.
    pub runtime: PathBuf,
    /// Threads of one forward pass (ONNX Runtime's intra-op pool).
    pub threads: usize,
}

/// What the exporter records beside `model.onnx`.
#[derive(Deserialize)]
struct ExportManifest {
    /// SHA-256 of the `model.safetensors` the graph's weights were copied from.
    source_sha256: String,
    /// SHA-256 of `model.onnx` as written.
    onnx_sha256: String,
}

/// The subset of `config.json` this engine needs (the graph holds the rest).
#[derive(Deserialize)]
struct BertConfig {
    hidden_size: usize,
    pad_token_id: u32,
}

/// ONNX Runtime allows one environment per process, and one library behind it.
static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

fn environment(runtime: &Path) -> Result<Environment, String> {
    let mut slot = ENVIRONMENT
        .lock()
        .map_err(|_| "the ONNX Runtime environment lock is poisoned".to_owned())?;
    if let Some((loaded, environment)) = slot.as_ref() {
        if loaded != runtime {
            return Err(format!(
                "ONNX Runtime is already loaded from {} in this process",
                loaded.display()
            ));
        }
        return Ok(environment.clone());
    }
    let environment = ort::init_from(runtime)
        .map_err(|e| e.to_string())?
        .with_name("mnemo")
        .build()
        .map_err(|e| format!("starting ONNX Runtime from {}: {e}", runtime.display()))?;
    *slot = Some((runtime.to_path_buf(), environment.clone()));
    Ok(environment)
}

/// Threads wait for work by sleeping, not spinning: the service shares its cores with
/// PostgreSQL and the HTTP handlers, and with the cores busy, spinning workers cost a batch of
/// 32 a third of its throughput (measured 64/s spinning vs 100/s not, load ~7 on 2 cores).
fn session(environment: &Environment, graph: &[u8], threads: usize) -> ort::Result<Session> {
    Session::builder(environment)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(threads.max(1))?
        .with_inter_threads(1)?
        .with_intra_op_spinning(false)?
        .commit_from_memory(graph)
}

pub(super) struct OnnxBert {
    session: Session,
    pad_id: u32,
    dim: usize,
}

impl OnnxBert {
    /// Loads `config.json` from `dir` and the graph named by `config`, refusing a graph whose
    /// manifest says it was exported from other weights than `expected_sha256`, or whose bytes
    /// are not those the exporter wrote.
    pub(super) fn load(
        dir: &Path,
        config: &OnnxConfig,
        expected_sha256: &str,
        expected_dim: usize,
    ) -> Result<Self, String> {
        let config_path = dir.join("config.json");
        let bert: BertConfig = std::fs::read_to_string(&config_path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        if bert.hidden_size != expected_dim {
            return Err(format!(
                "config.json has hidden_size {}, expected {expected_dim}",
                bert.hidden_size
            ));
        }

        let manifest_path = config.model.with_file_name("export.json");
        let manifest: ExportManifest = std::fs::read_to_string(&manifest_path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
        if manifest.source_sha256 != expected_sha256 {
            return Err(format!(
                "{} was exported from weights with SHA-256 {}, expected {expected_sha256}",
                config.model.display(),
                manifest.source_sha256
            ));
        }
        let graph =
            std::fs::read(&config.model).map_err(|e| format!("{}: {e}", config.model.display()))?;
        let actual = format!("{:x}", Sha256::digest(&graph));
        if actual != manifest.onnx_sha256 {
            return Err(format!(
                "{} has SHA-256 {actual}, but {} records {}: re-run scripts/env.sh",
                config.model.display(),
                manifest_path.display(),
                manifest.onnx_sha256
            ));
        }

        let environment = environment(&config.runtime)?;
        let session = session(&environment, &graph, config.threads)
            .map_err(|e| format!("{}: {e}", config.model.display()))?;
        Ok(Self {
            session,
            pad_id: bert.pad_token_id,
            dim: expected_dim,
        })
    }

    /// One unit vector per sequence of `batch` (non-empty, each at most 256 tokens).
    pub(super) fn forward(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let Padded {
            rows,
            width,
            ids,
            mask,
        } = Padded::new(batch, self.pad_id);
        let to_i32 = |values: Vec<u32>| -> Result<Vec<i32>, String> {
            values
                .into_iter()
                .map(|v| i32::try_from(v).map_err(|_| format!("token id {v} out of range")))
                .collect()
        };
        let ids = Tensor::from_array(([rows, width], to_i32(ids)?)).map_err(|e| e.to_string())?;
        let mask = Tensor::from_array(([rows, width], to_i32(mask)?)).map_err(|e| e.to_string())?;
        let outputs = self
            .session
            .run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])
            .map_err(|e| e.to_string())?;
        let (_, data) = outputs["sentence_embedding"]
            .try_extract_tensor::<f32>()
            .map_err(|e| e.to_string())?;
        if data.len() != rows * self.dim {
            return Err(format!(
                "the graph returned {} values for {rows} rows of {}",
                data.len(),
                self.dim
            ));
        }
        Ok(data.chunks_exact(self.dim).map(<[f32]>::to_vec).collect())
    }
}
