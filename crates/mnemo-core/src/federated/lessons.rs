//! What each tenant contributes besides its centroid, bounded per tenant so that one tenant's
//! influence on the released counts is bounded:
//!
//! - **labels** (`outcome`, `taskType`, … values): each tenant contributes at most
//!   `keys_per_tenant` distinct `field=value` keys (its most frequent), each counting at most
//!   `count_per_key`;
//! - **lessons** (strings): each tenant contributes at most `per_tenant` distinct normalized
//!   lessons (its most frequent), each counting 1, so a lesson's count is the number of distinct
//!   tenants that hold it.
//!
//! Under substitution of one tenant (the relation of [`super::aggregate::NEIGHBOURS`]), the summed
//! maps change on at most `2K` keys, by at most the per-key cap each: see
//! [`LabelBounds::sensitivity`] and [`LessonBounds::sensitivity`]. Keys are not known in advance,
//! so both are released through threshold mechanisms ([`super::privacy`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use utoipa::ToSchema;

use super::privacy::MapSensitivity;
use super::redact::Redactor;

/// Longest lesson kept (characters); longer ones are cut.
pub const MAX_LESSON_CHARS: usize = 280;
/// Longest label field or value kept (characters).
pub const MAX_LABEL_CHARS: usize = 100;

fn normalize(s: &str, max_chars: usize) -> Option<String> {
    let collapsed = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let trimmed = collapsed
        .trim_end_matches(['.', '!', ';', ',', ':'])
        .trim_end();
    if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
        return None;
    }
    Some(trimmed.chars().take(max_chars).collect())
}

/// A lesson in the form that is counted: whitespace collapsed, lower case, trailing punctuation
/// dropped, at most [`MAX_LESSON_CHARS`]. `None` for an empty one.
pub fn normalize_lesson(s: &str) -> Option<String> {
    normalize(s, MAX_LESSON_CHARS)
}

/// The `k` most frequent items (ties in text order).
fn top_k(freq: HashMap<String, u64>, k: usize) -> Vec<(String, u64)> {
    let mut items: Vec<(String, u64)> = freq.into_iter().collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    items.truncate(k);
    items
}

/// Per-tenant bound on lessons.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct LessonBounds {
    /// Distinct lessons one tenant contributes (its most frequent).
    pub per_tenant: usize,
    /// `secure` only: a lesson is released only if at least this many distinct tenants hold it.
    pub min_tenants: u64,
}

impl Default for LessonBounds {
    fn default() -> Self {
        Self {
            per_tenant: 4,
            min_tenants: 3,
        }
    }
}

impl LessonBounds {
    /// One tenant's lessons: redacted (if a redactor is given), normalized, the `per_tenant` most
    /// frequent distinct ones.
    pub fn tenant_lessons<S: AsRef<str>>(
        &self,
        raw: impl IntoIterator<Item = S>,
        redactor: Option<&Redactor>,
    ) -> BTreeSet<String> {
        let mut freq: HashMap<String, u64> = HashMap::new();
        for s in raw {
            let s = s.as_ref();
            let text = match redactor {
                Some(r) => r.text(s),
                None => s.into(),
            };
            if let Some(l) = normalize_lesson(&text) {
                *freq.entry(l).or_default() += 1;
            }
        }
        top_k(freq, self.per_tenant)
            .into_iter()
            .map(|(l, _)| l)
            .collect()
    }

    /// L0/L2/L∞ change of the lesson counts when one tenant is substituted.
    ///
    /// Without a minimum: at most `2L` lessons (L removed, L added) change, each by 1, so
    /// `l0 = 2L`, `l∞ = 1`, `l2 = √(2L)`.
    ///
    /// With `min_tenants = k` (the `secure` level drops lessons held by fewer than k tenants
    /// before the noise), a lesson whose count crosses k appears or disappears with its whole
    /// count: the change per lesson is at most `k`, so `l∞ = k` and `l2 = k·√(2L)`. That is the
    /// honest price of a hard k: the noise grows k-fold for the same ρ.
    pub fn sensitivity(&self, min_tenants: Option<u64>) -> MapSensitivity {
        let l = self.per_tenant.max(1) as f64;
        let per_key = min_tenants.unwrap_or(1).max(1) as f64;
        MapSensitivity {
            l0: (2 * self.per_tenant.max(1)) as u32,
            lp: per_key * (2.0 * l).sqrt(),
            linf: per_key,
        }
    }
}

