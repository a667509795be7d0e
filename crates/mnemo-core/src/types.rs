//! Validated values. Each type can only hold a value that passed its `parse`.

use serde::Serialize;

use crate::Invalid;

/// Dimension of every stored embedding (all-MiniLM-L6-v2).
pub const EMBEDDING_DIM: usize = 384;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema,
        )]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::Invalid;
            fn from_str(s: &str) -> Result<Self, $crate::Invalid> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::Invalid::new(
                        stringify!($name),
                        format!("unknown value {other:?}, expected one of {}",
                            [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// How strictly a tenant is separated from the other tenants of its project.
    IsolationLevel { Strict => "strict", Shared => "shared", Federated => "federated" }
);
text_enum!(
    /// How a federated participant's contributions are protected.
    PrivacyLevel { Basic => "basic", Differential => "differential", Secure => "secure" }
);
text_enum!(
    /// Lifecycle of a federated learning session.
    SessionStatus {
        Forming => "forming", Active => "active", Aggregating => "aggregating",
        Completed => "completed", Failed => "failed",
    }
);
text_enum!(
    /// How insights from participants are combined.
    AggregationMethod { Weighted => "weighted", Consensus => "consensus", Hybrid => "hybrid" }
);
text_enum!(
    /// What retention does with data past its time.
    ArchivalPolicy { Delete => "delete", Archive => "archive", Retain => "retain" }
);

fn check_identifier(field: &str, s: &str, max: usize) -> Result<(), Invalid> {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok {
        return Err(Invalid::new(field, "must start with a letter or digit"));
    }
    if s.len() > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    {
        return Err(Invalid::new(
            field,
            "may contain only letters, digits, '.', '_', ':' and '-'",
        ));
    }
    Ok(())
}

/// A tenant's public identifier (`tenants.tenant_id`), e.g. `tenant-001`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TenantKey(String);

impl TenantKey {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        check_identifier("tenant_id", s, 128)?;
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client's identifier of a memory, unique within its tenant: 1–255 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct MemoryId(String);

impl MemoryId {
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(Invalid::new("memory_id", "must be 1 to 255 bytes"));
        }
        if s.chars().any(char::is_control) || s.trim() != s {
            return Err(Invalid::new(
                "memory_id",
                "must not contain control characters or leading/trailing spaces",
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn generate() -> Self {
        Self(format!("mem_{}", uuid::Uuid::new_v4().simple()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A display name: trimmed, 1–200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        let t = s.trim();
        if t.is_empty() {
            return Err(Invalid::new(field, "must not be empty"));
        }
        if t.chars().count() > 200 {
            return Err(Invalid::new(field, "must be at most 200 characters"));
        }
        if t.chars().any(char::is_control) {
            return Err(Invalid::new(field, "must not contain control characters"));
        }
        Ok(Self(t.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A score in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct RelevanceScore(f64);

impl RelevanceScore {
    pub fn parse(field: &str, v: f64) -> Result<Self, Invalid> {
        if !(0.0..=1.0).contains(&v) {
            return Err(Invalid::new(field, "must be a number between 0 and 1"));
        }
        Ok(Self(v))
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

/// A 384-dimensional vector of finite values.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    pub fn parse(field: &str, v: Vec<f32>) -> Result<Self, Invalid> {
        if v.len() != EMBEDDING_DIM {
            return Err(Invalid::new(
                field,
                format!("must have {EMBEDDING_DIM} dimensions, got {}", v.len()),
            ));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Invalid::new(field, "must contain only finite numbers"));
        }
        if v.iter().all(|x| *x == 0.0) {
            return Err(Invalid::new(
                field,
                "must not be the zero vector (cosine is undefined)",
            ));
        }
        Ok(Self(v))
    }
    /// Parses JSON numbers, refusing values that do not fit an f32.
    pub fn parse_f64(field: &str, v: &[f64]) -> Result<Self, Invalid> {
        if v.iter()
            .any(|x| !x.is_finite() || x.abs() > f32::MAX as f64)
        {
            return Err(Invalid::new(
                field,
                "must contain only finite 32-bit numbers",
            ));
        }
        Self::parse(field, v.iter().map(|x| *x as f32).collect())
    }
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
    pub fn into_vec(self) -> Vec<f32> {
        self.0
    }
}

/// Tags of a memory: at most 64, each 1–100 characters, duplicates removed, order kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(Vec<String>);

impl Tags {
    pub const MAX: usize = 64;

    pub fn parse(field: &str, tags: Vec<String>) -> Result<Self, Invalid> {
        if tags.len() > Self::MAX {
            return Err(Invalid::new(field, format!("at most {} tags", Self::MAX)));
        }
        let mut out: Vec<String> = Vec::with_capacity(tags.len());
        for t in tags {
            if t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control) {
                return Err(Invalid::new(
                    field,
                    "each tag must be 1 to 100 characters without control characters",
                ));
            }
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(Self(out))
    }
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A relationship type of the knowledge graph, e.g. `caused_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationType(String);

impl RelationType {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let ok = s.len() <= 64
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if !ok {
            return Err(Invalid::new(
                "relationship_type",
                "must be 1 to 64 characters: a letter, then letters, digits, '_', '.', ':' or '-'",
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Nesting depth of a JSON value (a scalar is 0).
pub fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// How many JSON values `v` holds, itself included: every object, array and scalar in it.
pub fn json_values(v: &serde_json::Value) -> usize {
    1 + match v {
        serde_json::Value::Array(a) => a.iter().map(json_values).sum(),
        serde_json::Value::Object(o) => o.values().map(json_values).sum(),
        _ => 0,
    }
}

/// Refuses JSON that PostgreSQL's jsonb cannot hold (NUL characters in strings or keys) or that
/// nests deeper than `max_depth`.
pub fn check_json(field: &str, v: &serde_json::Value, max_depth: usize) -> Result<(), Invalid> {
    if json_depth(v) > max_depth {
        return Err(Invalid::new(
            field,
            format!("nests deeper than {max_depth} levels"),
        ));
    }
    fn has_nul(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(a) => a.iter().any(has_nul),
            serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if has_nul(v) {
        return Err(Invalid::new(
            field,
            "strings must not contain NUL characters",
        ));
    }
    Ok(())
}

/// A JSON object, checked like [`check_json`]; an absent one is `{}`.
pub fn json_object(
    field: &str,
    v: Option<serde_json::Value>,
    max_depth: usize,
) -> Result<serde_json::Value, Invalid> {
    let v = v.unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    if !v.is_object() {
        return Err(Invalid::new(field, "must be a JSON object"));
    }
    check_json(field, &v, max_depth)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_key_accepts_seed_example_and_refuses_junk() {
        assert!(TenantKey::parse("tenant-001").is_ok());
        assert!(TenantKey::parse("").is_err());
        assert!(TenantKey::parse("-x").is_err());
        assert!(TenantKey::parse("a b").is_err());
        assert!(TenantKey::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn embedding_requires_384_finite_nonzero_values() {
        assert!(Embedding::parse("e", vec![0.1; 384]).is_ok());
        assert!(Embedding::parse("e", vec![0.1; 383]).is_err());
        let mut v = vec![0.1; 384];
        v[3] = f32::NAN;
        assert!(Embedding::parse("e", v).is_err());
        assert!(Embedding::parse("e", vec![0.0; 384]).is_err());
        assert!(Embedding::parse_f64("e", &[1e300; 384]).is_err());
    }

    #[test]
    fn relevance_is_bounded() {
        assert!(RelevanceScore::parse("r", 0.0).is_ok());
        assert!(RelevanceScore::parse("r", 1.0).is_ok());
        assert!(RelevanceScore::parse("r", 1.01).is_err());
        assert!(RelevanceScore::parse("r", f64::NAN).is_err());
    }

    #[test]
    fn enums_round_trip_their_text() {
        for l in IsolationLevel::ALL {
            assert_eq!(l.as_str().parse::<IsolationLevel>(), Ok(*l));
        }
        assert!("secret".parse::<IsolationLevel>().is_err());
    }

    #[test]
    fn tags_dedupe_and_bound() {
        let t = Tags::parse("tags", vec!["a".into(), "b".into(), "a".into()]).unwrap();
        assert_eq!(t.as_slice(), ["a", "b"]);
        assert!(Tags::parse("tags", vec!["".into()]).is_err());
        assert!(Tags::parse("tags", vec!["x".into(); 65]).is_err());
    }

    #[test]
    fn json_values_counts_every_value() {
        assert_eq!(json_values(&serde_json::json!(1)), 1);
        assert_eq!(json_values(&serde_json::json!([])), 1);
        assert_eq!(json_values(&serde_json::json!([1, 1, 1])), 4);
        assert_eq!(json_values(&serde_json::json!({"a": {"b": [1, "x"]}})), 5);
    }

    #[test]
    fn json_checks_depth_and_nul() {
        let deep = serde_json::json!({"a": {"b": {"c": 1}}});
        assert_eq!(json_depth(&deep), 3);
        assert!(check_json("c", &deep, 2).is_err());
        assert!(check_json("c", &serde_json::json!({"a": "x\u{0}"}), 8).is_err());
    }
}
