//! A deterministic generator of agent chat transcripts, for tests and `mnemo bench --contexts`.
//!
//! A transcript is what an agent would offload: a system prompt, then turns of a user asking
//! about a software project, an assistant answering in prose, bullet lists and fenced code
//! (Rust, Python, SQL, shell), calling tools (OpenAI `tool_calls` with JSON-string arguments) and
//! tools answering with JSON results (ids, paths, scores, timestamps). The same seed always gives
//! the same bytes (its own SplitMix64, no dependency whose stream could change).
//!
//! It is synthetic: built from a vocabulary of a few hundred words, so it compresses somewhat
//! better than real conversations; random ids, hashes and numbers keep it from being trivially
//! repetitive.

use serde_json::{json, Value};

/// One generated context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The `messages` array as compact JSON, as a client would send it.
    pub messages_json: String,
    /// Messages in it.
    pub messages: usize,
}

/// A transcript of about `target_tokens` tokens (estimated at 4 bytes a token while generating;
/// count with [`super::tokens::TokenizerKind::count`] for the exact figure).
pub fn generate(seed: u64, target_tokens: usize) -> Generated {
    build(seed, target_tokens, None)
}

/// Like [`generate`], with a user message stating `fact` at relative position `at` (0.0 start,
/// 1.0 end) of the transcript: the needle for retrieval tests.
pub fn generate_with_fact(seed: u64, target_tokens: usize, fact: &str, at: f64) -> Generated {
    build(seed, target_tokens, Some((fact, at.clamp(0.0, 1.0))))
}

/// `n` sizes between `min` and `max`, spread evenly on a log scale (as many 1k–2k as 50k–100k
/// contexts), in a seeded random order.
pub fn log_uniform_sizes(seed: u64, n: usize, min: usize, max: usize) -> Vec<usize> {
    let mut rng = Rng(seed ^ 0x5eed_5eed);
    let (lo, hi) = ((min.max(1) as f64).ln(), (max.max(min).max(1) as f64).ln());
    (0..n)
        .map(|_| (lo + rng.unit() * (hi - lo)).exp().round() as usize)
        .collect()
}

fn build(seed: u64, target_tokens: usize, fact: Option<(&str, f64)>) -> Generated {
    let mut rng = Rng(seed);
    let project = *rng.pick(PROJECTS);
    let mut messages = vec![json!({
        "role": "system",
        "content": format!(
            "You are a coding assistant working on {project}. {} {} Answer precisely and show code when it helps.",
            rng.sentence(),
            rng.sentence()
        ),
    })];
    let target_bytes = target_tokens * 4;
    let mut bytes = message_bytes(&messages[0]);
    let fact_at = fact.map(|(text, at)| (text, (at * target_bytes as f64) as usize));
    let mut fact_done = fact.is_none();
    while bytes < target_bytes || !fact_done {
        if let Some((text, at)) = fact_at {
            if !fact_done && bytes >= at {
                let m = json!({"role": "user", "content": format!("For the record: {text} Keep that in mind.")});
                bytes += message_bytes(&m);
                messages.push(m);
                fact_done = true;
                continue;
            }
        }
        for m in rng.turn(project) {
            bytes += message_bytes(&m);
            messages.push(m);
        }
    }
    let count = messages.len();
    Generated {
        messages_json: Value::Array(messages).to_string(),
        messages: count,
    }
}

