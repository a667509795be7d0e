//! Sentence boundaries in chat text: prose splits into sentences, a fenced code block or a JSON
//! document stays whole.
//!
//! [`split`] returns byte ranges that tile the input exactly (each starts where the previous one
//! ended, the last ends at the end), so no character is ever lost and every span maps back to the
//! original text. Whitespace after a sentence belongs to that sentence.
//!
//! Rules, in order:
//! - a text that is, trimmed, a JSON object or array (a tool call's arguments, a tool's result) is
//!   one unit;
//! - a fenced code block (a line starting with ```` ``` ```` or `~~~` up to the matching closing
//!   fence, or the end) is one unit;
//! - in prose, a sentence ends after `.`, `!`, `?` or `…` (and any closing quotes or brackets)
//!   followed by whitespace, unless the word before the period is a common abbreviation or a
//!   single letter, or the next word starts in lower case; after `。`, `！`, `？` directly; at a
//!   blank line; and at a line break followed by a list item, a heading or a quote.
//!
//! The chunker cuts units that are still too long (a huge code block) at lines, then words.

use std::ops::Range;

use serde::de::IgnoredAny;

const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "cf", "fig",
    "no", "approx", "inc", "ltd", "co", "dept", "est", "vol", "eq", "al",
];

/// Splits `text` into sentence spans (byte ranges) that tile it exactly. Empty text has none.
pub fn split(text: &str) -> Vec<Range<usize>> {
    if text.is_empty() {
        return Vec::new();
    }
    if is_json_document(text) {
        let whole = 0..text.len();
        return vec![whole];
    }
    let mut spans = Vec::new();
    let mut prose_start = 0;
    let mut line_start = 0;
    while line_start < text.len() {
        let line_end = next_line_end(text, line_start);
        let fence = fence_marker(&text[line_start..line_end]);
        if let Some(marker) = fence {
            split_prose(text, prose_start..line_start, &mut spans);
            let mut end = line_end;
            let mut closed = false;
            while end < text.len() {
                let next_end = next_line_end(text, end);
                let line = text[end..next_end].trim();
                end = next_end;
                if line.starts_with(marker) && line.trim_start_matches(marker).trim().is_empty() {
                    closed = true;
                    break;
                }
            }
            if !closed {
                end = text.len();
            }
            // Whitespace after the closing fence belongs to the block.
            let end = end + whitespace_len(&text[end..]);
            spans.push(line_start..end);
            prose_start = end;
            line_start = end;
        } else {
            line_start = line_end;
        }
    }
    split_prose(text, prose_start..text.len(), &mut spans);
    spans
}

fn is_json_document(text: &str) -> bool {
    let t = text.trim();
    (t.starts_with('{') || t.starts_with('[')) && serde_json::from_str::<IgnoredAny>(t).is_ok()
}

/// End of the line starting at `start`, including its `\n`.
fn next_line_end(text: &str, start: usize) -> usize {
    text[start..]
        .find('\n')
        .map_or(text.len(), |i| start + i + 1)
}

fn fence_marker(line: &str) -> Option<&'static str> {
    let t = line.trim_start();
    if t.starts_with("```") {
        Some("```")
    } else if t.starts_with("~~~") {
        Some("~~~")
    } else {
        None
    }
}

