//! Integration tests through the public surface of `mnemo-embed`.
//!
//! - [`minilm`]: the real all-MiniLM-L6-v2 weights from `MNEMO_MODEL_DIR` on candle
//!   (`eval "$(bash scripts/env.sh)"` provisions them and sets the variable).
//! - [`onnx`]: the same model on ONNX Runtime, from `MNEMO_ONNX_MODEL` and `MNEMO_ONNX_RUNTIME`
//!   (provisioned by the same script).
//! - [`http`]: `HttpEmbedder` against a local axum server.

mod http;
mod minilm;
mod onnx;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}
