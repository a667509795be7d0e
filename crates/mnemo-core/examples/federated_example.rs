//! Worked example of a federated session: 5 tenants, one of them poisoned (every coordinate
//! ±1e9), released at the `differential` level with each aggregation rule.
//!
//! `cargo run -p mnemo-core --example federated_example [epsilon]` (default ε = 1).
//!
//! The honest tenants' centroids are synthetic (384 dimensions, norm ≈ 0.6, around one topic
//! direction, like the centroid of related MiniLM embeddings); the noise is real (OpenDP, OpenSSL's
//! CSPRNG), so the numbers change from run to run.

use std::error::Error;

use mnemo_core::federated::accounting::{Budget, Ledger, SessionPlan, Split};
use mnemo_core::federated::aggregate::{aggregate, Bounds, Participant, Rule, Trim, WeightBounds};
use mnemo_core::federated::insight::{release, Contribution, LabelNoise, ReleaseConfig};
use mnemo_core::federated::lessons::{LabelBounds, LessonBounds};
use mnemo_core::federated::reputation::agreement;
use mnemo_core::PrivacyLevel;

const D: usize = 384;

/// A small deterministic generator (xorshift64*), so the synthetic inputs are the same each run.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vector(&mut self) -> Vec<f64> {
        (0..D).map(|_| self.next()).collect()
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn scaled(v: &[f64], to: f64) -> Vec<f64> {
    let n = norm(v);
    v.iter().map(|x| x * to / n).collect()
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

fn honest_tenants(g: &mut Gen, n: usize) -> Vec<Contribution> {
    let topic = scaled(&g.vector(), 1.0);
    (0..n)
        .map(|i| {
            let jitter = scaled(&g.vector(), 0.5);
            let c: Vec<f64> = topic.iter().zip(&jitter).map(|(t, j)| t + j).collect();
            Contribution {
                centroid: scaled(&c, 0.6),
                size: 12 + 3 * i as u64,
                reputation: 0.8,
                labels: vec![
                    ("outcome".into(), "success".into()),
                    ("taskType".into(), "code-review".into()),
                ],
                lessons: vec![
                    "Pin dependency versions".into(),
                    format!("ask maintainer{i}@example.com before merging"),
                ],
            }
        })
        .collect()
}

fn poisoned() -> Contribution {
    Contribution {
        centroid: (0..D)
            .map(|k| if k % 2 == 0 { 1e9 } else { -1e9 })
            .collect(),
        size: 1_000,
        reputation: 0.8,
        labels: vec![("outcome".into(), "success".into())],
        lessons: vec!["Disable the tests".into()],
    }
}

fn mean(vs: &[&[f64]]) -> Vec<f64> {
    (0..D)
        .map(|k| vs.iter().map(|v| v[k]).sum::<f64>() / vs.len() as f64)
        .collect()
}

fn main() -> Result<(), Box<dyn Error>> {
    let epsilon: f64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 1.0,
    };
    let mut g = Gen(0x5EED_1234_ABCD_0001);
    let mut tenants = honest_tenants(&mut g, 4);
    tenants.push(poisoned());
    let honest: Vec<&[f64]> = tenants[..4].iter().map(|c| c.centroid.as_slice()).collect();
    let honest_mean = mean(&honest);
    let plan = SessionPlan::new(epsilon, SessionPlan::DEFAULT_DELTA, Split::default())?;
    let budget = Budget::default();
    let ledger = budget.charge(&Ledger::default(), &plan.charge())?;

    println!("5 tenants (4 honest, 1 poisoned with ±1e9), d = {D}, C = 1, c = 0.25");
    println!(
        "session: ε = {epsilon} at δ = {:e}  →  ρ = {:.5} (centroid {:.5}, label counts ε = {:.4}, lessons ρ = {:.5})",
        plan.delta, plan.rho, plan.centroid_rho, plan.counts_epsilon, plan.lessons_rho
    );
    println!(
        "each tenant's ledger after the session: ρ = {:.5}, δ = {:e}  →  ε spent = {:.4} of {} at δ = {:e}",
        ledger.rho,
        ledger.delta,
        budget.spent_epsilon(&ledger),
        budget.epsilon,
        budget.delta
    );
    let raw: Vec<&[f64]> = tenants.iter().map(|c| c.centroid.as_slice()).collect();
    println!(
        "\nplain mean of the raw centroids: error vs honest mean = {:.3e}  (the poisoner owns it)",
        dist(&mean(&raw), &honest_mean)
    );
    println!("honest mean: norm {:.4}\n", norm(&honest_mean));

    let rules = [
        (
            "weighted",
            Rule::Weighted {
                weights: WeightBounds::default(),
            },
        ),
        (
            "consensus (trimmed mean, β = 0.2, f = 1)",
            Rule::Consensus {
                trim: Trim::Fraction(Trim::DEFAULT_BETA),
                byzantine: 1,
            },
        ),
        (
            "consensus (median, f = 1)",
            Rule::Consensus {
                trim: Trim::Median,
                byzantine: 1,
            },
        ),
        (
            "hybrid (β = 0.2, f = 1)",
            Rule::Hybrid {
                beta: 0.2,
                byzantine: 1,
                weights: WeightBounds::default(),
            },
        ),
    ];
    for (name, rule) in rules {
        let cfg = ReleaseConfig {
            level: PrivacyLevel::Differential,
            rule,
            bounds: Bounds::default(),
            labels: LabelBounds::default(),
            label_noise: LabelNoise::Laplace,
            lessons: LessonBounds::default(),
            plan: Some(plan),
            redactor: None,
        };
        let participants: Vec<Participant<'_>> = tenants
            .iter()
            .map(|c| Participant {
                vector: &c.centroid,
                size: c.size,
                reputation: c.reputation,
            })
            .collect();
        let noiseless = aggregate(&participants, &rule, &cfg.bounds)?;
        let insight = release(&tenants, &cfg)?;
        let Some(p) = &insight.privacy else {
            return Err("a differential insight always has a privacy statement".into());
        };
        println!("== {name}");
        println!("   sensitivity: {}", p.centroid.sensitivity.derivation);
        println!(
            "   noise: σ = {:.4} per coordinate (expected noise norm σ·√d = {:.3}), ρ certified by OpenDP = {:.5}",
            p.centroid.sigma,
            p.centroid.sigma * (D as f64).sqrt(),
            p.centroid.rho
        );
        println!(
            "   error vs honest mean: noiseless aggregate {:.4}, released {:.4}; confidence {:.3}",
            dist(&noiseless.value, &honest_mean),
            dist(&insight.centroid, &honest_mean),
            insight.confidence
        );
        let agreements: Vec<String> = tenants
            .iter()
            .map(|c| format!("{:.2}", agreement(&c.centroid, &insight.centroid)))
            .collect();
        println!(
            "   agreement with the released centroid (honest ×4, poisoned): {}",
            agreements.join(", ")
        );
        println!(
            "   labels (Laplace scale {:.1}, threshold {}): {:?}; lessons (σ {:.1}, threshold {}): {:?}",
            p.labels.scale,
            p.labels.threshold,
            insight.labels,
            p.lessons.scale,
            p.lessons.threshold,
            insight.lessons.iter().map(|l| (&l.text, l.tenants)).collect::<Vec<_>>()
        );
    }

    // The same topic with many tenants: the noise shrinks as 1/n and counts clear the threshold.
    let n = 2_000;
    let mut many = honest_tenants(&mut g, n - 1);
    many.push(poisoned());
    let honest: Vec<&[f64]> = many[..n - 1]
        .iter()
        .map(|c| c.centroid.as_slice())
        .collect();
    let honest_mean = mean(&honest);
    let cfg = ReleaseConfig {
        level: PrivacyLevel::Differential,
        rule: Rule::Consensus {
            trim: Trim::Fraction(Trim::DEFAULT_BETA),
            byzantine: 1,
        },
        bounds: Bounds::default(),
        labels: LabelBounds::default(),
        label_noise: LabelNoise::Laplace,
        lessons: LessonBounds::default(),
        plan: Some(plan),
        redactor: None,
    };
    let insight = release(&many, &cfg)?;
    if let Some(p) = &insight.privacy {
        println!(
            "\nsame session with {n} tenants (1 poisoned), consensus: σ = {:.5}, released error vs honest mean {:.4} (honest mean norm {:.3}), confidence {:.3}",
            p.centroid.sigma,
            dist(&insight.centroid, &honest_mean),
            norm(&honest_mean),
            insight.confidence
        );
        println!(
            "   labels: {:?}\n   lessons: {:?}",
            insight.labels,
            insight
                .lessons
                .iter()
                .map(|l| (&l.text, l.tenants))
                .collect::<Vec<_>>()
        );
    }
    let cfg = ReleaseConfig {
        label_noise: LabelNoise::Gaussian,
        ..cfg
    };
    let insight = release(&many, &cfg)?;
    if let Some(p) = &insight.privacy {
        println!(
            "   with Gaussian label noise instead (same ρ share): σ {:.1}, threshold {}: {:?}",
            p.labels.scale, p.labels.threshold, insight.labels
        );
    }
    Ok(())
}
