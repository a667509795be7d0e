//! The text of a memory: what gets embedded and what full-text search matches.
//!
//! Rule: if `content` is a JSON string, that string; if it is an object with a string field `text`,
//! that field; otherwise every string value in the content (depth-first, keys in document order)
//! joined by newlines. Numbers, booleans and keys are not text.

use serde_json::Value;

/// Longest text passed to an embedder, in bytes; the model reads at most 256 tokens anyway.
pub const MAX_EMBED_TEXT_BYTES: usize = 8 * 1024;

pub fn embedding_text(content: &Value) -> String {
    match content {
        Value::String(s) => truncate(s.clone()),
        Value::Object(o) => match o.get("text") {
            Some(Value::String(s)) => truncate(s.clone()),
            _ => truncate(all_strings(content)),
        },
        _ => truncate(all_strings(content)),
    }
}

fn all_strings(v: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.join("\n")
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_EMBED_TEXT_BYTES {
        let mut cut = MAX_EMBED_TEXT_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_field_wins() {
        assert_eq!(
            embedding_text(&json!({"text": "hello", "other": "x"})),
            "hello"
        );
    }

    #[test]
    fn falls_back_to_all_strings() {
        let c = json!({"taskType": "learning", "outcome": "success", "lessons": ["Important lesson"], "n": 3});
        assert_eq!(embedding_text(&c), "learning\nsuccess\nImportant lesson");
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(MAX_EMBED_TEXT_BYTES);
        let t = embedding_text(&json!(s));
        assert!(t.len() <= MAX_EMBED_TEXT_BYTES);
    }
}
