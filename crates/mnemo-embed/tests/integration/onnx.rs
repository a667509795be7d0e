//! The ONNX Runtime backend, on the files `scripts/env.sh` provisions (`MNEMO_ONNX_MODEL`,
//! `MNEMO_ONNX_RUNTIME`). The worker, batching and truncation are shared with candle and tested
//! in [`crate::minilm`]; these tests prove the engine computes the same vectors and refuses a
//! graph that is not the one exported from the pinned weights.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use mnemo_embed::{Backend, EmbedError, Embedder, MiniLm, OnnxConfig};

use crate::cosine;
use crate::minilm::{model_dir, reference};

fn onnx_config() -> OnnxConfig {
    let path = |name: &str| {
        PathBuf::from(std::env::var_os(name).unwrap_or_else(|| {
            panic!("{name} is not set: run `eval \"$(bash scripts/env.sh)\"` in the workspace root first")
        }))
    };
    OnnxConfig {
        model: path("MNEMO_ONNX_MODEL"),
        runtime: path("MNEMO_ONNX_RUNTIME"),
        threads: 2,
    }
}

/// One model for the whole test binary: its worker thread outlives each test's runtime.
fn model() -> Arc<dyn Embedder> {
    static MODEL: OnceLock<Arc<MiniLm>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let model = MiniLm::load_with(&model_dir(), &Backend::Onnx(onnx_config()));
            Arc::new(model.expect("loading the ONNX backend from MNEMO_ONNX_MODEL"))
        })
        .clone()
}

#[tokio::test]
async fn onnx_backend_matches_the_numpy_reference_vectors() {
    let reference = reference();
    assert!(
        reference.items.iter().any(|item| item.n_tokens >= 256),
        "the reference set should cover truncation"
    );
    let sentences = reference
        .items
        .iter()
        .map(|item| item.sentence.clone())
        .collect();
    let vectors = model()
        .embed(sentences)
        .await
        .expect("embedding the reference");

    assert_eq!(vectors.len(), reference.items.len());
    for (item, vector) in reference.items.iter().zip(&vectors) {
        assert_eq!(vector.len(), 384);
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "norm {norm} for {:?}",
            item.sentence
        );
        let similarity = cosine(vector, &item.embedding);
        assert!(
            similarity >= 0.9999,
            "cosine {similarity} to the reference for {:?}",
            item.sentence
        );
    }
}

#[tokio::test]
async fn onnx_backend_embeds_each_text_alone_as_in_a_padded_batch() {
    let model = model();
    let texts: Vec<String> = reference()
        .items
        .iter()
        .map(|item| item.sentence.clone())
        .collect();
    let batched = model.embed(texts.clone()).await.expect("batch");
    for (text, in_batch) in texts.into_iter().zip(&batched) {
        let alone = model.embed(vec![text.clone()]).await.expect("one text");
        assert!(
            cosine(&alone[0], in_batch) > 0.99999,
            "padding changed the vector of {text:?}"
        );
    }
}

#[tokio::test]
async fn onnx_backend_reports_the_same_model_name_as_candle() {
    let model = model();
    assert_eq!(model.dim(), 384);
    assert_eq!(model.model_name(), "sentence-transformers/all-MiniLM-L6-v2");
}

/// A folder holding the provisioned `model.onnx` (linked, not copied) and the given manifest.
fn graph_with_manifest(name: &str, manifest: &serde_json::Value) -> OnnxConfig {
    let real = onnx_config();
    let dir = std::env::temp_dir().join(format!("mnemo-embed-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = dir.join("model.onnx");
    let _ = std::fs::remove_file(&model);
    std::os::unix::fs::symlink(&real.model, &model).expect("link model.onnx");
    std::fs::write(dir.join("export.json"), manifest.to_string()).expect("write export.json");
    OnnxConfig { model, ..real }
}

fn real_manifest() -> serde_json::Value {
    let path = onnx_config().model.with_file_name("export.json");
    let text = std::fs::read_to_string(&path).expect("reading the provisioned export.json");
    serde_json::from_str(&text).expect("parsing export.json")
}

fn load_error(config: OnnxConfig) -> String {
    match MiniLm::load_with(&model_dir(), &Backend::Onnx(config)) {
        Err(EmbedError::ModelLoad { reason, .. }) => reason,
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("the graph was accepted"),
    }
}

#[test]
fn onnx_backend_refuses_a_graph_exported_from_other_weights() {
    let mut manifest = real_manifest();
    manifest["source_sha256"] = "0".repeat(64).into();
    let reason = load_error(graph_with_manifest("other-weights", &manifest));
    assert!(reason.contains("exported from weights"), "{reason}");
}

#[test]
fn onnx_backend_refuses_a_graph_changed_since_its_export() {
    let mut manifest = real_manifest();
    manifest["onnx_sha256"] = "0".repeat(64).into();
    let reason = load_error(graph_with_manifest("changed-graph", &manifest));
    assert!(reason.contains("re-run scripts/env.sh"), "{reason}");
}

#[test]
fn onnx_backend_without_its_runtime_library_fails_clearly() {
    let config = OnnxConfig {
        runtime: Path::new("/nonexistent/libonnxruntime.so").to_path_buf(),
        ..onnx_config()
    };
    let reason = load_error(config);
    assert!(reason.contains("libonnxruntime.so"), "{reason}");
}
