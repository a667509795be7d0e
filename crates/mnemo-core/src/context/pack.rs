//! Rebuilding a prompt within a token budget from retrieved pieces.
//!
//! [`pack`] takes candidates (chunks of contexts, memories, context summaries) with relevance
//! scores and returns a prompt whose token count, with the chosen tokenizer, is at most the
//! budget: separators and headers included, measured on the final string (token counts do not
//! add up across concatenations, so the sum of parts is only an estimate and the final text is
//! always counted, dropping the last item taken until it fits).
//!
//! Selection: the most relevant candidate that fits is taken first (what the caller asked for
//! most; also the classic fix that keeps greedy knapsack within a factor two of the optimum), then
//! the others best relevance per token first, each if it still fits.
//!
//! Deduplication: chunks of one message whose character spans overlap or touch are merged into one
//! item whose text holds each character once (the chunker makes consecutive chunks of a long
//! message overlap). Any other candidate overlapping text already taken (same context, shared
//! messages, not mergeable) is skipped, as is a second copy of the same memory or summary.
//!
//! Prompt format: each item is a header line then its text; items are separated by a blank line:
//! `[context ID, messages A-B]` (or `message A`), `[memory ID]`, `[summary of context ID]`.

use super::tokens::TokenizerKind;
use crate::types::text_enum;

text_enum!(
    /// What a packed item is.
    ItemKind { Chunk => "chunk", Memory => "memory", Summary => "summary" }
);
text_enum!(
    /// How packed items are ordered in the prompt. `chronological` reads sources by time and the
    /// chunks of one context in their original order.
    PackOrder { Relevance => "relevance", Chronological => "chronological" }
);

// The enum comes from `text_enum!`, which has no `#[default]` variant attribute.
#[allow(clippy::derivable_impls)]
impl Default for PackOrder {
    fn default() -> Self {
        PackOrder::Relevance
    }
}

const SEPARATOR: &str = "\n\n";

/// A piece that may go into the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub kind: ItemKind,
    /// The context id (chunks, summaries) or memory id.
    pub source: String,
    /// When the source was written (any monotonic unit, e.g. microseconds): the chronological key.
    pub time: i64,
    /// Chunks: first and last message, inclusive.
    pub messages: Option<[u32; 2]>,
    /// Chunks: character span, start in the first message, end (exclusive) in the last. The chunk
    /// text must end with exactly that span of content (see [`super::chunk`]) for merging.
    pub chars: Option<[u32; 2]>,
    pub text: String,
    /// Higher is more relevant; not finite counts as 0.
    pub score: f64,
}

/// One item of the packed prompt (possibly several merged candidates).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedItem {
    pub kind: ItemKind,
    pub source: String,
    pub messages: Option<[u32; 2]>,
    pub chars: Option<[u32; 2]>,
    /// Tokens of this item's block (header and text) alone.
    pub tokens: usize,
    /// The best score among the candidates it holds.
    pub score: f64,
    /// How many candidates were merged into it.
    pub merged: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    pub prompt: String,
    pub items: Vec<PackedItem>,
    /// Tokens of `prompt`, counted on the final string; never above `token_budget`.
    pub tokens_used: usize,
    pub token_budget: usize,
    /// Why nothing was packed, when nothing was.
    pub reason: Option<String>,
}

