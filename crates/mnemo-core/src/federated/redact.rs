//! Redaction of identifying text: the `secure` level applies it to lessons and labels before
//! they are counted, and sharing rules apply it (as an anonymization profile) to the JSON content
//! of memories they expose.
//!
//! Redaction is best-effort pattern matching, not a privacy guarantee: it removes the obvious
//! identifiers (e-mail addresses, phone and other long numbers, configured names and patterns).
//! The guarantee of the `differential`/`secure` levels comes from the noise and the thresholds.

use std::borrow::Cow;
use std::collections::HashSet;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::Invalid;

fn yes() -> bool {
    true
}

/// What to remove or mask. Field names match JSON object keys at any depth, case-insensitively.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactionProfile {
    /// Keys removed with their values.
    #[serde(default)]
    pub strip_fields: Vec<String>,
    /// Keys whose values are replaced by `"[redacted]"`.
    #[serde(default)]
    pub redact_fields: Vec<String>,
    /// Mask e-mail addresses as `[email]`.
    #[serde(default = "yes")]
    pub emails: bool,
    /// Mask phone numbers and other runs of 7 or more digits (spaces, dots, dashes and brackets
    /// allowed between them) as `[number]`.
    #[serde(default = "yes")]
    pub numbers: bool,
    /// Names masked as `[name]` where they appear as whole words (case-insensitive).
    #[serde(default)]
    pub names: Vec<String>,
    /// Further regular expressions (Rust `regex` syntax) masked as `[redacted]`.
    #[serde(default)]
    pub patterns: Vec<String>,
}

