//! A context as the client sent it: the exact JSON text of `messages` or `text`, and a parsed view
//! of it for chunking.
//!
//! The API promises to hand back the very bytes it was given (key order, number spelling, unicode
//! escapes, whitespace inside the value). A `serde_json::Value` cannot keep that promise (it
//! re-serializes numbers and escapes), so the request type holds the field as a
//! `Box<RawValue>` and [`CapturedContext::capture`] keeps it whole: [`CapturedContext::raw`] is
//! what gets compressed and stored. The parsed view ([`Message`]) reads only `role` and `content`;
//! every other field of a message (`name`, `tool_call_id`, `tool_calls`, anything) is skipped
//! without being converted, so even a number serde_json could not represent (`1e400`) survives.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::types::text_enum;
use crate::Invalid;

text_enum!(
    /// Which of the two shapes a context was sent in.
    ContextKind { Messages => "messages", Text => "text" }
);

/// One message of the parsed view. A `text` context is one message without a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Option<String>,
    pub content: String,
}

/// A validated context: its raw JSON (exactly as sent) and the parsed view of it.
#[derive(Debug, Clone)]
pub struct CapturedContext {
    kind: ContextKind,
    raw: Box<RawValue>,
    messages: Vec<Message>,
}

impl CapturedContext {
    /// Validates the `messages` and `text` fields of a request, exactly one of which must be
    /// present: `messages` a non-empty array of objects each with a string `role` and a string
    /// `content` (which may be empty), or `text` a non-empty string.
    pub fn capture(
        messages: Option<Box<RawValue>>,
        text: Option<Box<RawValue>>,
    ) -> Result<Self, Invalid> {
        match (messages, text) {
            (Some(raw), None) => Self::from_raw(ContextKind::Messages, raw),
            (None, Some(raw)) => Self::from_raw(ContextKind::Text, raw),
            (Some(_), Some(_)) => Err(Invalid::new(
                "text",
                "give either messages or text, not both",
            )),
            (None, None) => Err(Invalid::new(
                "messages",
                "either messages (an array of {role, content}) or text (a string) is required",
            )),
        }
    }

    /// Rebuilds a context from its stored (decompressed) bytes, e.g. to chunk it again. Fails
    /// only if the bytes are not what [`CapturedContext::capture`] accepted.
    pub fn from_stored(kind: ContextKind, bytes: Vec<u8>) -> Result<Self, Invalid> {
        let field = kind.as_str();
        let text = String::from_utf8(bytes)
            .map_err(|_| Invalid::new(field, "stored context is not UTF-8"))?;
        let raw = RawValue::from_string(text)
            .map_err(|e| Invalid::new(field, format!("stored context is not JSON: {e}")))?;
        Self::from_raw(kind, raw)
    }

    fn from_raw(kind: ContextKind, raw: Box<RawValue>) -> Result<Self, Invalid> {
        let messages = match kind {
            ContextKind::Messages => parse_messages(raw.get())?,
            ContextKind::Text => vec![Message {
                role: None,
                content: parse_text(raw.get())?,
            }],
        };
        Ok(Self {
            kind,
            raw,
            messages,
        })
    }

    pub fn kind(&self) -> ContextKind {
        self.kind
    }

    /// The field's JSON exactly as sent: the bytes to compress and store.
    pub fn raw(&self) -> &RawValue {
        &self.raw
    }

    pub fn into_raw(self) -> Box<RawValue> {
        self.raw
    }

    /// The parsed view, in order; never empty.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }
}

