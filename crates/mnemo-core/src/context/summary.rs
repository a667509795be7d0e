//! Extractive summary: the sentences closest to what the whole context is about.
//!
//! Each candidate sentence is scored by the cosine similarity of its embedding to the centroid of
//! all candidates' (unit-normalized) embeddings: the centroid is the context's average meaning, so
//! the sentences nearest to it are the most representative ones. Sentences are taken best first
//! while they fit the size limit, skipping near-duplicates of one already taken (cosine above
//! [`NEAR_DUPLICATE`]), and returned in their original order so the summary reads like the
//! transcript. The caller embeds the candidates; [`candidate_sentences`] picks them so that a
//! 100k-token context costs a bounded number of embeddings.

use super::input::Message;
use super::sentences;
use super::tokens::TokenizerKind;

/// Two sentences this similar say the same thing; the summary keeps only the first taken.
pub const NEAR_DUPLICATE: f32 = 0.95;

/// How large a summary may be, counted on the final text ([`render`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryLimit {
    Chars(usize),
    Tokens(usize, TokenizerKind),
}

impl SummaryLimit {
    fn measure(self, text: &str) -> usize {
        match self {
            SummaryLimit::Chars(_) => text.chars().count(),
            SummaryLimit::Tokens(_, kind) => kind.count(text),
        }
    }

    fn max(self) -> usize {
        match self {
            SummaryLimit::Chars(n) | SummaryLimit::Tokens(n, _) => n,
        }
    }
}

/// A sentence that may go into the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummarySentence<'a> {
    /// The message it comes from.
    pub message: u32,
    /// Trimmed sentence text, a slice of the message's content.
    pub text: &'a str,
}

/// Sentences worth summarizing, in order: prose sentences of 20 to 600 bytes (no code blocks,
/// JSON documents, or fragments), at most `max` of them, spread evenly over the context when
/// there are more.
pub fn candidate_sentences(messages: &[Message], max: usize) -> Vec<SummarySentence<'_>> {
    let mut all = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let message = u32::try_from(i).unwrap_or(u32::MAX);
        for r in sentences::split(&m.content) {
            let text = m.content[r].trim();
            let is_code = text.starts_with("```") || text.starts_with("~~~");
            let is_json = text.starts_with('{') || text.starts_with('[');
            if (20..=600).contains(&text.len()) && !is_code && !is_json {
                all.push(SummarySentence { message, text });
            }
        }
    }
    if all.len() <= max {
        return all;
    }
    // An even stride keeps the beginning, middle and end of a long conversation represented.
    (0..max).map(|k| all[k * all.len() / max].clone()).collect()
}

/// Indices (ascending) of the sentences that form the summary of `sentences`, whose embeddings are
/// `embeddings[i]` (same length, any scale). The rendered summary fits `limit`.
pub fn summarize(sentences: &[&str], embeddings: &[&[f32]], limit: SummaryLimit) -> Vec<usize> {
    let n = sentences.len().min(embeddings.len());
    let units: Vec<Vec<f32>> = embeddings[..n].iter().map(|e| normalized(e)).collect();
    let Some(dim) = units.first().map(Vec::len) else {
        return Vec::new();
    };
    let mut centroid = vec![0.0f32; dim];
    for u in &units {
        for (c, x) in centroid.iter_mut().zip(u) {
            *c += x;
        }
    }
    let centroid = normalized(&centroid);
    let mut order: Vec<usize> = (0..n).collect();
    let score = |i: usize| dot(&units[i], &centroid);
    order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));

    let mut picked: Vec<usize> = Vec::new();
    let mut size = 0;
    for i in order {
        if picked
            .iter()
            .any(|&j| dot(&units[i], &units[j]) > NEAR_DUPLICATE)
        {
            continue;
        }
        // Measured on the piece plus its separator; additive for characters, an estimate for
        // tokens that the final check below corrects.
        let cost = limit.measure(sentences[i]) + 1;
        if size + cost <= limit.max() + 1 {
            size += cost;
            picked.push(i);
        }
    }
    // Token counts of a concatenation are not sums: drop the least central until it fits.
    loop {
        let mut ascending = picked.clone();
        ascending.sort_unstable();
        let text = render(sentences, &ascending);
        if limit.measure(&text) <= limit.max() || picked.is_empty() {
            return ascending;
        }
        picked.pop();
    }
}

