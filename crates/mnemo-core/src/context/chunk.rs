//! Message-aware chunking: the retrieval units of a context.
//!
//! - Consecutive messages that are small enough travel together in one chunk.
//! - A message too long for one chunk is cut at sentence boundaries ([`super::sentences`]); a
//!   sentence (or code block) too long on its own is cut at line breaks, then at whitespace, then
//!   anywhere. Consecutive chunks of one long message overlap by up to
//!   [`ChunkParams::overlap_tokens`] of whole sentences, so a fact straddling a cut is whole in one.
//! - Every chunk's text fits both budgets: at most [`ChunkParams::max_tokens`] tokens of the
//!   context's tokenizer, and at most [`EmbedLimit::max`] tokens of the embedder (counted by the
//!   caller's function on the exact text embedded), so the embedder never silently truncates.
//!
//! Chunk text format: each message contributes `"{role}: {content}"` (the role cut to
//! [`MAX_LABEL_ROLE_BYTES`]); messages of one chunk are joined by `"\n"`; a piece of a long
//! message is `"{role}: {piece}"`; a `text` context has no label. The label gives retrieval and
//! the rebuilt prompt the speaker. The content part of a chunk is always the exact substring given
//! by its span, so [`Chunk::chars`] maps it back to the stored transcript.

use std::ops::Range;

use super::input::Message;
use super::sentences;
use super::tokens::{TokenizerKind, MAX_TOKEN_BYTES};

/// Roles longer than this are cut in chunk labels (roles are client strings; real ones are short).
pub const MAX_LABEL_ROLE_BYTES: usize = 32;

/// The embedder's input bound: `count` must count the text exactly as the embedder will
/// (special tokens included), and no chunk text will count more than `max`.
pub struct EmbedLimit<'a> {
    pub count: &'a dyn Fn(&str) -> usize,
    pub max: usize,
}

/// Sizes of chunks, in tokens of the context's tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    pub tokenizer: TokenizerKind,
    /// Hard ceiling per chunk; small messages are grouped up to it.
    pub max_tokens: usize,
    /// Sentences repeated at the start of the next chunk of a long message, at most this many
    /// tokens of them.
    pub overlap_tokens: usize,
}

impl Default for ChunkParams {
    /// 200 tokens a chunk: about a paragraph, under all-MiniLM-L6-v2's 256 WordPiece tokens for
    /// English prose (code and JSON take more WordPieces, which [`EmbedLimit`] catches); 32 tokens
    /// of overlap, one or two sentences.
    fn default() -> Self {
        Self {
            tokenizer: TokenizerKind::default(),
            max_tokens: 200,
            overlap_tokens: 32,
        }
    }
}

/// One retrieval unit of a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// What gets embedded, indexed and packed into prompts (see the module doc for its format).
    pub text: String,
    /// First and last message (0-based, inclusive) the chunk reads from.
    pub messages: [u32; 2],
    /// Character (Unicode scalar value) offsets: where the chunk starts in the content of its first
    /// message and where it ends (exclusive) in the content of its last.
    pub chars: [u32; 2],
    /// Tokens of `text` in [`ChunkParams::tokenizer`].
    pub tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the embedder's limit of {max} tokens cannot hold even one character of this context")]
pub struct LimitTooSmall {
    pub max: usize,
}

/// Cuts a context into chunks, in order. The chunks of one long message overlap; otherwise the
/// chunks cover every message exactly once.
pub fn chunk(
    messages: &[Message],
    params: &ChunkParams,
    embed: &EmbedLimit,
) -> Result<Vec<Chunk>, LimitTooSmall> {
    let fit = Fit { params, embed };
    let mut out = Vec::new();
    let mut group: Option<Group> = None;
    for (i, m) in messages.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let whole = format!("{}{}", label(m), m.content);
        if let Some(tokens) = fit.tokens(&whole) {
            if let Some(g) = group.as_mut() {
                let joined = format!("{}\n{}", g.text, whole);
                if let Some(tokens) = fit.tokens(&joined) {
                    g.text = joined;
                    g.last = index;
                    g.last_chars = char_len(&m.content);
                    g.tokens = tokens;
                    continue;
                }
            }
            out.extend(group.take().map(Group::into_chunk));
            group = Some(Group {
                text: whole,
                first: index,
                last: index,
                last_chars: char_len(&m.content),
                tokens,
            });
        } else {
            out.extend(group.take().map(Group::into_chunk));
            split_long(index, m, &fit, &mut out)?;
        }
    }
    out.extend(group.take().map(Group::into_chunk));
    Ok(out)
}

