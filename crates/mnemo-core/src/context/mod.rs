//! Context offloading, the pure part: what an agent's offloaded LLM context becomes before it is
//! stored, and how a prompt is rebuilt from it within a token budget. No IO: the store and the
//! routes are a thin layer over these functions.
//!
//! Flow of `POST /v1/contexts`: [`input::CapturedContext::capture`] validates `messages`/`text`
//! and keeps their exact JSON → [`compress::compress`] stores those bytes → [`chunk::chunk`] cuts
//! the parsed messages into retrieval units (within the embedder's input) →
//! [`summary::candidate_sentences`] + embeddings → [`summary::summarize`].
//! `POST /v1/contexts/reconstruct`: retrieved chunks, memories and summaries → [`pack::pack`].
//!
//! - [`input`]: the request's `messages` or `text`, byte-exact ([`serde_json::value::RawValue`]),
//!   and its parsed view.
//! - [`tokens`]: [`TokenizerKind`], real token counts (`o200k_base`, `cl100k_base`) bundled in the
//!   binary.
//! - [`sentences`]: sentence spans that tile a text (code blocks and JSON kept whole).
//! - [`chunk`]: message-aware, sentence-aware chunks with message range, character span, tokens.
//! - [`summary`]: extractive summary by centrality of sentence embeddings.
//! - [`pack`]: deduplicating, budget-safe prompt packing.
//! - [`compress`]: zstd with an optional trained dictionary, and the method names stored.
//! - [`corpus`]: seeded synthetic chat transcripts for tests and benchmarks.

pub mod chunk;
pub mod compress;
pub mod corpus;
pub mod input;
pub mod pack;
pub mod sentences;
pub mod summary;
pub mod tokens;

pub use chunk::{chunk, Chunk, ChunkParams, EmbedLimit, LimitTooSmall};
pub use compress::{
    compress, decompress, CompressError, Compressed, CompressionMethod, Dictionary,
};
pub use input::{CapturedContext, ContextKind, Message};
pub use pack::{pack, Candidate, ItemKind, PackOrder, Packed, PackedItem};
pub use summary::{SummaryLimit, SummarySentence};
pub use tokens::TokenizerKind;

#[cfg(test)]
mod tests {
    //! The byte-exact promise, end to end through the pure layers: a request body parsed the way
    //! the server parses it, captured, compressed, decompressed, rebuilt and answered.

    use super::*;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    struct Request {
        messages: Option<Box<RawValue>>,
        text: Option<Box<RawValue>>,
    }