/// Packs `candidates` into a prompt of at most `budget` tokens of `tokenizer`.
pub fn pack(
    candidates: &[Candidate],
    budget: usize,
    tokenizer: TokenizerKind,
    order: PackOrder,
) -> Packed {
    let sep_tokens = tokenizer.count(SEPARATOR);
    let alone: Vec<usize> = candidates
        .iter()
        .map(|c| tokenizer.count(&Item::from_candidate(c, 0).block()))
        .collect();
    let mut ranked: Vec<usize> = (0..candidates.len()).collect();
    let score = |i: usize| finite(candidates[i].score);
    let density = |i: usize| score(i) / alone[i].max(1) as f64;
    ranked.sort_by(|&a, &b| density(b).total_cmp(&density(a)).then(a.cmp(&b)));
    // The most relevant candidate that fits on its own goes first.
    if let Some(best) = (0..candidates.len())
        .filter(|&i| alone[i] <= budget)
        .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
    {
        ranked.retain(|&i| i != best);
        ranked.insert(0, best);
    }

    let mut taken: Vec<Item> = Vec::new();
    let mut used = 0;
    for (rank, &i) in ranked.iter().enumerate() {
        let c = &candidates[i];
        let Some(plan) = place(&taken, c, rank) else {
            continue;
        };
        let mut item = plan.item;
        item.tokens = tokenizer.count(&item.block());
        let replaced: usize = plan.replaces.iter().map(|&j| taken[j].tokens).sum();
        let separators = taken.len() + 1 - plan.replaces.len();
        let estimate = used - replaced + item.tokens;
        if estimate + separators.saturating_sub(1) * sep_tokens > budget {
            continue;
        }
        used = estimate;
        for &j in plan.replaces.iter().rev() {
            taken.remove(j);
        }
        taken.push(item);
    }

    loop {
        sort_for_output(&mut taken, order);
        let prompt = taken
            .iter()
            .map(Item::block)
            .collect::<Vec<_>>()
            .join(SEPARATOR);
        let tokens_used = tokenizer.count(&prompt);
        if tokens_used <= budget {
            let reason = taken.is_empty().then(|| {
                match alone.iter().min() {
                    None => "no candidates to pack".to_owned(),
                    Some(min) => format!(
                        "token_budget {budget} is too small for any item: the smallest needs {min} tokens"
                    ),
                }
            });
            return Packed {
                prompt,
                items: taken.into_iter().map(Item::into_packed).collect(),
                tokens_used,
                token_budget: budget,
                reason,
            };
        }
        // Over budget only through non-additive tokenization: drop the last item taken.
        if let Some(last) = (0..taken.len()).max_by_key(|&j| taken[j].rank) {
            taken.remove(last);
        }
    }
}

fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// An item being packed. Chunks that can merge keep their text as `prefix` (the role label) and
/// `body` (exactly the content span `chars` of message `messages[0]`).
#[derive(Debug, Clone)]
struct Item {
    kind: ItemKind,
    source: String,
    time: i64,
    messages: Option<[u32; 2]>,
    chars: Option<[u32; 2]>,
    prefix: String,
    body: String,
    /// Whether `body` is exactly the span `chars` of one message, so overlaps can merge.
    mergeable: bool,
    score: f64,
    /// Position in the selection order of its first candidate: lower was preferred.
    rank: usize,
    merged: usize,
    tokens: usize,
}

impl Item {
    fn from_candidate(c: &Candidate, rank: usize) -> Self {
        let single_span = match (c.messages, c.chars) {
            (Some([a, b]), Some([s, e])) if a == b && s <= e => Some((e - s) as usize),
            _ => None,
        };
        let text_chars = c.text.chars().count();
        let (prefix, body, mergeable) = match single_span {
            Some(len) if c.kind == ItemKind::Chunk && len <= text_chars => {
                let split = c
                    .text
                    .char_indices()
                    .nth(text_chars - len)
                    .map_or(c.text.len(), |(b, _)| b);
                (c.text[..split].to_owned(), c.text[split..].to_owned(), true)
            }
            _ => (String::new(), c.text.clone(), false),
        };
        Self {
            kind: c.kind,
            source: c.source.clone(),
            time: c.time,
            messages: c.messages,
            chars: c.chars,
            prefix,
            body,
            mergeable,
            score: finite(c.score),
            rank,
            merged: 1,
            tokens: 0,
        }
    }

    fn header(&self) -> String {
        match (self.kind, self.messages) {
            (ItemKind::Chunk, Some([a, b])) if a == b => {
                format!("[context {}, message {a}]", self.source)
            }
            (ItemKind::Chunk, Some([a, b])) => {
                format!("[context {}, messages {a}-{b}]", self.source)
            }
            (ItemKind::Chunk, None) => format!("[context {}]", self.source),
            (ItemKind::Memory, _) => format!("[memory {}]", self.source),
            (ItemKind::Summary, _) => format!("[summary of context {}]", self.source),
        }
    }

    fn block(&self) -> String {
        format!("{}\n{}{}", self.header(), self.prefix, self.body)
    }

    /// Whether this and `other` read some of the same text of the same source.
    fn overlaps(&self, other: &Item) -> bool {
        if self.source != other.source {
            return false;
        }
        match (self.kind, other.kind) {
            (ItemKind::Chunk, ItemKind::Chunk) => {
                let (Some(a), Some(b)) = (self.range(), other.range()) else {
                    return self.body == other.body;
                };
                a.0 < b.1 && b.0 < a.1
            }
            (x, y) => x == y,
        }
    }

    /// Start and end position as (message, char) pairs, for chunks with both spans.
    fn range(&self) -> Option<((u32, u32), (u32, u32))> {
        match (self.messages, self.chars) {
            (Some([ma, mb]), Some([ca, cb])) => Some(((ma, ca), (mb, cb))),
            _ => None,
        }
    }

