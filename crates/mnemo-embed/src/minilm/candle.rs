//! The candle engine: BERT from `model.safetensors` run by candle, then mean over the attention
//! mask and L2 normalization. The fallback when ONNX Runtime is not provisioned.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};

use super::text::Padded;

pub(super) struct CandleBert {
    bert: BertModel,
    pad_id: u32,
}

impl CandleBert {
    /// Loads `config.json` and `model.safetensors` from `dir`, refusing weights whose SHA-256 is
    /// not `expected_sha256` or whose hidden size is not `expected_dim`.
    pub(super) fn load(
        dir: &Path,
        expected_sha256: &str,
        expected_dim: usize,
    ) -> Result<Self, String> {
        let config_path = dir.join("config.json");
        let config = std::fs::read_to_string(&config_path)
            .map_err(|e| format!("{}: {e}", config_path.display()))
            .and_then(|text| {
                serde_json::from_str::<Config>(&text)
                    .map_err(|e| format!("{}: {e}", config_path.display()))
            })?;
        if config.hidden_size != expected_dim {
            return Err(format!(
                "config.json has hidden_size {}, expected {expected_dim}",
                config.hidden_size
            ));
        }
        let pad_id = u32::try_from(config.pad_token_id)
            .map_err(|_| format!("pad_token_id {} is too large", config.pad_token_id))?;

        let weights_path = dir.join("model.safetensors");
        let weights =
            std::fs::read(&weights_path).map_err(|e| format!("{}: {e}", weights_path.display()))?;
        let actual_sha256 = format!("{:x}", Sha256::digest(&weights));
        if actual_sha256 != expected_sha256 {
            return Err(format!(
                "model.safetensors has SHA-256 {actual_sha256}, expected {expected_sha256}"
            ));
        }
        // Buffered rather than memory-mapped: mapping is `unsafe`, which the workspace forbids,
        // and the 91 MB copy is read once at startup.
        let vars = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| format!("{}: {e}", weights_path.display()))?;
        let bert = BertModel::load(vars, &config)
            .map_err(|e| format!("{}: {e}", weights_path.display()))?;
        Ok(Self { bert, pad_id })
    }

    /// One unit vector per sequence of `batch` (non-empty, each at most 256 tokens).
    pub(super) fn forward(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let Padded {
            rows,
            width,
            ids,
            mask,
        } = Padded::new(batch, self.pad_id);
        let ids = Tensor::from_vec(ids, (rows, width), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (rows, width), &Device::Cpu)?;
        let token_types = ids.zeros_like()?;

        let hidden = self.bert.forward(&ids, &token_types, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}