/// The whole context as one text in the chunk format: what the context's token count measures.
pub fn render_transcript(messages: &[Message]) -> String {
    let mut out = String::new();
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&label(m));
        out.push_str(&m.content);
    }
    out
}

fn label(m: &Message) -> String {
    match &m.role {
        Some(role) => {
            let mut cut = role.len().min(MAX_LABEL_ROLE_BYTES);
            while !role.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}: ", &role[..cut])
        }
        None => String::new(),
    }
}

struct Group {
    text: String,
    first: u32,
    last: u32,
    last_chars: u32,
    tokens: usize,
}

impl Group {
    fn into_chunk(self) -> Chunk {
        Chunk {
            text: self.text,
            messages: [self.first, self.last],
            chars: [0, self.last_chars],
            tokens: u32::try_from(self.tokens).unwrap_or(u32::MAX),
        }
    }
}

struct Fit<'a> {
    params: &'a ChunkParams,
    embed: &'a EmbedLimit<'a>,
}

impl Fit<'_> {
    /// The tokenizer's count of `text` if it fits both budgets.
    fn tokens(&self, text: &str) -> Option<usize> {
        if text.len() > self.params.max_tokens * MAX_TOKEN_BYTES {
            // Cannot fit, and counting a multi-megabyte message would take seconds.
            return None;
        }
        let tokens = self.params.tokenizer.count(text);
        (tokens <= self.params.max_tokens && (self.embed.count)(text) <= self.embed.max)
            .then_some(tokens)
    }
}

/// A piece of a long message: a byte range of its content that fits a chunk alone, with its own
/// counts (which add up to about the count of a concatenation: the sums only pick candidates,
/// the exact text is always counted before a chunk is emitted).
struct Piece {
    range: Range<usize>,
    tokens: usize,
    embed: usize,
}

fn split_long(
    index: u32,
    m: &Message,
    fit: &Fit,
    out: &mut Vec<Chunk>,
) -> Result<(), LimitTooSmall> {
    let content = m.content.as_str();
    // A label that leaves no room for content (an odd role against a tiny limit) is dropped.
    let with_label = label(m);
    let (label, pieces) = match pieces(&with_label, content, fit) {
        Ok(p) => (with_label, p),
        Err(_) => (String::new(), pieces("", content, fit)?),
    };
    let label_tokens = fit.params.tokenizer.count(&label);
    let label_embed = (fit.embed.count)(&label);
    let mut chars = CharCursor::new(content);
    let mut start = 0;
    while start < pieces.len() {
        let mut end = start;
        let (mut tokens, mut embed) = (label_tokens, label_embed);
        while end < pieces.len()
            && tokens + pieces[end].tokens <= fit.params.max_tokens
            && embed + pieces[end].embed <= fit.embed.max
        {
            tokens += pieces[end].tokens;
            embed += pieces[end].embed;
            end += 1;
        }
        // `end` is exclusive; a piece fits alone, so at least one is taken.
        end = end.max(start + 1);
        let (text, tokens) = loop {
            let range = pieces[start].range.start..pieces[end - 1].range.end;
            let text = format!("{label}{}", &content[range]);
            match fit.tokens(&text) {
                Some(tokens) => break (text, tokens),
                None if end > start + 1 => end -= 1,
                // Cannot happen: `force_split` checked each piece alone with the label.
                None => return Err(LimitTooSmall { max: fit.embed.max }),
            }
        };
        let span = pieces[start].range.start..pieces[end - 1].range.end;
        out.push(Chunk {
            text,
            messages: [index, index],
            chars: [chars.at(span.start), chars.at(span.end)],
            tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
        });
        if end == pieces.len() {
            break;
        }
        start = next_start(&pieces, start, end, (label_tokens, label_embed), fit);
    }
    Ok(())
}