fn parse_messages(raw: &str) -> Result<Vec<Message>, Invalid> {
    let items: Vec<&RawValue> = serde_json::from_str(raw)
        .map_err(|_| Invalid::new("messages", "must be an array of {role, content} objects"))?;
    if items.is_empty() {
        return Err(Invalid::new("messages", "must not be empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_message(i, item.get()))
        .collect()
}

fn parse_message(i: usize, raw: &str) -> Result<Message, Invalid> {
    let field = format!("messages[{i}]");
    if !raw.starts_with('{') {
        return Err(Invalid::new(
            field,
            "must be an object with string role and content",
        ));
    }
    let fields: MessageFields =
        serde_json::from_str(raw).map_err(|e| Invalid::new(&field, e.to_string()))?;
    let role = match fields.role {
        Some(JsonString::String(s)) => s,
        Some(JsonString::Other(kind)) => {
            return Err(Invalid::new(
                format!("{field}.role"),
                format!("must be a string, got {kind}"),
            ))
        }
        None => return Err(Invalid::new(format!("{field}.role"), "is required")),
    };
    let content = match fields.content {
        Some(JsonString::String(s)) => s,
        Some(JsonString::Other(kind)) => {
            return Err(Invalid::new(
                format!("{field}.content"),
                format!("must be a string, got {kind}"),
            ))
        }
        None => return Err(Invalid::new(format!("{field}.content"), "is required")),
    };
    Ok(Message {
        role: Some(role),
        content,
    })
}

fn parse_text(raw: &str) -> Result<String, Invalid> {
    match serde_json::from_str::<JsonString>(raw) {
        Ok(JsonString::String(s)) if s.is_empty() => Err(Invalid::new("text", "must not be empty")),
        Ok(JsonString::String(s)) => Ok(s),
        Ok(JsonString::Other(kind)) => Err(Invalid::new(
            "text",
            format!("must be a string, got {kind}"),
        )),
        Err(e) => Err(Invalid::new("text", e.to_string())),
    }
}

/// `role` and `content` of a message; serde skips every other field without converting it.
#[derive(Deserialize)]
struct MessageFields {
    #[serde(default)]
    role: Option<JsonString>,
    #[serde(default)]
    content: Option<JsonString>,
}

/// A JSON value that should be a string; anything else is remembered by its kind only, for the
/// error message (`null` arrives as `None` of the surrounding `Option`).
enum JsonString {
    String(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for JsonString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<JsonString, E> {
                Ok(JsonString::String(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<JsonString, E> {
                Ok(JsonString::String(s))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<JsonString, E> {
                Ok(JsonString::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<JsonString, E> {
                Ok(JsonString::Other("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<JsonString, E> {
                Ok(JsonString::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<JsonString, E> {
                Ok(JsonString::Other("a number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsonString, E> {
                Ok(JsonString::Other("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonString, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonString::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonString, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JsonString::Other("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Option<Box<RawValue>> {
        Some(RawValue::from_string(s.to_owned()).unwrap())
    }

    fn refused(messages: Option<&str>, text: Option<&str>) -> Invalid {
        CapturedContext::capture(messages.and_then(raw), text.and_then(raw)).unwrap_err()
    }

    #[test]
    fn messages_are_parsed_in_order_with_their_roles() {
        let c = CapturedContext::capture(
            raw(r#"[{"role":"user","content":"hi"},{"content":"yo","role":"assistant","name":"bot"}]"#),
            None,
        )
        .unwrap();
        assert_eq!(c.kind(), ContextKind::Messages);
        let roles: Vec<_> = c.messages().iter().map(|m| m.role.as_deref()).collect();
        assert_eq!(roles, [Some("user"), Some("assistant")]);
        assert_eq!(c.messages()[1].content, "yo");
    }

    #[test]
    fn raw_bytes_are_kept_exactly() {
        let sent = r#"[ {"role":"tool", "content":"\u00e9\ud83d\ude00", "tool_call_id":"c1", "n": 1.50e+2, "big": 1e400} ]"#;
        let c = CapturedContext::capture(raw(sent), None).unwrap();
        assert_eq!(c.raw().get(), sent);
        assert_eq!(c.messages()[0].content, "é😀");
    }

    #[test]
    fn text_is_one_message_without_role() {
        let c = CapturedContext::capture(None, raw(r#""just some text""#)).unwrap();
        assert_eq!(c.kind(), ContextKind::Text);
        assert_eq!(
            c.messages(),
            [Message {
                role: None,
                content: "just some text".into()
            }]
        );
    }

    #[test]
    fn empty_content_is_accepted() {
        let c = CapturedContext::capture(raw(r#"[{"role":"assistant","content":""}]"#), None);
        assert!(c.is_ok());
    }

    #[test]
    fn empty_messages_are_refused() {
        assert_eq!(refused(Some("[]"), None).field, "messages");
    }

    #[test]
    fn messages_not_an_array_are_refused() {
        assert_eq!(refused(Some(r#"{"role":"user"}"#), None).field, "messages");
    }

    #[test]
    fn a_message_that_is_not_an_object_names_its_index() {
        let e = refused(Some(r#"[{"role":"user","content":"a"}, "b"]"#), None);
        assert_eq!(e.field, "messages[1]");
    }

    #[test]
    fn non_string_content_names_the_field() {
        let e = refused(
            Some(
                r#"[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"user","content":"c"},{"role":"user","content":[{"type":"text"}]}]"#,
            ),
            None,
        );
        assert_eq!(e.field, "messages[3].content");
        assert!(e.message.contains("an array"), "{e}");
    }

    #[test]
    fn null_content_is_refused() {
        let e = refused(Some(r#"[{"role":"assistant","content":null}]"#), None);
        assert_eq!(e.field, "messages[0].content");
    }

    #[test]
    fn missing_role_is_refused() {
        let e = refused(Some(r#"[{"content":"x"}]"#), None);
        assert_eq!(e.field, "messages[0].role");
    }

    #[test]
    fn numeric_role_is_refused() {
        let e = refused(Some(r#"[{"role":7,"content":"x"}]"#), None);
        assert_eq!(e.field, "messages[0].role");
    }

    #[test]
    fn duplicate_role_is_refused() {
        let e = refused(
            Some(r#"[{"role":"user","role":"system","content":"x"}]"#),
            None,
        );
        assert_eq!(e.field, "messages[0]");
    }

    #[test]
    fn both_messages_and_text_are_refused() {
        let e = refused(Some(r#"[{"role":"user","content":"x"}]"#), Some(r#""y""#));
        assert_eq!(e.field, "text");
    }

    #[test]
    fn neither_messages_nor_text_is_refused() {
        assert_eq!(refused(None, None).field, "messages");
    }

    #[test]
    fn non_string_text_is_refused() {
        assert_eq!(refused(None, Some("42")).field, "text");
    }

    #[test]
    fn empty_text_is_refused() {
        assert_eq!(refused(None, Some(r#""""#)).field, "text");
    }

    #[test]
    fn stored_bytes_rebuild_the_same_context() {
        let sent = r#"[{"role":"user","content":"a"}]"#;
        let c = CapturedContext::capture(raw(sent), None).unwrap();
        let back =
            CapturedContext::from_stored(ContextKind::Messages, sent.as_bytes().to_vec()).unwrap();
        assert_eq!(back.raw().get(), c.raw().get());
        assert_eq!(back.messages(), c.messages());
    }
}