fn message_bytes(m: &Value) -> usize {
    m.to_string().len()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap_or('0'))
            .collect()
    }

    fn path(&mut self) -> String {
        format!(
            "{}/{}.{}",
            self.pick(DIRS),
            self.pick(NOUNS).replace(' ', "_"),
            self.pick(&["rs", "py", "sql", "ts", "toml", "yaml"])
        )
    }

    fn sentence(&mut self) -> String {
        let s = match self.below(8) {
            0 => format!(
                "The {} {} {} the {} {}.",
                self.pick(ADJECTIVES),
                self.pick(NOUNS),
                self.pick(VERBS_S),
                self.pick(NOUNS),
                self.pick(TAILS)
            ),
            1 => format!(
                "We should {} the {} before the {} {}.",
                self.pick(VERBS),
                self.pick(NOUNS),
                self.pick(NOUNS),
                self.pick(VERBS_S)
            ),
            2 => format!(
                "In {} the {} takes {} ms at p99, compared with {} ms last week.",
                self.path(),
                self.pick(NOUNS),
                self.range(2, 900),
                self.range(2, 900)
            ),
            3 => format!(
                "Why does the {} {} when the {} is {}?",
                self.pick(NOUNS),
                self.pick(VERBS),
                self.pick(NOUNS),
                self.pick(ADJECTIVES)
            ),
            4 => format!(
                "I {} the {} in commit {} and the {} {} {}.",
                self.pick(PAST),
                self.pick(NOUNS),
                self.hex(7),
                self.pick(NOUNS),
                self.pick(VERBS_S),
                self.pick(TAILS)
            ),
            5 => format!(
                "Note that {} {} only if the {} is {}, e.g. during a {}.",
                self.pick(NOUNS),
                self.pick(VERBS_S),
                self.pick(NOUNS),
                self.pick(ADJECTIVES),
                self.pick(NOUNS)
            ),
            6 => format!(
                "After {} retries the {} returned error {} ({}).",
                self.range(1, 9),
                self.pick(NOUNS),
                self.range(400, 599),
                self.pick(ERRORS)
            ),
            _ => format!(
                "Let's {} the {} {} and {} the {}.",
                self.pick(VERBS),
                self.pick(ADJECTIVES),
                self.pick(NOUNS),
                self.pick(VERBS),
                self.pick(NOUNS)
            ),
        };
        let mut cs = s.chars();
        cs.next()
            .map(|c| c.to_uppercase().chain(cs).collect())
            .unwrap_or_default()
    }

    fn paragraph(&mut self, lo: usize, hi: usize) -> String {
        let n = self.range(lo, hi);
        (0..n)
            .map(|_| self.sentence())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn code(&mut self) -> String {
        let (lang, body) = match self.below(4) {
            0 => {
                let f = self.pick(VERBS).to_string();
                let n = self.pick(NOUNS).replace(' ', "_");
                let lines: Vec<String> = (0..self.range(2, 12))
                    .map(|i| {
                        format!(
                            "    let {n}_{i} = {}.{f}(&{n}, {})?;",
                            self.pick(NOUNS).replace(' ', "_"),
                            self.range(0, 4096)
                        )
                    })
                    .collect();
                (
                    "rust",
                    format!(
                        "pub fn {f}_{n}(ctx: &Context) -> Result<(), Error> {{\n{}\n    Ok(())\n}}",
                        lines.join("\n")
                    ),
                )
            }
            1 => {
                let n = self.pick(NOUNS).replace(' ', "_");
                let lines: Vec<String> = (0..self.range(2, 10))
                    .map(|_| {
                        format!(
                            "    if item.{} > {}:\n        out.append(item.{})",
                            self.pick(NOUNS).replace(' ', "_"),
                            self.range(0, 100),
                            self.pick(NOUNS).replace(' ', "_")
                        )
                    })
                    .collect();
                (
                    "python",
                    format!("def filter_{n}(items):\n    out = []\n    for item in items:\n{}\n    return out", lines.join("\n")),
                )
            }
            2 => (
                "sql",
                format!(
                    "SELECT {}, count(*) AS n\nFROM {}\nWHERE tenant_id = $1 AND created_at > now() - interval '{} days'\nGROUP BY 1\nORDER BY n DESC\nLIMIT {};",
                    self.pick(NOUNS).replace(' ', "_"),
                    self.pick(NOUNS).replace(' ', "_"),
                    self.range(1, 90),
                    self.range(5, 100)
                ),
            ),
            _ => (
                "sh",
                format!(
                    "cargo test -p {} -- {} --nocapture\ngrep -rn '{}' {}\ncurl -s localhost:{}/healthz",
                    self.pick(PROJECTS),
                    self.pick(NOUNS).replace(' ', "_"),
                    self.pick(ERRORS),
                    self.path(),
                    self.range(1024, 65535)
                ),
            ),
        };
        format!("```{lang}\n{body}\n```")
    }

    fn assistant_text(&mut self) -> String {
        let mut parts = vec![self.paragraph(1, 4)];
        if self.chance(0.35) {
            parts.push(self.code());
            parts.push(self.paragraph(1, 3));
        }
        if self.chance(0.25) {
            let items: Vec<String> = (0..self.range(2, 6))
                .map(|_| format!("- {}", self.sentence()))
                .collect();
            parts.push(items.join("\n"));
        }
        if self.chance(0.3) {
            parts.push(self.paragraph(2, 6));
        }
        parts.join("\n\n")
    }

    fn user_text(&mut self) -> String {
        let mut text = self.paragraph(1, 3);
        if self.chance(0.15) {
            text.push_str(&format!(
                "\n\nHere is the log:\n```\n{} ERROR {}: {} at {}:{}\n```",
                self.timestamp(),
                self.pick(ERRORS),
                self.sentence(),
                self.path(),
                self.range(1, 800)
            ));
        }
        text
    }

    fn timestamp(&mut self) -> String {
        format!(
            "2025-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.range(1, 12),
            self.range(1, 28),
            self.range(0, 23),
            self.range(0, 59),
            self.range(0, 59)
        )
    }

    fn tool_exchange(&mut self) -> Vec<Value> {
        let id = format!("call_{}", self.hex(24));
        let tool = *self.pick(TOOLS);
        let arguments = match tool {
            "search_docs" => json!({"query": self.sentence(), "limit": self.range(3, 10)}),
            "read_file" => json!({"path": self.path(), "start_line": self.range(1, 400)}),
            "run_tests" => json!({"package": self.pick(PROJECTS), "filter": self.pick(NOUNS)}),
            _ => {
                json!({"sql": format!("SELECT * FROM {} LIMIT {}", self.pick(NOUNS).replace(' ', "_"), self.range(1, 50))})
            }
        };
        let result = match tool {
            "search_docs" => json!({"results": (0..self.range(1, 5)).map(|_| json!({
                "title": self.sentence(),
                "url": format!("https://docs.example.com/{}", self.pick(NOUNS).replace(' ', "-")),
                "snippet": self.paragraph(1, 2),
                "score": (self.unit() * 1000.0).round() / 1000.0,
            })).collect::<Vec<_>>()}),
            "read_file" => {
                json!({"path": self.path(), "content": self.code(), "sha": self.hex(40)})
            }
            "run_tests" => json!({
                "passed": self.range(0, 400),
                "failed": self.range(0, 3),
                "duration_ms": self.range(10, 90_000),
                "failures": (0..self.range(0, 2)).map(|_| json!({
                    "test": format!("{}_{}", self.pick(VERBS), self.pick(NOUNS).replace(' ', "_")),
                    "message": self.sentence(),
                })).collect::<Vec<_>>(),
            }),
            _ => json!({"rows": (0..self.range(1, 8)).map(|_| json!({
                "id": format!("{}-{}-{}", self.hex(8), self.hex(4), self.hex(12)),
                "name": self.pick(NOUNS),
                "created_at": self.timestamp(),
                "value": self.range(0, 1_000_000),
            })).collect::<Vec<_>>()}),
        };
        vec![
            json!({
                "role": "assistant",
                "content": "",
                "tool_calls": [{
                    "id": id,
                    "type": "function",
                    "function": {"name": tool, "arguments": arguments.to_string()},
                }],
            }),
            json!({"role": "tool", "tool_call_id": id, "name": tool, "content": result.to_string()}),
        ]
    }

    fn turn(&mut self, project: &str) -> Vec<Value> {
        let mut out = vec![json!({"role": "user", "content": self.user_text()})];
        for _ in 0..self.range(0, 3) {
            if self.chance(0.5) {
                out.extend(self.tool_exchange());
            }
        }
        let mut answer = self.assistant_text();
        if self.chance(0.1) {
            answer.push_str(&format!(" This applies to {project} only."));
        }
        out.push(json!({"role": "assistant", "content": answer}));
        out
    }
}