fn pieces(label: &str, content: &str, fit: &Fit) -> Result<Vec<Piece>, LimitTooSmall> {
    let mut pieces = Vec::new();
    for s in sentences::split(content) {
        force_split(label, content, s, fit, &mut pieces)?;
    }
    Ok(pieces)
}

/// Where the chunk after `pieces[start..end]` begins: as far back as the overlap allows, but
/// always after `start` and always able to reach past `end`.
fn next_start(
    pieces: &[Piece],
    start: usize,
    end: usize,
    (label_tokens, label_embed): (usize, usize),
    fit: &Fit,
) -> usize {
    let mut k = end;
    let mut overlap = 0;
    while k > start + 1 && overlap + pieces[k - 1].tokens <= fit.params.overlap_tokens {
        overlap += pieces[k - 1].tokens;
        k -= 1;
    }
    let tokens: usize = label_tokens + pieces[k..=end].iter().map(|p| p.tokens).sum::<usize>();
    let embed: usize = label_embed + pieces[k..=end].iter().map(|p| p.embed).sum::<usize>();
    if tokens <= fit.params.max_tokens && embed <= fit.embed.max {
        k
    } else {
        end
    }
}

/// Pushes `range` of `content` as pieces that each fit a chunk with `label`: whole if it fits,
/// else cut at the last line break, whitespace or character that keeps the head within budget.
fn force_split(
    label: &str,
    content: &str,
    range: Range<usize>,
    fit: &Fit,
    pieces: &mut Vec<Piece>,
) -> Result<(), LimitTooSmall> {
    let label_tokens = fit.params.tokenizer.count(label);
    let count = |r: &Range<usize>| {
        let text = format!("{label}{}", &content[r.clone()]);
        fit.tokens(&text).map(|tokens| Piece {
            range: r.clone(),
            tokens: tokens.saturating_sub(label_tokens),
            embed: (fit.embed.count)(&content[r.clone()]),
        })
    };
    let too_small = LimitTooSmall { max: fit.embed.max };
    let mut start = range.start;
    while start < range.end {
        // Longest fitting head, found by doubling then bisecting (the count of a prefix grows
        // with its length, near enough), so the work stays proportional to the head's size even
        // for a sentence of megabytes.
        let mut ok = start;
        let mut len = 256;
        let mut bad = loop {
            let probe = floor_char(content, (start + len).min(range.end));
            if probe > start && count(&(start..probe)).is_none() {
                break probe;
            }
            ok = probe;
            if probe == range.end {
                break range.end;
            }
            len *= 2;
        };
        if ok == range.end {
            pieces.extend(count(&(start..range.end)));
            return Ok(());
        }
        while bad > ok + 1 {
            let mid = floor_char(content, ok + (bad - ok) / 2);
            if mid <= ok {
                break;
            }
            if count(&(start..mid)).is_some() {
                ok = mid;
            } else {
                bad = mid;
            }
        }
        if ok == start {
            // Not even one character fits.
            let one = start + content[start..].chars().next().map_or(1, char::len_utf8);
            if count(&(start..one)).is_none() {
                return Err(too_small);
            }
            ok = one;
        }
        let cut = nice_cut(content, start, ok);
        let piece = count(&(start..cut))
            .or_else(|| count(&(start..ok)))
            .ok_or(too_small.clone())?;
        start = piece.range.end;
        pieces.push(piece);
    }
    Ok(())
}