    fn into_packed(self) -> PackedItem {
        PackedItem {
            kind: self.kind,
            source: self.source,
            messages: self.messages,
            chars: self.chars,
            tokens: self.tokens,
            score: self.score,
            merged: self.merged,
        }
    }
}

/// What taking a candidate would do: add `item`, replacing the taken items `replaces` (sorted)
/// that it merged with.
struct Plan {
    item: Item,
    replaces: Vec<usize>,
}

fn place(taken: &[Item], c: &Candidate, rank: usize) -> Option<Plan> {
    let new = Item::from_candidate(c, rank);
    let overlapping: Vec<usize> = (0..taken.len())
        .filter(|&j| taken[j].overlaps(&new))
        .collect();
    if !new.mergeable {
        // Text already taken cannot be merged without repeating it.
        return overlapping.is_empty().then_some(Plan {
            item: new,
            replaces: Vec::new(),
        });
    }
    if overlapping.iter().any(|&j| !taken[j].mergeable) {
        return None;
    }
    let joined: Vec<usize> = (0..taken.len())
        .filter(|&j| overlapping.contains(&j) || touches(&taken[j], &new))
        .collect();
    if joined.is_empty() {
        return Some(Plan {
            item: new,
            replaces: Vec::new(),
        });
    }
    let mut parts: Vec<&Item> = joined.iter().map(|&j| &taken[j]).collect();
    parts.push(&new);
    parts.sort_by_key(|p| p.chars.map(|[s, _]| s));
    let mut merged = parts[0].clone();
    for p in &parts[1..] {
        merged = merge(merged, p)?;
    }
    if let [only] = joined[..] {
        if taken[only].chars == merged.chars {
            // Wholly inside an item already taken: nothing new to add.
            return None;
        }
    }
    merged.rank = parts.iter().map(|p| p.rank).min().unwrap_or(rank);
    Some(Plan {
        item: merged,
        replaces: joined,
    })
}

/// Single-message chunks of the same message whose spans meet end to start.
fn touches(a: &Item, b: &Item) -> bool {
    a.mergeable
        && b.mergeable
        && a.source == b.source
        && a.messages == b.messages
        && matches!((a.chars, b.chars), (Some([s1, e1]), Some([s2, e2])) if e1 == s2 || e2 == s1)
}

/// Merges `b` into `a` (`a` starts no later than `b`, and they overlap or touch). Refuses when the
/// overlapping characters differ, which would mean the spans do not describe the texts.
fn merge(mut a: Item, b: &Item) -> Option<Item> {
    let ([a_start, a_end], [b_start, b_end]) = (a.chars?, b.chars?);
    if b_start > a_end || a.messages != b.messages || a.prefix != b.prefix {
        return None;
    }
    let shared = (a_end - b_start) as usize;
    let a_tail: String = a
        .body
        .chars()
        .skip((a_end - a_start) as usize - shared)
        .collect();
    let b_head: String = b.body.chars().take(shared).collect();
    if a_tail != b_head {
        return None;
    }
    if b_end > a_end {
        a.body.extend(b.body.chars().skip(shared));
        a.chars = Some([a_start, b_end]);
    }
    a.score = a.score.max(b.score);
    a.merged += b.merged;
    Some(a)
}