    #[derive(Serialize)]
    struct Response<'a> {
        context_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        messages: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<&'a RawValue>,
    }

    /// Whitespace JSON allows between tokens.
    fn ws() -> impl Strategy<Value = String> {
        prop_oneof![4 => Just(String::new()), 1 => "[ \t\r\n]{1,3}"]
    }

    /// A piece of a JSON string literal: plain text (any non-control character, emoji, CJK),
    /// or an escape of any kind (control characters must be escaped in JSON).
    fn string_piece() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => "[^\"\\\\\\x00-\\x1f]{1,12}",
            1 => prop_oneof![
                Just("\\\"".to_owned()), Just("\\\\".to_owned()), Just("\\/".to_owned()),
                Just("\\b".to_owned()), Just("\\f".to_owned()), Just("\\n".to_owned()),
                Just("\\r".to_owned()), Just("\\t".to_owned()),
            ],
            1 => (0u32..0x20).prop_map(|c| format!("\\u{c:04x}")),
            1 => (0x20u32..0xD800).prop_map(|c| format!("\\u{c:04X}")),
            1 => (0x10000u32..0x10FFFF).prop_map(|c| {
                let v = c - 0x10000;
                format!("\\u{:04x}\\u{:04x}", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
            }),
            1 => Just("😀👩‍👩‍👧".to_owned()),
        ]
    }

    fn string_literal(min: usize, max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(string_piece(), min..max).prop_map(|p| format!("\"{}\"", p.concat()))
    }

    /// Numbers as clients spell them, including ones a float cannot hold.
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            Just("-0".to_owned()),
            Just("1e400".to_owned()),
            Just("-1.0E-400".to_owned()),
            Just("1.50e+2".to_owned()),
            Just("123456789012345678901234567890".to_owned()),
            Just("0.1000".to_owned()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.to_string()),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            number(),
            string_literal(0, 6),
        ];
        leaf.prop_recursive(6, 48, 5, |inner| {
            prop_oneof![
                (prop::collection::vec((inner.clone(), ws()), 0..5)).prop_map(|items| {
                    let body: Vec<String> = items
                        .into_iter()
                        .map(|(v, w)| format!("{w}{v}{w}"))
                        .collect();
                    format!("[{}]", body.join(","))
                }),
                (prop::collection::vec((string_literal(0, 3), inner, ws()), 0..5)).prop_map(
                    |fields| {
                        let body: Vec<String> = fields
                            .into_iter()
                            .map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}"))
                            .collect();
                        format!("{{{}}}", body.join(","))
                    }
                ),
            ]
        })
    }

    /// A message object: `role` and `content` among other fields, in any order.
    fn message() -> impl Strategy<Value = String> {
        let content = prop_oneof![
            4 => string_literal(0, 20),
            1 => string_literal(200, 2000),
        ];
        let keys =
            prop::sample::subsequence(vec!["name", "tool_call_id", "tool_calls", "meta"], 0..=4);
        let values = prop::collection::vec(value(), 4);
        (
            string_literal(1, 4),
            content,
            keys,
            values,
            any::<prop::sample::Index>(),
            ws(),
        )
            .prop_map(|(role, content, keys, values, at, w)| {
                let mut fields: Vec<String> = keys
                    .iter()
                    .zip(values)
                    .map(|(k, v)| format!("\"{k}\"{w}:{w}{v}"))
                    .collect();
                let at = at.index(fields.len() + 1);
                fields.insert(at, format!("\"role\"{w}:{w}{role}"));
                fields.insert(at + 1, format!("\"content\":{w}{content}"));
                format!("{{{w}{}{w}}}", fields.join(&format!("{w},{w}")))
            })
    }

    fn messages() -> impl Strategy<Value = String> {
        (prop::collection::vec((message(), ws()), 1..8)).prop_map(|ms| {
            format!(
                "[{}]",
                ms.into_iter()
                    .map(|(m, w)| format!("{w}{m}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
    }

    /// Sends `field: raw` in a request body, then does what the service does with it, and returns
    /// the bytes the client gets back for that field.
    fn round_trip(
        field: &str,
        raw: &str,
        level: i32,
        dict: Option<&Dictionary>,
    ) -> (String, String) {
        let body = format!("{{\"metadata\":{{\"a\":[1,{{\"b\":null}}]}}, \"{field}\" : {raw} }}");
        let req: Request = serde_json::from_str(&body).unwrap();
        let captured = CapturedContext::capture(req.messages, req.text).unwrap();
        let kind = captured.kind();
        let stored = compress(captured.raw().get().as_bytes(), level, dict).unwrap();
        let method: CompressionMethod = stored.method.to_string().parse().unwrap();
        let bytes = decompress(&stored.bytes, method, stored.original_bytes, dict).unwrap();
        let back = CapturedContext::from_stored(kind, bytes).unwrap();
        assert_eq!(back.messages(), captured.messages());
        let response = match kind {
            ContextKind::Messages => Response {
                context_id: "c",
                messages: Some(back.raw()),
                text: None,
            },
            ContextKind::Text => Response {
                context_id: "c",
                messages: None,
                text: Some(back.raw()),
            },
        };
        let json = serde_json::to_string(&response).unwrap();
        let prefix = format!("{{\"context_id\":\"c\",\"{field}\":");
        let returned = json
            .strip_prefix(&prefix)
            .and_then(|s| s.strip_suffix('}'))
            .unwrap()
            .to_owned();
        (returned, back.raw().get().to_owned())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn messages_come_back_byte_identical(raw in messages(), level in prop::sample::select(vec![1, 3, 9, 19])) {
            let (returned, stored) = round_trip("messages", &raw, level, None);
            prop_assert_eq!(&stored, &raw);
            prop_assert_eq!(&returned, &raw);
        }

        #[test]
        fn text_comes_back_byte_identical(raw in string_literal(1, 200)) {
            let (returned, _) = round_trip("text", &raw, 3, None);
            prop_assert_eq!(returned, raw);
        }
    }

    #[test]
    fn messages_with_a_dictionary_come_back_byte_identical() {
        let samples: Vec<Vec<u8>> = (0..200u64)
            .map(|s| corpus::generate(s, 300).messages_json.into_bytes())
            .collect();
        let dict = Dictionary::train(&samples, 16 * 1024).unwrap();
        let raw = corpus::generate(999, 2_000).messages_json;
        let (returned, _) = round_trip("messages", &raw, 3, Some(&dict));
        assert_eq!(returned, raw);
    }
}
