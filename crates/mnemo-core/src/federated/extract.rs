//! What a participant's memories say besides their embeddings: the `outcome`/`taskType`-style
//! labels and the lesson strings, read out of each memory's JSON content and metadata and
//! counted, so that a contribution stores frequencies rather than the memories.
//!
//! A label is a top-level field of `content` (or, failing that, of `metadata`) whose value is a
//! string, number or boolean; a lesson is a string, or a string in an array, under a lesson field.
//! Everything is capped here only to bound what is stored ([`MAX_RAW_CHARS`],
//! [`MAX_LESSONS_PER_FIELD`]); the release bounds each tenant's influence itself
//! ([`super::lessons`]), whatever a contribution holds.

use std::collections::BTreeMap;

use serde_json::Value;

/// Longest label value or lesson kept from a memory (characters); the release normalizes and
/// cuts further.
pub const MAX_RAW_CHARS: usize = 1000;
/// Lessons read from one field of one memory at most.
pub const MAX_LESSONS_PER_FIELD: usize = 16;

/// The label and lesson fields a session reads when it names none.
pub const DEFAULT_LABEL_FIELDS: &[&str] = &["outcome", "taskType"];
pub const DEFAULT_LESSON_FIELDS: &[&str] = &["lessons", "lesson"];

fn cut(s: &str) -> String {
    s.chars().take(MAX_RAW_CHARS).collect()
}

fn field<'a>(content: &'a Value, metadata: &'a Value, name: &str) -> Option<&'a Value> {
    content.get(name).or_else(|| metadata.get(name))
}

/// Label and lesson frequencies over a tenant's matching memories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    labels: BTreeMap<(String, String), u64>,
    lessons: BTreeMap<String, u64>,
}

impl Tally {
    /// Counts the labels and lessons of one memory.
    pub fn add_memory(
        &mut self,
        content: &Value,
        metadata: &Value,
        label_fields: &[String],
        lesson_fields: &[String],
    ) {
        for name in label_fields {
            let value = match field(content, metadata, name) {
                Some(Value::String(s)) => cut(s),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                _ => continue,
            };
            *self.labels.entry((name.clone(), value)).or_default() += 1;
        }
        for name in lesson_fields {
            let found: Vec<&str> = match field(content, metadata, name) {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .take(MAX_LESSONS_PER_FIELD)
                    .collect(),
                _ => continue,
            };
            for lesson in found {
                *self.lessons.entry(cut(lesson)).or_default() += 1;
            }
        }
    }

    /// `[[field, value, count], …]`, as a contribution stores them.
    pub fn labels_json(&self) -> Value {
        Value::Array(
            self.labels
                .iter()
                .map(|((f, v), c)| serde_json::json!([f, v, c]))
                .collect(),
        )
    }

    /// `[[text, count], …]`, as a contribution stores them.
    pub fn lessons_json(&self) -> Value {
        Value::Array(
            self.lessons
                .iter()
                .map(|(l, c)| serde_json::json!([l, c]))
                .collect(),
        )
    }

    /// Reads stored frequencies back; malformed entries are skipped (they cannot come from
    /// [`Tally::labels_json`] / [`Tally::lessons_json`]).
    pub fn from_json(labels: &Value, lessons: &Value) -> Self {
        let mut t = Tally::default();
        for row in labels.as_array().into_iter().flatten() {
            if let (Some(f), Some(v), Some(c)) = (
                row.get(0).and_then(Value::as_str),
                row.get(1).and_then(Value::as_str),
                row.get(2).and_then(Value::as_u64),
            ) {
                *t.labels.entry((f.to_owned(), v.to_owned())).or_default() += c;
            }
        }
        for row in lessons.as_array().into_iter().flatten() {
            if let (Some(l), Some(c)) = (
                row.get(0).and_then(Value::as_str),
                row.get(1).and_then(Value::as_u64),
            ) {
                *t.lessons.entry(l.to_owned()).or_default() += c;
            }
        }
        t
    }

    /// Each label and lesson repeated as often as it was counted (at most `cap` times each), the
    /// shape [`super::insight::Contribution`] takes. With `cap` at least the number of memories a
    /// contribution is computed from, nothing is lost.
    pub fn expand(&self, cap: u64) -> (Vec<(String, String)>, Vec<String>) {
        let labels = self
            .labels
            .iter()
            .flat_map(|((f, v), c)| {
                std::iter::repeat_n((f.clone(), v.clone()), (*c).min(cap) as usize)
            })
            .collect();
        let lessons = self
            .lessons
            .iter()
            .flat_map(|(l, c)| std::iter::repeat_n(l.clone(), (*c).min(cap) as usize))
            .collect();
        (labels, lessons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_and_lessons_come_from_content_then_metadata() {
        let mut t = Tally::default();
        let labels = fields(DEFAULT_LABEL_FIELDS);
        let lessons = fields(DEFAULT_LESSON_FIELDS);
        t.add_memory(
            &json!({"taskType": "learning", "outcome": "success", "lessons": ["Important lesson", 3]}),
            &json!({}),
            &labels,
            &lessons,
        );
        t.add_memory(
            &json!("just text"),
            &json!({"outcome": true, "lesson": "Important lesson"}),
            &labels,
            &lessons,
        );
        let (l, s) = t.expand(100);
        assert_eq!(
            l,
            vec![
                ("outcome".into(), "success".into()),
                ("outcome".into(), "true".into()),
                ("taskType".into(), "learning".into()),
            ]
        );
        assert_eq!(s, vec!["Important lesson".to_string(); 2]);
    }

    #[test]
    fn stored_frequencies_read_back_the_same() {
        let mut t = Tally::default();
        for i in 0..5 {
            t.add_memory(
                &json!({"outcome": if i % 2 == 0 { "ok" } else { "bad" }, "lessons": ["a", "b"]}),
                &json!({}),
                &fields(&["outcome"]),
                &fields(&["lessons"]),
            );
        }
        let back = Tally::from_json(&t.labels_json(), &t.lessons_json());
        assert_eq!(back, t);
        assert_eq!(back.expand(2).1.len(), 4, "each lesson capped at 2");
    }

    #[test]
    fn values_and_lesson_lists_are_bounded() {
        let mut t = Tally::default();
        let long = "x".repeat(5000);
        let many: Vec<String> = (0..100).map(|i| format!("l{i}")).collect();
        t.add_memory(
            &json!({"outcome": long, "lessons": many}),
            &json!({}),
            &fields(&["outcome"]),
            &fields(&["lessons"]),
        );
        let (l, s) = t.expand(10);
        assert_eq!(l[0].1.chars().count(), MAX_RAW_CHARS);
        assert_eq!(s.len(), MAX_LESSONS_PER_FIELD);
    }
}