fn sort_for_output(items: &mut [Item], order: PackOrder) {
    match order {
        PackOrder::Relevance => {
            items.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.rank.cmp(&b.rank)));
        }
        PackOrder::Chronological => items.sort_by(|a, b| {
            let kind = |k: ItemKind| match k {
                ItemKind::Summary => 0,
                ItemKind::Chunk => 1,
                ItemKind::Memory => 2,
            };
            (a.time, &a.source, kind(a.kind), a.range(), a.rank).cmp(&(
                b.time,
                &b.source,
                kind(b.kind),
                b.range(),
                b.rank,
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TK: TokenizerKind = TokenizerKind::O200kBase;

    fn chunk(source: &str, content: &str, message: u32, span: [u32; 2], score: f64) -> Candidate {
        let body: String = content
            .chars()
            .skip(span[0] as usize)
            .take((span[1] - span[0]) as usize)
            .collect();
        Candidate {
            kind: ItemKind::Chunk,
            source: source.into(),
            time: 0,
            messages: Some([message, message]),
            chars: Some(span),
            text: format!("user: {body}"),
            score,
        }
    }

    fn memory(id: &str, text: &str, score: f64, time: i64) -> Candidate {
        Candidate {
            kind: ItemKind::Memory,
            source: id.into(),
            time,
            messages: None,
            chars: None,
            text: text.into(),
            score,
        }
    }

    const CONTENT: &str = "The deploy failed at noon. The database ran out of disk. We added a volume and it recovered.";

    #[test]
    fn overlapping_chunks_merge_without_repeating_text() {
        let end = CONTENT.chars().count() as u32;
        let c = [
            chunk("c1", CONTENT, 2, [0, 57], 0.9),
            chunk("c1", CONTENT, 2, [27, end], 0.8),
        ];
        let p = pack(&c, 1000, TK, PackOrder::Relevance);
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.items[0].chars, Some([0, end]));
        assert_eq!(p.items[0].merged, 2);
        assert_eq!(
            p.prompt,
            format!("[context c1, message 2]\nuser: {CONTENT}")
        );
    }

    #[test]
    fn a_chunk_inside_a_taken_one_adds_nothing() {
        let c = [
            chunk("c1", CONTENT, 0, [0, CONTENT.chars().count() as u32], 0.9),
            chunk("c1", CONTENT, 0, [27, 57], 0.95),
        ];
        let p = pack(&c, 1000, TK, PackOrder::Relevance);
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.prompt.matches("database").count(), 1);
    }

    #[test]
    fn chunks_of_different_contexts_do_not_merge() {
        let c = [
            chunk("c1", CONTENT, 0, [0, 57], 0.9),
            chunk("c2", CONTENT, 0, [27, 80], 0.8),
        ];
        assert_eq!(pack(&c, 1000, TK, PackOrder::Relevance).items.len(), 2);
    }

    #[test]
    fn relevance_order_puts_the_best_first() {
        let c = [memory("m1", "low", 0.1, 0), memory("m2", "high", 0.9, 0)];
        let p = pack(&c, 1000, TK, PackOrder::Relevance);
        assert_eq!(p.prompt, "[memory m2]\nhigh\n\n[memory m1]\nlow");
        assert_eq!(p.tokens_used, TK.count(&p.prompt));
    }

    #[test]
    fn chronological_order_reads_by_time_then_position() {
        let c = [
            chunk("c1", CONTENT, 1, [27, 57], 0.9),
            chunk("c1", CONTENT, 0, [0, 26], 0.5),
            memory("m-old", "earlier fact", 0.7, -5),
        ];
        let p = pack(&c, 1000, TK, PackOrder::Chronological);
        let order: Vec<_> = p
            .items
            .iter()
            .map(|i| (i.source.as_str(), i.messages))
            .collect();
        assert_eq!(
            order,
            [("m-old", None), ("c1", Some([0, 0])), ("c1", Some([1, 1]))]
        );
    }

    #[test]
    fn too_small_a_budget_packs_nothing_and_says_why() {
        let p = pack(
            &[memory("m1", "some memory text", 1.0, 0)],
            3,
            TK,
            PackOrder::Relevance,
        );
        assert!(p.items.is_empty());
        assert_eq!(p.prompt, "");
        assert_eq!(p.tokens_used, 0);
        assert!(p.reason.unwrap().contains("too small"));
    }

    #[test]
    fn no_candidates_says_so() {
        let p = pack(&[], 100, TK, PackOrder::Relevance);
        assert_eq!(p.reason.as_deref(), Some("no candidates to pack"));
    }

    #[test]
    fn the_same_memory_is_packed_once() {
        let c = [memory("m1", "fact", 0.5, 0), memory("m1", "fact", 0.4, 0)];
        assert_eq!(pack(&c, 100, TK, PackOrder::Relevance).items.len(), 1);
    }

    #[test]
    fn the_most_relevant_item_is_taken_even_if_small_ones_are_denser() {
        let big = "important ".repeat(40);
        let mut c: Vec<Candidate> = (0..20)
            .map(|i| memory(&format!("s{i}"), "tiny", 0.5, 0))
            .collect();
        c.push(memory("best", &big, 0.9, 0));
        let budget = TK.count(&format!("[memory best]\n{big}")) + 10;
        let p = pack(&c, budget, TK, PackOrder::Relevance);
        assert_eq!(p.items[0].source, "best");
    }

    #[test]
    fn inconsistent_spans_are_not_merged_and_not_duplicated() {
        let mut bad = chunk("c1", CONTENT, 0, [27, 57], 0.8);
        bad.text = "user: something else entirely, not the span".into();
        let c = [chunk("c1", CONTENT, 0, [0, 57], 0.9), bad];
        let p = pack(&c, 1000, TK, PackOrder::Relevance);
        assert_eq!(p.items.len(), 1);
    }

    /// A few contexts of a few messages each, chunks at random spans of them, and memories.
    fn scenario() -> impl Strategy<Value = Vec<Candidate>> {
        let contents = prop::collection::vec("[A-Za-z]{1,8}([ ,.]{1,2}[a-zé😀]{1,8}){5,80}", 6);
        (
            contents,
            prop::collection::vec((0usize..6, 0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0), 0..25),
            prop::collection::vec(("\\PC{1,80}", 0.0f64..1.0, -10i64..10), 0..6),
        )
            .prop_map(|(contents, chunks, memories)| {
                let mut out = Vec::new();
                for (m, a, b, score) in chunks {
                    let len = contents[m].chars().count() as f64;
                    let (x, y) = ((a * len) as u32, (b * len) as u32);
                    let span = [x.min(y), x.max(y).max(x.min(y) + 1).min(len as u32)];
                    if span[0] >= span[1] {
                        continue;
                    }
                    let source = format!("ctx{}", m / 3);
                    let mut c = chunk(&source, &contents[m], (m % 3) as u32, span, score);
                    c.time = (m / 3) as i64;
                    out.push(c);
                }
                for (i, (text, score, time)) in memories.into_iter().enumerate() {
                    out.push(memory(&format!("mem{i}"), &text, score, time));
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn prompt_never_exceeds_the_budget(
            candidates in scenario(),
            budget in 0usize..600,
            cl100k in any::<bool>(),
            chronological in any::<bool>(),
        ) {
            let tk = if cl100k { TokenizerKind::Cl100kBase } else { TokenizerKind::O200kBase };
            let order = if chronological { PackOrder::Chronological } else { PackOrder::Relevance };
            let p = pack(&candidates, budget, tk, order);
            prop_assert!(tk.count(&p.prompt) <= budget);
            prop_assert_eq!(p.tokens_used, tk.count(&p.prompt));
            prop_assert_eq!(p.items.is_empty(), p.reason.is_some());
        }

        #[test]
        fn packed_chunks_never_share_text(candidates in scenario(), budget in 0usize..2000) {
            let p = pack(&candidates, budget, TK, PackOrder::Relevance);
            let chunks: Vec<_> = p.items.iter().filter(|i| i.kind == ItemKind::Chunk).collect();
            for (x, a) in chunks.iter().enumerate() {
                for b in &chunks[x + 1..] {
                    if a.source == b.source && a.messages == b.messages {
                        let ([s1, e1], [s2, e2]) = (a.chars.unwrap(), b.chars.unwrap());
                        prop_assert!(e1 < s2 || e2 < s1, "{:?} and {:?} share text", a, b);
                    }
                }
            }
        }

        #[test]
        fn chronological_order_holds(candidates in scenario(), budget in 0usize..2000) {
            let p = pack(&candidates, budget, TK, PackOrder::Chronological);
            let time = |i: &PackedItem| {
                candidates.iter().find(|c| c.source == i.source).map(|c| c.time).unwrap()
            };
            for w in p.items.windows(2) {
                prop_assert!(time(&w[0]) <= time(&w[1]));
                if w[0].source == w[1].source && w[0].kind == ItemKind::Chunk && w[1].kind == ItemKind::Chunk {
                    prop_assert!(
                        (w[0].messages, w[0].chars) < (w[1].messages, w[1].chars)
                    );
                }
            }
        }

        #[test]
        fn a_planted_best_item_is_packed_first(candidates in scenario(), extra in 0usize..300) {
            let planted = memory("planted", "The answer is forty-two.", 2.0, 3);
            let need = TK.count("[memory planted]\nThe answer is forty-two.");
            let mut all = candidates.clone();
            all.push(planted);
            let p = pack(&all, need + extra, TK, PackOrder::Relevance);
            prop_assert_eq!(p.items[0].source.as_str(), "planted");
        }

        #[test]
        fn merged_text_is_the_union_of_spans(content in "[a-z]{1,6}( [a-z]{1,6}){10,60}", cuts in prop::collection::vec((0.0f64..1.0, 0.0f64..1.0), 1..8)) {
            let len = content.chars().count() as u32;
            let candidates: Vec<Candidate> = cuts.iter().filter_map(|&(a, b)| {
                let (x, y) = ((a * len as f64) as u32, (b * len as f64) as u32);
                (x < y).then(|| chunk("c", &content, 0, [x, y], 0.5))
            }).collect();
            let p = pack(&candidates, 100_000, TK, PackOrder::Chronological);
            for item in &p.items {
                let [s, e] = item.chars.unwrap();
                let body: String = content.chars().skip(s as usize).take((e - s) as usize).collect();
                let block = format!("[context c, message 0]\nuser: {body}");
                prop_assert!(p.prompt.contains(&block));
            }
        }
    }
}