/// Per-tenant bound on labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct LabelBounds {
    /// Distinct `field=value` keys one tenant contributes (its most frequent).
    pub keys_per_tenant: usize,
    /// Cap on one tenant's count for one key.
    pub count_per_key: u64,
}

impl Default for LabelBounds {
    /// Each tenant counts once for each of its 4 most frequent labels: the released count of a
    /// label is then the number of tenants that use it.
    fn default() -> Self {
        Self {
            keys_per_tenant: 4,
            count_per_key: 1,
        }
    }
}

impl LabelBounds {
    /// One tenant's label counts from `(field, value)` pairs: keys `field=value` normalized like
    /// lessons (and redacted if a redactor is given), the `keys_per_tenant` most frequent, each
    /// count capped at `count_per_key`.
    pub fn tenant_counts<F: AsRef<str>, V: AsRef<str>>(
        &self,
        labels: impl IntoIterator<Item = (F, V)>,
        redactor: Option<&Redactor>,
    ) -> BTreeMap<String, u64> {
        let mut freq: HashMap<String, u64> = HashMap::new();
        for (f, v) in labels {
            let value = match redactor {
                Some(r) => r.text(v.as_ref()).into_owned(),
                None => v.as_ref().to_owned(),
            };
            let (Some(f), Some(v)) = (
                normalize(f.as_ref(), MAX_LABEL_CHARS),
                normalize(&value, MAX_LABEL_CHARS),
            ) else {
                continue;
            };
            *freq.entry(format!("{f}={v}")).or_default() += 1;
        }
        top_k(freq, self.keys_per_tenant)
            .into_iter()
            .map(|(k, c)| (k, c.min(self.count_per_key)))
            .collect()
    }

    /// L0/L1/L∞ change of the summed label counts when one tenant is substituted: at most `2K`
    /// keys change, each by at most `m = count_per_key`, so `l0 = 2K`, `l1 = 2K·m`, `l∞ = m`.
    pub fn sensitivity(&self) -> MapSensitivity {
        let k = self.keys_per_tenant.max(1);
        let m = self.count_per_key.max(1) as f64;
        MapSensitivity {
            l0: (2 * k) as u32,
            lp: 2.0 * k as f64 * m,
            linf: m,
        }
    }
}

impl LabelBounds {
    /// The same change measured in L2, for the Gaussian alternative: `2K` keys changing by at
    /// most `m` each give `l2 ≤ m·√(2K)`.
    pub fn sensitivity_l2(&self) -> MapSensitivity {
        let k = self.keys_per_tenant.max(1);
        let m = self.count_per_key.max(1) as f64;
        MapSensitivity {
            l0: (2 * k) as u32,
            lp: m * (2.0 * k as f64).sqrt(),
            linf: m,
        }
    }
}

/// Sums per-tenant maps into one.
pub fn sum_counts<'a>(
    per_tenant: impl IntoIterator<Item = &'a BTreeMap<String, u64>>,
) -> BTreeMap<String, u64> {
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for m in per_tenant {
        for (k, c) in m {
            *total.entry(k.clone()).or_default() += c;
        }
    }
    total
}