impl Default for RedactionProfile {
    /// E-mails and numbers masked, nothing stripped: the `secure` level's default.
    fn default() -> Self {
        Self {
            strip_fields: Vec::new(),
            redact_fields: Vec::new(),
            emails: true,
            numbers: true,
            names: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

impl RedactionProfile {
    pub const MAX_FIELDS: usize = 64;
    pub const MAX_NAMES: usize = 1000;
    pub const MAX_PATTERNS: usize = 32;
    pub const MAX_PATTERN_LEN: usize = 200;
    /// Compiled size limit of each expression, so a profile cannot make matching slow.
    const REGEX_SIZE_LIMIT: usize = 1 << 20;

    /// Checks the profile and compiles its expressions.
    pub fn compile(&self) -> Result<Redactor, Invalid> {
        if self.strip_fields.len() > Self::MAX_FIELDS || self.redact_fields.len() > Self::MAX_FIELDS
        {
            return Err(Invalid::new(
                "redaction",
                format!("at most {} fields to strip or redact", Self::MAX_FIELDS),
            ));
        }
        if self.names.len() > Self::MAX_NAMES {
            return Err(Invalid::new(
                "redaction.names",
                format!("at most {} names", Self::MAX_NAMES),
            ));
        }
        if self.patterns.len() > Self::MAX_PATTERNS {
            return Err(Invalid::new(
                "redaction.patterns",
                format!("at most {} patterns", Self::MAX_PATTERNS),
            ));
        }
        let build = |field: &str, src: &str| {
            RedactionProfile::build_regex(src).map_err(|e| Invalid::new(field, e.to_string()))
        };
        let mut rules = Vec::new();
        if self.emails {
            rules.push((
                build("emails", r"(?i)[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")?,
                "[email]",
            ));
        }
        if self.numbers {
            rules.push((build("numbers", r"\+?\d(?:[ ().-]*\d){6,}")?, "[number]"));
        }
        let names: Vec<String> = self
            .names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(regex::escape)
            .collect();
        if !names.is_empty() {
            let src = format!(r"(?i)\b(?:{})\b", names.join("|"));
            rules.push((build("redaction.names", &src)?, "[name]"));
        }
        for p in &self.patterns {
            if p.len() > Self::MAX_PATTERN_LEN {
                return Err(Invalid::new(
                    "redaction.patterns",
                    format!(
                        "each pattern must be at most {} bytes",
                        Self::MAX_PATTERN_LEN
                    ),
                ));
            }
            rules.push((build("redaction.patterns", p)?, "[redacted]"));
        }
        let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<HashSet<_>>();
        Ok(Redactor {
            strip: lower(&self.strip_fields),
            redact: lower(&self.redact_fields),
            rules,
        })
    }

    fn build_regex(src: &str) -> Result<Regex, regex::Error> {
        RegexBuilder::new(src)
            .size_limit(Self::REGEX_SIZE_LIMIT)
            .dfa_size_limit(Self::REGEX_SIZE_LIMIT)
            .build()
    }
}

/// A compiled [`RedactionProfile`].
#[derive(Debug, Clone)]
pub struct Redactor {
    strip: HashSet<String>,
    redact: HashSet<String>,
    rules: Vec<(Regex, &'static str)>,
}

impl Redactor {
    /// `s` with every match of the profile's patterns masked.
    pub fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        for (re, mask) in &self.rules {
            if let Cow::Owned(replaced) = re.replace_all(&out, *mask) {
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    /// A copy of `v` with the profile's fields stripped or redacted and every string (object keys
    /// included) passed through [`Redactor::text`].
    pub fn json(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.text(s).into_owned()),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.json(x)).collect()),
            Value::Object(o) => {
                let mut out = serde_json::Map::with_capacity(o.len());
                for (k, x) in o {
                    let key = k.to_lowercase();
                    if self.strip.contains(&key) {
                        continue;
                    }
                    let value = if self.redact.contains(&key) {
                        Value::String("[redacted]".into())
                    } else {
                        self.json(x)
                    };
                    // Two keys may redact to the same text: the first one wins.
                    out.entry(self.text(k).into_owned()).or_insert(value);
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn default() -> Redactor {
        RedactionProfile::default().compile().unwrap()
    }

    #[test]
    fn emails_and_long_numbers_are_masked() {
        let r = default();
        assert_eq!(
            r.text("Mail jane.doe+x@example.co.uk or call +1 (555) 123-4567."),
            "Mail [email] or call [number]."
        );
        assert_eq!(r.text("card 4111 1111 1111 1111"), "card [number]");
    }

    #[test]
    fn short_numbers_and_plain_text_are_kept() {
        let r = default();
        assert_eq!(
            r.text("retry 3 times, wait 250 ms"),
            "retry 3 times, wait 250 ms"
        );
        assert!(matches!(r.text("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn configured_names_are_masked_as_whole_words_only() {
        let r = RedactionProfile {
            names: vec!["Alice".into(), "Bob Smith".into()],
            ..RedactionProfile::default()
        }
        .compile()
        .unwrap();
        assert_eq!(
            r.text("alice asked BOB SMITH; Alicetown is a place"),
            "[name] asked [name]; Alicetown is a place"
        );
    }

    #[test]
    fn custom_patterns_are_masked() {
        let r = RedactionProfile {
            patterns: vec![r"ACME-\d+".into()],
            ..RedactionProfile::default()
        }
        .compile()
        .unwrap();
        assert_eq!(r.text("ticket ACME-42 closed"), "ticket [redacted] closed");
    }

    #[test]
    fn json_fields_are_stripped_or_redacted_at_any_depth() {
        let r = RedactionProfile {
            strip_fields: vec!["user_id".into()],
            redact_fields: vec!["Customer".into()],
            ..RedactionProfile::default()
        }
        .compile()
        .unwrap();
        let v = json!({
            "user_id": 7,
            "notes": ["write to a@b.io"],
            "nested": {"customer": {"name": "x"}, "USER_ID": "y", "n": 3},
        });
        assert_eq!(
            r.json(&v),
            json!({
                "notes": ["write to [email]"],
                "nested": {"customer": "[redacted]", "n": 3},
            })
        );
    }

    #[test]
    fn bad_profiles_are_refused_with_the_field() {
        let bad = RedactionProfile {
            patterns: vec!["(".into()],
            ..RedactionProfile::default()
        };
        assert_eq!(bad.compile().unwrap_err().field, "redaction.patterns");
        let too_many = RedactionProfile {
            patterns: vec!["a".into(); 33],
            ..RedactionProfile::default()
        };
        assert!(too_many.compile().is_err());
        let profile: Result<RedactionProfile, _> =
            serde_json::from_value(json!({"strip_fields": ["a"], "unknown": 1}));
        assert!(profile.is_err());
    }
}
