use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use mnemo_embed::{EmbedError, Embedder, MiniLm, MAX_TEXTS_PER_CALL};
use serde::Deserialize;

use crate::cosine;

pub(crate) fn model_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("MNEMO_MODEL_DIR").expect(
        "MNEMO_MODEL_DIR is not set: run `eval \"$(bash scripts/env.sh)\"` \
         in the workspace root first",
    ))
}

/// One model for the whole test binary: its worker thread outlives each test's runtime.
fn model() -> Arc<dyn Embedder> {
    static MODEL: OnceLock<Arc<MiniLm>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let model = MiniLm::load(&model_dir());
            Arc::new(model.expect("loading the model from MNEMO_MODEL_DIR"))
        })
        .clone()
}

async fn embed_one(model: &dyn Embedder, text: &str) -> Vec<f32> {
    let mut vectors = model
        .embed(vec![text.to_owned()])
        .await
        .expect("embedding one text");
    vectors.pop().expect("one vector per text")
}

#[derive(Deserialize)]
pub(crate) struct Reference {
    pub items: Vec<ReferenceItem>,
}

#[derive(Deserialize)]
pub(crate) struct ReferenceItem {
    pub sentence: String,
    pub n_tokens: usize,
    pub embedding: Vec<f32>,
}

pub(crate) fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/minilm-reference.json"
    );
    let text = std::fs::read_to_string(path).expect("reading tests/data/minilm-reference.json");
    serde_json::from_str(&text).expect("parsing tests/data/minilm-reference.json")
}

#[tokio::test]
async fn minilm_matches_the_numpy_reference_vectors() {
    let model = model();
    let reference = reference();
    assert_eq!(reference.items.len(), 20);
    assert!(
        reference.items.iter().any(|item| item.n_tokens >= 256),
        "the reference set should cover truncation"
    );

    let sentences = reference
        .items
        .iter()
        .map(|item| item.sentence.clone())
        .collect();
    let vectors = model
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
async fn minilm_reports_its_dimension_and_name() {
    let model = model();
    assert_eq!(model.dim(), 384);
    assert_eq!(model.model_name(), "sentence-transformers/all-MiniLM-L6-v2");
}

#[tokio::test]
async fn paraphrases_score_far_above_unrelated_sentences() {
    let model = model();
    let eating = embed_one(model.as_ref(), "A man is eating food.").await;
    let bread = embed_one(model.as_ref(), "A man is eating a piece of bread.").await;
    let baby = embed_one(model.as_ref(), "The girl is carrying a baby.").await;

    let paraphrase = cosine(&eating, &bread);
    let unrelated = cosine(&eating, &baby);
    assert!(
        (paraphrase - 0.7553).abs() <= 0.01,
        "paraphrase cosine {paraphrase}"
    );
    assert!(unrelated < 0.1, "unrelated cosine {unrelated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_give_the_same_vectors_as_sequential_calls() {
    let model = model();
    let requests: Vec<Vec<String>> = (0..16)
        .map(|task| {
            (0..=task % 5)
                .map(|i| {
                    format!(
                        "Task {task} asks about topic {i}: {}",
                        "word ".repeat(task + i)
                    )
                })
                .collect()
        })
        .collect();

    let mut sequential = Vec::new();
    for texts in &requests {
        sequential.push(model.embed(texts.clone()).await.expect("sequential call"));
    }

    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|texts| {
            let model = Arc::clone(&model);
            tokio::spawn(async move { model.embed(texts).await })
        })
        .collect();
    for (task, expected) in tasks.into_iter().zip(&sequential) {
        let concurrent = task
            .await
            .expect("task ran to completion")
            .expect("concurrent call");
        assert_eq!(concurrent.len(), expected.len());
        for (a, b) in concurrent.iter().zip(expected) {
            // Coalesced batches pad differently, which moves the last bits of a float.
            let largest_gap = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(largest_gap < 1e-5, "vectors differ by {largest_gap}");
        }
    }
}

#[tokio::test]
async fn empty_text_gets_a_unit_vector() {
    let vector = embed_one(model().as_ref(), "").await;
    assert_eq!(vector.len(), 384);
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
}

#[tokio::test]
async fn no_texts_give_no_vectors() {
    let vectors = model().embed(Vec::new()).await.expect("empty call");
    assert!(vectors.is_empty());
}

#[tokio::test]
async fn huge_text_is_truncated_not_refused() {
    let model = model();
    let head = "The archive holds invoices, contracts and letters. ".repeat(60);
    let huge = format!("{head}{}", "tail ".repeat(400_000));
    let truncated = embed_one(model.as_ref(), &huge).await;
    let prefix_only = embed_one(model.as_ref(), &head).await;
    assert!(cosine(&truncated, &prefix_only) > 0.9999);
}

#[tokio::test]
async fn more_than_the_call_limit_is_refused() {
    let texts = vec!["hello".to_owned(); MAX_TEXTS_PER_CALL + 1];
    let error = model().embed(texts).await.expect_err("over the limit");
    assert_eq!(
        error,
        EmbedError::TooManyTexts {
            got: MAX_TEXTS_PER_CALL + 1,
            max: MAX_TEXTS_PER_CALL
        }
    );
}

#[tokio::test]
async fn a_full_call_of_the_limit_is_answered_in_order() {
    let model = model();
    let texts: Vec<String> = (0..MAX_TEXTS_PER_CALL)
        .map(|i| format!("sentence number {i} {}", "x ".repeat(i % 40)))
        .collect();
    let vectors = model.embed(texts.clone()).await.expect("full call");
    assert_eq!(vectors.len(), MAX_TEXTS_PER_CALL);
    for i in [0, 37, 128, MAX_TEXTS_PER_CALL - 1] {
        let alone = embed_one(model.as_ref(), &texts[i]).await;
        assert!(
            cosine(&vectors[i], &alone) > 0.9999,
            "text {i} out of order"
        );
    }
}

#[test]
fn loading_from_a_directory_without_the_model_fails_clearly() {
    let dir = std::env::temp_dir().join("mnemo-embed-no-model-here");
    let error = MiniLm::load(&dir).expect_err("no model there");
    assert!(
        matches!(&error, EmbedError::ModelLoad { reason, .. } if reason.contains("config.json")),
        "unexpected error: {error}"
    );
}

#[test]
fn token_counts_match_the_reference_and_are_not_truncated() {
    let model = model();
    assert_eq!(model.max_input_tokens(), Some(256));
    for item in reference().items {
        let counted = model.count_tokens(&item.sentence).expect("a count");
        if item.n_tokens < 256 {
            assert_eq!(counted, item.n_tokens, "{:?}", item.sentence);
        } else {
            // The reference was truncated at 256; the count is of the whole text.
            assert!(counted > 256, "{counted} for a text the model truncates");
        }
    }
    assert_eq!(model.count_tokens(""), Some(2), "[CLS] and [SEP]");
}