/// The last line break, else the last whitespace, in the second half of `content[start..limit]`
/// (a cut there keeps words and lines whole); else `limit`.
fn nice_cut(content: &str, start: usize, limit: usize) -> usize {
    let head = &content[start..limit];
    let half = head.len() / 2;
    if let Some(i) = head.rfind('\n').filter(|&i| i >= half) {
        return start + i + 1;
    }
    if let Some(i) = head.rfind(char::is_whitespace).filter(|&i| i >= half) {
        return start + i + head[i..].chars().next().map_or(1, char::len_utf8);
    }
    limit
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn char_len(s: &str) -> u32 {
    u32::try_from(s.chars().count()).unwrap_or(u32::MAX)
}

/// Byte offset → character offset, for offsets that mostly move forward.
struct CharCursor<'a> {
    text: &'a str,
    byte: usize,
    chars: usize,
}

impl<'a> CharCursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            byte: 0,
            chars: 0,
        }
    }

    fn at(&mut self, byte: usize) -> u32 {
        if byte >= self.byte {
            self.chars += self.text[self.byte..byte].chars().count();
        } else {
            self.chars -= self.text[byte..self.byte].chars().count();
        }
        self.byte = byte;
        u32::try_from(self.chars).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: Some(role.into()),
            content: content.into(),
        }
    }

    /// Whitespace-separated words plus two special tokens: roughly a WordPiece count, and exact
    /// enough to test that the bound holds for whatever counter the caller passes.
    fn words(s: &str) -> usize {
        s.split_whitespace().count() + 2
    }

    fn chunks(messages: &[Message], max_tokens: usize, embed_max: usize) -> Vec<Chunk> {
        let params = ChunkParams {
            max_tokens,
            ..ChunkParams::default()
        };
        let embed = EmbedLimit {
            count: &words,
            max: embed_max,
        };
        chunk(messages, &params, &embed).unwrap()
    }

    /// The content part of a single-message chunk, by its char span.
    fn span_text(m: &Message, c: &Chunk) -> String {
        m.content
            .chars()
            .skip(c.chars[0] as usize)
            .take((c.chars[1] - c.chars[0]) as usize)
            .collect()
    }

    fn prose(sentences: usize) -> String {
        (0..sentences)
            .map(|i| format!("Sentence number {i} talks about the deployment of service {i}. "))
            .collect()
    }

    #[test]
    fn small_messages_are_grouped_with_role_labels() {
        let m = [
            msg("user", "Hi there."),
            msg("assistant", "Hello! How can I help?"),
        ];
        let c = chunks(&m, 200, 256);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].text,
            "user: Hi there.\nassistant: Hello! How can I help?"
        );
        assert_eq!(c[0].messages, [0, 1]);
        assert_eq!(c[0].chars, [0, 22]);
        assert_eq!(
            c[0].tokens as usize,
            TokenizerKind::O200kBase.count(&c[0].text)
        );
    }

    #[test]
    fn text_context_has_no_label() {
        let m = [Message {
            role: None,
            content: "Plain notes.".into(),
        }];
        assert_eq!(chunks(&m, 200, 256)[0].text, "Plain notes.");
    }

    #[test]
    fn a_group_closes_when_the_next_message_would_overflow() {
        let m = [
            msg("user", &prose(3)),
            msg("assistant", &prose(3)),
            msg("user", "ok"),
        ];
        let c = chunks(&m, 60, 256);
        assert!(c.len() >= 2);
        assert!(c.iter().all(|c| c.tokens <= 60));
        assert_eq!(c.last().unwrap().messages[1], 2);
    }

    #[test]
    fn long_message_is_split_at_sentences_with_overlap() {
        let m = [msg("assistant", &prose(40))];
        let c = chunks(&m, 80, 256);
        assert!(c.len() > 3);
        for pair in c.windows(2) {
            assert!(pair[1].chars[0] < pair[0].chars[1], "chunks should overlap");
            assert!(pair[1].chars[0] > pair[0].chars[0], "chunks should advance");
        }
        for ch in &c {
            assert!(ch.text.starts_with("assistant: Sentence number "));
            assert_eq!(ch.text, format!("assistant: {}", span_text(&m[0], ch)));
        }
        assert_eq!(c.last().unwrap().chars[1], char_len(&m[0].content));
    }

    #[test]
    fn embedder_limit_binds_when_tighter_than_tokens() {
        let m = [msg("user", &prose(30))];
        let c = chunks(&m, 10_000, 40);
        assert!(c.len() > 1);
        assert!(c.iter().all(|ch| words(&ch.text) <= 40));
    }

    #[test]
    fn one_huge_sentence_is_force_split_at_whitespace() {
        let content = "word ".repeat(2000);
        let m = [msg("tool", &content)];
        let c = chunks(&m, 100, 256);
        assert!(c.iter().all(|ch| ch.tokens <= 100));
        assert!(c.iter().all(|ch| !ch.text.ends_with("wor")));
        assert_eq!(c.last().unwrap().chars[1], 10_000);
    }

    #[test]
    fn text_without_whitespace_is_force_split_anywhere() {
        let content = "é".repeat(5000) + &"x".repeat(3000);
        let m = [msg("tool", &content)];
        let c = chunks(&m, 50, 256);
        assert!(c.iter().all(|ch| ch.tokens <= 50));
        for ch in &c {
            assert_eq!(ch.text, format!("tool: {}", span_text(&m[0], ch)));
        }
    }

    #[test]
    fn long_roles_are_cut_in_labels() {
        let m = [msg(&"r".repeat(500), "hi")];
        assert_eq!(
            chunks(&m, 200, 256)[0].text,
            format!("{}: hi", "r".repeat(32))
        );
    }

    #[test]
    fn an_impossible_embedder_limit_is_an_error() {
        let embed = EmbedLimit {
            count: &words,
            max: 1,
        };
        let r = chunk(&[msg("user", "hello")], &ChunkParams::default(), &embed);
        assert_eq!(r, Err(LimitTooSmall { max: 1 }));
    }

    #[test]
    fn transcript_joins_labelled_messages() {
        let m = [msg("user", "a"), msg("assistant", "b")];
        assert_eq!(render_transcript(&m), "user: a\nassistant: b");
    }

    fn message() -> impl Strategy<Value = Message> {
        let content = prop_oneof![
            "\\PC{0,40}",
            "([A-Z][a-z]{1,8}( [a-z]{1,8}){2,12}[.!?] ){1,40}",
            "(\\PC|\\n| ){0,1500}",
            "```[a-z]{0,4}\n([a-z]{1,6}\\([a-z, ]{0,20}\\);\n){1,60}```",
        ];
        (
            prop_oneof![
                Just("user".to_owned()),
                Just("assistant".to_owned()),
                Just("tool".to_owned()),
                "\\PC{0,40}"
            ],
            content,
        )
            .prop_map(|(r, c)| msg(&r, &c))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn chunks_fit_both_budgets_and_cover_every_message(
            messages in prop::collection::vec(message(), 1..12),
            max_tokens in 24usize..300,
            embed_max in 24usize..300,
        ) {
            let c = chunks(&messages, max_tokens, embed_max);
            let mut covered = vec![0usize; messages.len()];
            for ch in &c {
                prop_assert!(ch.tokens as usize <= max_tokens);
                prop_assert_eq!(ch.tokens as usize, TokenizerKind::O200kBase.count(&ch.text));
                prop_assert!(words(&ch.text) <= embed_max);
                let [from, to] = ch.messages;
                prop_assert!(from <= to);
                for i in from..=to {
                    covered[i as usize] += 1;
                }
                if from == to {
                    let m = &messages[from as usize];
                    let body = span_text(m, ch);
                    prop_assert!(ch.text.ends_with(&body));
                    let prefix = ch.text.len() - body.len();
                    prop_assert!(prefix == label(m).len() || prefix == 0);
                }
            }
            prop_assert!(covered.iter().all(|&n| n >= 1));
            // Chunks are in order and a long message's chunks start where the previous ended or
            // earlier (overlap), never leaving a gap.
            for pair in c.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                if a.messages == b.messages && a.messages[0] == a.messages[1] {
                    prop_assert!(b.chars[0] <= a.chars[1] && b.chars[0] > a.chars[0]);
                } else {
                    prop_assert_eq!(b.messages[0], a.messages[1] + 1);
                    prop_assert_eq!(b.chars[0], 0);
                }
            }
        }
    }
}