/// The summary text: the picked sentences in order, one per line.
pub fn render(sentences: &[&str], picked: &[usize]) -> String {
    picked
        .iter()
        .filter_map(|&i| sentences.get(i).copied())
        .collect::<Vec<_>>()
        .join("\n")
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter().map(|x| x / norm).collect()
    } else {
        vec![0.0; v.len()]
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn summary(sentences: &[&str], embeddings: &[Vec<f32>], limit: SummaryLimit) -> Vec<usize> {
        let refs: Vec<&[f32]> = embeddings.iter().map(Vec::as_slice).collect();
        summarize(sentences, &refs, limit)
    }

    #[test]
    fn most_central_sentences_win_and_keep_their_order() {
        let s = ["outlier one", "core a", "core b", "outlier two"];
        let e = vec![
            vec![0.0, 1.0, 0.0],
            vec![1.0, 0.3, 0.0],
            vec![1.0, 0.0, 0.3],
            vec![0.0, 0.0, 1.0],
        ];
        assert_eq!(summary(&s, &e, SummaryLimit::Chars(14)), vec![1, 2]);
    }

    #[test]
    fn near_duplicates_are_taken_once() {
        let s = ["same a", "same b", "other"];
        let e = vec![vec![1.0, 0.0], vec![1.0, 0.001], vec![0.6, 0.8]];
        let picked = summary(&s, &e, SummaryLimit::Chars(100));
        assert_eq!(picked.len(), 2);
        assert!(picked.contains(&2));
    }

    #[test]
    fn nothing_fits_a_tiny_limit() {
        let e = vec![vec![1.0, 0.0]];
        assert!(summary(&["a sentence"], &e, SummaryLimit::Chars(3)).is_empty());
    }

    #[test]
    fn no_sentences_no_summary() {
        assert!(summary(&[], &[], SummaryLimit::Chars(100)).is_empty());
    }

    #[test]
    fn candidates_skip_code_json_and_fragments() {
        let m = [Message {
            role: Some("assistant".into()),
            content: "Ok. The deployment uses three replicas behind a load balancer.\n```sh\nkubectl get pods and more text here\n```\n".into(),
        }, Message {
            role: Some("tool".into()),
            content: r#"{"status": "all three replicas are healthy and serving"}"#.into(),
        }];
        let c = candidate_sentences(&m, 10);
        assert_eq!(
            c,
            [SummarySentence {
                message: 0,
                text: "The deployment uses three replicas behind a load balancer."
            }]
        );
    }

    #[test]
    fn candidates_are_spread_over_a_long_context() {
        let m: Vec<Message> = (0..100)
            .map(|i| Message {
                role: Some("user".into()),
                content: format!("This is the message number {i} of the conversation."),
            })
            .collect();
        let c = candidate_sentences(&m, 10);
        assert_eq!(c.len(), 10);
        assert_eq!(c[0].message, 0);
        assert_eq!(c[9].message, 90);
    }

    proptest! {
        #[test]
        fn summary_fits_its_token_limit(
            texts in prop::collection::vec("[a-z ]{1,60}", 1..30),
            seed in prop::collection::vec(-1.0f32..1.0, 90),
            max in 0usize..80,
        ) {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let e: Vec<Vec<f32>> = (0..texts.len()).map(|i| seed[i * 3..i * 3 + 3].to_vec()).collect();
            let limit = SummaryLimit::Tokens(max, TokenizerKind::Cl100kBase);
            let picked = summary(&refs, &e, limit);
            prop_assert!(picked.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(TokenizerKind::Cl100kBase.count(&render(&refs, &picked)) <= max);
        }
    }
}