const PROJECTS: &[&str] = &[
    "billing-service",
    "search-api",
    "mobile-app",
    "data-pipeline",
    "auth-gateway",
    "inventory",
    "notification-hub",
    "analytics-dashboard",
];
const TOOLS: &[&str] = &["search_docs", "read_file", "run_tests", "query_db"];
const DIRS: &[&str] = &[
    "src",
    "src/api",
    "src/db",
    "crates/core/src",
    "services/worker",
    "tests",
    "migrations",
    "web/app",
];
const ERRORS: &[&str] = &[
    "ConnectionRefused",
    "Timeout",
    "DeadlockDetected",
    "OutOfMemory",
    "PermissionDenied",
    "UniqueViolation",
    "InvalidToken",
    "RateLimited",
    "SerializationFailure",
    "NotFound",
];
const ADJECTIVES: &[&str] = &[
    "slow",
    "flaky",
    "new",
    "legacy",
    "cached",
    "stale",
    "primary",
    "secondary",
    "async",
    "blocking",
    "expensive",
    "cheap",
    "broken",
    "nightly",
    "stable",
    "experimental",
    "default",
    "custom",
    "regional",
    "global",
    "encrypted",
    "compressed",
    "partitioned",
    "idle",
    "hot",
    "cold",
    "large",
    "small",
    "missing",
    "duplicate",
    "optional",
    "mandatory",
    "internal",
    "public",
    "private",
    "concurrent",
    "sequential",
    "eventual",
    "strict",
    "lenient",
];
const NOUNS: &[&str] = &[
    "database",
    "migration",
    "index",
    "query planner",
    "connection pool",
    "cache",
    "queue",
    "worker",
    "scheduler",
    "retry policy",
    "timeout",
    "load balancer",
    "container",
    "pod",
    "deployment",
    "rollback",
    "feature flag",
    "config file",
    "secret",
    "token",
    "session",
    "tenant",
    "user",
    "invoice",
    "payment",
    "webhook",
    "endpoint",
    "handler",
    "middleware",
    "router",
    "schema",
    "table",
    "column",
    "transaction",
    "lock",
    "replica",
    "snapshot",
    "backup",
    "log line",
    "metric",
    "dashboard",
    "alert",
    "trace",
    "span",
    "benchmark",
    "test suite",
    "fixture",
    "mock",
    "build",
    "pipeline",
    "artifact",
    "release",
    "branch",
    "pull request",
    "review",
    "parser",
    "serializer",
    "tokenizer",
    "embedding",
    "vector",
    "memory",
    "buffer",
    "thread",
    "runtime",
    "future",
    "channel",
    "socket",
    "request",
    "response",
    "header",
    "payload",
    "limit",
    "quota",
    "budget",
    "error message",
    "stack trace",
    "crash",
    "regression",
    "latency",
    "throughput",
    "report",
    "customer",
    "ticket",
    "sprint",
];
const VERBS: &[&str] = &[
    "refactor",
    "deploy",
    "restart",
    "profile",
    "benchmark",
    "migrate",
    "rollback",
    "cache",
    "index",
    "validate",
    "parse",
    "serialize",
    "retry",
    "throttle",
    "shard",
    "replicate",
    "monitor",
    "document",
    "test",
    "review",
    "merge",
    "rebase",
    "tune",
    "upgrade",
    "pin",
    "log",
    "trace",
    "batch",
    "stream",
    "compress",
];
const VERBS_S: &[&str] = &[
    "blocks",
    "slows down",
    "corrupts",
    "duplicates",
    "drops",
    "retries",
    "caches",
    "locks",
    "rewrites",
    "ignores",
    "validates",
    "overwrites",
    "leaks",
    "times out",
    "wakes up",
    "serializes",
    "reorders",
    "rejects",
    "accepts",
    "compresses",
];
const PAST: &[&str] = &[
    "fixed",
    "changed",
    "removed",
    "renamed",
    "moved",
    "split",
    "reverted",
    "optimized",
    "rewrote",
    "updated",
    "pinned",
    "disabled",
    "enabled",
];
const TAILS: &[&str] = &[
    "under load",
    "on startup",
    "every night",
    "after the upgrade",
    "in production",
    "in staging",
    "for large tenants",
    "when the cache is cold",
    "during the migration",
    "without a retry",
    "behind the proxy",
    "on the replica",
    "in the nightly build",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::input::CapturedContext;
    use crate::context::tokens::TokenizerKind;
    use serde_json::value::RawValue;

    #[test]
    fn same_seed_same_bytes() {
        assert_eq!(generate(42, 2_000), generate(42, 2_000));
        assert_ne!(generate(42, 2_000), generate(43, 2_000));
    }

    #[test]
    fn size_is_near_the_target() {
        for target in [1_000, 10_000, 100_000] {
            let g = generate(7, target);
            let tokens = TokenizerKind::O200kBase.count(&g.messages_json);
            assert!(
                tokens > target / 2 && tokens < target * 2,
                "target {target}, got {tokens}"
            );
        }
    }

    #[test]
    fn transcripts_are_valid_contexts_with_all_roles() {
        let g = generate(3, 20_000);
        let raw = RawValue::from_string(g.messages_json.clone()).unwrap();
        let c = CapturedContext::capture(Some(raw), None).unwrap();
        assert_eq!(c.messages().len(), g.messages);
        for role in ["system", "user", "assistant", "tool"] {
            assert!(
                c.messages().iter().any(|m| m.role.as_deref() == Some(role)),
                "{role}"
            );
        }
        assert!(g.messages_json.contains("tool_calls"));
        assert!(c.messages().iter().any(|m| m.content.contains("```")));
    }

    #[test]
    fn a_fact_is_planted_near_its_position() {
        let g = generate_with_fact(5, 10_000, "The vault code is 7731.", 0.5);
        let at = g.messages_json.find("The vault code is 7731.").unwrap();
        let rel = at as f64 / g.messages_json.len() as f64;
        assert!((0.35..0.65).contains(&rel), "{rel}");
    }

    #[test]
    fn sizes_span_the_range_on_a_log_scale() {
        let s = log_uniform_sizes(1, 1000, 1_000, 100_000);
        assert!(s.iter().all(|&n| (1_000..=100_000).contains(&n)));
        let small = s.iter().filter(|&&n| n < 10_000).count();
        assert!((400..600).contains(&small), "{small}");
    }
}