/// For each lesson, the number of distinct tenants holding it.
pub fn count_lessons<'a>(
    per_tenant: impl IntoIterator<Item = &'a BTreeSet<String>>,
) -> BTreeMap<String, u64> {
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for set in per_tenant {
        for l in set {
            *total.entry(l.clone()).or_default() += 1;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::redact::RedactionProfile;
    use proptest::prelude::*;

    #[test]
    fn lessons_are_normalized() {
        assert_eq!(
            normalize_lesson("  Always   run the\tTESTS first!! ").as_deref(),
            Some("always run the tests first")
        );
        assert_eq!(normalize_lesson(" ... "), None);
        assert_eq!(
            normalize_lesson(&"x".repeat(1000)).unwrap().chars().count(),
            MAX_LESSON_CHARS
        );
    }

    #[test]
    fn a_tenant_contributes_its_most_frequent_distinct_lessons_only() {
        let b = LessonBounds {
            per_tenant: 2,
            min_tenants: 3,
        };
        let raw = [
            "Use retries",
            "use retries.",
            "Log errors",
            "log errors",
            "cache",
            "Use retries",
        ];
        let got = b.tenant_lessons(raw, None);
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec!["log errors".to_string(), "use retries".to_string()]
        );
    }

    #[test]
    fn secure_lessons_are_redacted_before_counting() {
        let r = RedactionProfile::default().compile().unwrap();
        let got = LessonBounds::default().tenant_lessons(["Ask ops@corp.com first"], Some(&r));
        assert!(got.contains("ask [email] first"), "{got:?}");
    }

    #[test]
    fn label_counts_are_capped_per_tenant() {
        let b = LabelBounds {
            keys_per_tenant: 2,
            count_per_key: 3,
        };
        let labels = [
            ("outcome", "success"),
            ("outcome", "success"),
            ("outcome", "Success"),
            ("outcome", "success"),
            ("outcome", "success"),
            ("taskType", "review"),
            ("outcome", "failure"),
            ("outcome", "failure"),
        ];
        let got = b.tenant_counts(labels, None);
        assert_eq!(got.len(), 2);
        assert_eq!(got["outcome=success"], 3);
        assert_eq!(got["outcome=failure"], 2);
    }

    #[test]
    fn lesson_counts_are_distinct_tenants() {
        let b = LessonBounds::default();
        let a = b.tenant_lessons(["x", "X", "y"], None);
        let c = b.tenant_lessons(["x"], None);
        let counts = count_lessons([&a, &c]);
        assert_eq!(counts["x"], 2);
        assert_eq!(counts["y"], 1);
    }

    #[test]
    fn min_tenants_multiplies_the_lesson_sensitivity() {
        let b = LessonBounds {
            per_tenant: 4,
            min_tenants: 3,
        };
        let plain = b.sensitivity(None);
        let secure = b.sensitivity(Some(3));
        assert_eq!((plain.l0, plain.linf), (8, 1.0));
        assert!((plain.lp - 8f64.sqrt()).abs() < 1e-12);
        assert_eq!(secure.linf, 3.0);
        assert!((secure.lp - 3.0 * 8f64.sqrt()).abs() < 1e-12);
    }

    fn dist(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> (u32, f64, f64, f64) {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let diffs: Vec<f64> = keys
            .iter()
            .map(|k| (*a.get(*k).unwrap_or(&0) as f64 - *b.get(*k).unwrap_or(&0) as f64).abs())
            .filter(|d| *d > 0.0)
            .collect();
        let l1 = diffs.iter().sum();
        let l2 = diffs.iter().map(|d| d * d).sum::<f64>().sqrt();
        let linf = diffs.iter().cloned().fold(0.0, f64::max);
        (diffs.len() as u32, l1, l2, linf)
    }

    fn words() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-e]{1,2}", 0..12)
    }

    proptest! {
        #[test]
        fn substituting_a_tenant_stays_within_the_stated_sensitivity(
            others in proptest::collection::vec(words(), 1..5), a in words(), b in words(),
        ) {
            let lb = LessonBounds { per_tenant: 3, min_tenants: 2 };
            let cb = LabelBounds { keys_per_tenant: 3, count_per_key: 2 };
            let lessons = |mine: &Vec<String>| {
                let mut sets: Vec<BTreeSet<String>> = others.iter().map(|o| lb.tenant_lessons(o, None)).collect();
                sets.push(lb.tenant_lessons(mine, None));
                count_lessons(&sets)
            };
            let labels = |mine: &Vec<String>| {
                let mut maps: Vec<BTreeMap<String, u64>> = others.iter().map(|o| cb.tenant_counts(o.iter().map(|w| ("f", w)), None)).collect();
                maps.push(cb.tenant_counts(mine.iter().map(|w| ("f", w)), None));
                sum_counts(&maps)
            };
            let (l0, _, l2, linf) = dist(&lessons(&a), &lessons(&b));
            let s = lb.sensitivity(None);
            prop_assert!(l0 <= s.l0 && l2 <= s.lp + 1e-12 && linf <= s.linf);

            let keep = |m: BTreeMap<String, u64>| m.into_iter().filter(|(_, c)| *c >= 2).collect::<BTreeMap<_, _>>();
            let (l0, _, l2, linf) = dist(&keep(lessons(&a)), &keep(lessons(&b)));
            let s = lb.sensitivity(Some(2));
            prop_assert!(l0 <= s.l0 && l2 <= s.lp + 1e-12 && linf <= s.linf);

            let (l0, l1, _, linf) = dist(&labels(&a), &labels(&b));
            let s = cb.sensitivity();
            prop_assert!(l0 <= s.l0 && l1 <= s.lp && linf <= s.linf);
        }
    }
}