fn whitespace_len(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

fn split_prose(text: &str, region: Range<usize>, spans: &mut Vec<Range<usize>>) {
    if region.is_empty() {
        return;
    }
    let s = &text[region.clone()];
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let boundary = match c {
            '.' | '!' | '?' | '…' => {
                let after_closers = skip_closers(s, i + c.len_utf8());
                let ws = whitespace_len(&s[after_closers..]);
                let next = &s[after_closers + ws..];
                if ws > 0 && !next.is_empty() && ends_sentence(s, i, c, next) {
                    Some(after_closers + ws)
                } else {
                    None
                }
            }
            '。' | '！' | '？' => {
                let after = skip_closers(s, i + c.len_utf8());
                Some(after + whitespace_len(&s[after..]))
            }
            '\n' => {
                let rest = &s[i + 1..];
                let ws = whitespace_len(rest);
                if rest[..ws].contains('\n') {
                    // A blank line: the paragraph ends after all of its whitespace.
                    Some(i + 1 + ws)
                } else if starts_block_line(&rest[ws..]) {
                    Some(i + 1 + ws)
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(end) = boundary {
            if end > start && end < s.len() {
                spans.push(region.start + start..region.start + end);
                start = end;
            }
            while chars.peek().is_some_and(|&(j, _)| j < end) {
                chars.next();
            }
        }
    }
    if start < s.len() {
        spans.push(region.start + start..region.end);
    }
}

fn skip_closers(s: &str, mut at: usize) -> usize {
    for c in s[at..].chars() {
        if matches!(
            c,
            '"' | '\'' | ')' | ']' | '}' | '»' | '’' | '”' | '」' | '』'
        ) {
            at += c.len_utf8();
        } else {
            break;
        }
    }
    at
}

fn ends_sentence(s: &str, at: usize, terminator: char, next: &str) -> bool {
    if next.chars().next().is_some_and(char::is_lowercase) {
        return false;
    }
    if terminator != '.' {
        return true;
    }
    let word_start = s[..at]
        .rfind(|c: char| c.is_whitespace() || c == '(' || c == '"')
        .map_or(0, |i| i + s[i..].chars().next().map_or(1, char::len_utf8));
    let word = &s[word_start..at];
    let single_letter = {
        let mut cs = word.chars();
        matches!((cs.next(), cs.next()), (Some(c), None) if c.is_alphabetic())
    };
    !(single_letter || ABBREVIATIONS.contains(&word.to_lowercase().as_str()))
}

fn starts_block_line(line: &str) -> bool {
    let mut cs = line.chars();
    match cs.next() {
        Some('-' | '*' | '+') => cs.next() == Some(' '),
        Some('#' | '>' | '|') => true,
        Some(c) if c.is_ascii_digit() => {
            let digits = line.chars().take_while(char::is_ascii_digit).count();
            let rest = &line[digits..];
            rest.starts_with(". ") || rest.starts_with(") ")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sentences(text: &str) -> Vec<&str> {
        split(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn prose_splits_after_terminators() {
        assert_eq!(
            sentences("The build failed. Why? It ran out of memory! Fine."),
            [
                "The build failed. ",
                "Why? ",
                "It ran out of memory! ",
                "Fine."
            ]
        );
    }

    #[test]
    fn abbreviations_and_initials_do_not_end_sentences() {
        assert_eq!(
            sentences("Ask Dr. Smith about e.g. Postgres. J. R. R. Tolkien wrote it."),
            [
                "Ask Dr. Smith about e.g. Postgres. ",
                "J. R. R. Tolkien wrote it."
            ]
        );
    }

    #[test]
    fn decimals_and_lowercase_continuations_do_not_split() {
        assert_eq!(
            sentences("Version 3.14 is out. it works."),
            ["Version 3.14 is out. it works."]
        );
    }

    #[test]
    fn closing_quotes_stay_with_their_sentence() {
        assert_eq!(
            sentences("He said \"stop.\" Then he left."),
            ["He said \"stop.\" ", "Then he left."]
        );
    }

    #[test]
    fn fenced_code_block_is_one_unit() {
        let text = "Here is the fix. Try it:\n```rust\nfn main() {\n    println!(\"a. B\");\n}\n```\nDoes it work?";
        assert_eq!(
            sentences(text),
            [
                "Here is the fix. ",
                "Try it:\n",
                "```rust\nfn main() {\n    println!(\"a. B\");\n}\n```\n",
                "Does it work?"
            ]
        );
    }

    #[test]
    fn unclosed_fence_runs_to_the_end() {
        let text = "Intro.\n```\nlet a = 1. B = 2;";
        assert_eq!(sentences(text), ["Intro.\n", "```\nlet a = 1. B = 2;"]);
    }

    #[test]
    fn json_document_is_one_unit() {
        let text = r#"{"result": "Done. Next step.", "items": [1, 2]}"#;
        assert_eq!(sentences(text), [text]);
    }

    #[test]
    fn blank_lines_and_list_items_split() {
        assert_eq!(
            sentences("Steps\n\n- install it\n- run it\nthen wait"),
            ["Steps\n\n", "- install it\n", "- run it\nthen wait"]
        );
    }

    #[test]
    fn cjk_terminators_split_without_spaces() {
        assert_eq!(
            sentences("今日は晴れ。明日は雨？"),
            ["今日は晴れ。", "明日は雨？"]
        );
    }

    #[test]
    fn empty_text_has_no_sentences() {
        assert!(split("").is_empty());
    }

    proptest! {
        #[test]
        fn spans_tile_the_text(text in "(\\PC|[ .!?\\n`{}\\[\\]\"]|```|。){0,200}") {
            let spans = split(&text);
            let mut at = 0;
            for r in &spans {
                prop_assert_eq!(r.start, at);
                prop_assert!(r.end > r.start);
                at = r.end;
            }
            prop_assert_eq!(at, text.len());
        }
    }
}
