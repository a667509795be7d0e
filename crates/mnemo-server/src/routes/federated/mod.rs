//! `/v1/federated`: federated learning across the tenants of a project (scopes
//! `federated:read|write|delete`, access policies of resource type `federated`).
//!
//! - [`participant`]: a tenant registers (`basic`, `differential` or `secure`), sees its
//!   reputation with its parts and its privacy budget, withdraws.
//! - [`sessions`]: sessions of the tenant's project: create, list, get, join (the contribution is
//!   computed from the tenant's own memories, in its own transaction), leave, cancel, insights.
//! - [`aggregate`]: the initiator's release: budgets checked and charged, the robust aggregate with
//!   calibrated noise, reputations, all in one transaction.
//!
//! Tenants with `isolation_level = strict` are refused everywhere here (403 `isolation_strict`).

pub mod aggregate;
pub mod participant;
pub mod sessions;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use mnemo_core::federated::aggregate::{Rule, Trim, WeightBounds};
use mnemo_core::federated::lessons::LessonBounds;
use mnemo_core::federated::redact::RedactionProfile;
use mnemo_core::{AggregationMethod, Invalid, PrivacyLevel};
use mnemo_store::federated::{self, Standing};
use mnemo_store::TenantTx;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(participant::router())
        .merge(sessions::router())
        .merge(aggregate::router())
}

/// 403 for a `strict` tenant.
pub fn strict_refused() -> ApiError {
    ApiError::forbidden(
        "isolation_strict",
        "this tenant's isolation level is strict: it takes no part in federated learning or \
         sharing rules (an administrator can set it to shared or federated)",
    )
}

/// The current tenant's standing, refusing a `strict` tenant.
pub async fn require_federating(tx: &mut TenantTx) -> ApiResult<Standing> {
    let standing = federated::standing(tx).await?;
    if !standing.federates() {
        return Err(strict_refused());
    }
    Ok(standing)
}

/// How privacy levels order: a tenant takes part in sessions at its own level or a stronger one
/// (so `basic` sessions, which add no noise, hold only tenants that chose `basic`).
pub fn level_rank(l: PrivacyLevel) -> u8 {
    match l {
        PrivacyLevel::Basic => 0,
        PrivacyLevel::Differential => 1,
        PrivacyLevel::Secure => 2,
    }
}

/// Trimming of the robust rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrimKind {
    /// Drop ⌊β·n⌋ values at each end of each coordinate.
    TrimmedMean,
    /// The coordinate-wise median (consensus only).
    Median,
}

/// Parameters of the `consensus` and `hybrid` rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Robustness {
    /// Default `trimmed_mean`.
    pub trim: Option<TrimKind>,
    /// Share trimmed at each end, in [0, 0.5); default 0.2.
    pub beta: Option<f64>,
    /// Poisoned participants the rule must tolerate (n > 2f and ⌊β·n⌋ ≥ f); default 1.
    pub byzantine: Option<usize>,
}

/// Options of the `secure` level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecureOptions {
    /// A lesson is released only when at least this many tenants hold it (before the noise);
    /// default 3.
    pub min_tenants: Option<u64>,
    /// Identifying text masked in labels and lessons (e-mails and long numbers by default).
    pub redaction: Option<RedactionProfile>,
}

/// A session's aggregation rule and release options, with every default filled in (stored with
/// the session; its terms never change after creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub robustness: Option<Robustness>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<SecureOptions>,
}

impl SessionRule {
    /// Fills in defaults and refuses what the method or level does not take.
    pub fn resolve(
        method: AggregationMethod,
        level: PrivacyLevel,
        robustness: Option<Robustness>,
        secure: Option<SecureOptions>,
    ) -> Result<Self, Invalid> {
        let robustness =
            match (method, robustness) {
                (AggregationMethod::Weighted, Some(_)) => return Err(Invalid::new(
                    "robustness",
                    "the weighted rule takes no robustness parameters (use consensus or hybrid)",
                )),
                (AggregationMethod::Weighted, None) => None,
                (m, r) => {
                    let r = r.unwrap_or(Robustness {
                        trim: None,
                        beta: None,
                        byzantine: None,
                    });
                    let trim = r.trim.unwrap_or(TrimKind::TrimmedMean);
                    if trim == TrimKind::Median && m == AggregationMethod::Hybrid {
                        return Err(Invalid::new(
                            "robustness.trim",
                            "hybrid trims by β (median is a consensus option)",
                        ));
                    }
                    if trim == TrimKind::Median && r.beta.is_some() {
                        return Err(Invalid::new("robustness.beta", "the median takes no β"));
                    }
                    let beta = r.beta.unwrap_or(Trim::DEFAULT_BETA);
                    if !(0.0..0.5).contains(&beta) {
                        return Err(Invalid::new("robustness.beta", "must be in [0, 0.5)"));
                    }
                    let byzantine = r.byzantine.unwrap_or(1);
                    if byzantine > 100 {
                        return Err(Invalid::new("robustness.byzantine", "must be at most 100"));
                    }
                    Some(Robustness {
                        trim: Some(trim),
                        beta: (trim == TrimKind::TrimmedMean).then_some(beta),
                        byzantine: Some(byzantine),
                    })
                }
            };
        let secure = match (level, secure) {
            (PrivacyLevel::Secure, s) => {
                let s = s.unwrap_or(SecureOptions {
                    min_tenants: None,
                    redaction: None,
                });
                let k = s.min_tenants.unwrap_or(LessonBounds::default().min_tenants);
                if !(1..=100).contains(&k) {
                    return Err(Invalid::new("secure.min_tenants", "must be 1 to 100"));
                }
                let redaction = s.redaction.unwrap_or_default();
                redaction.compile()?;
                Some(SecureOptions {
                    min_tenants: Some(k),
                    redaction: Some(redaction),
                })
            }
            (_, Some(_)) => {
                return Err(Invalid::new(
                    "secure",
                    "secure options apply to privacy_level secure only",
                ))
            }
            (_, None) => None,
        };
        Ok(Self { robustness, secure })
    }

    /// The aggregation rule of mnemo_core.
    pub fn rule(&self, method: AggregationMethod) -> Rule {
        let r = self.robustness.unwrap_or(Robustness {
            trim: None,
            beta: None,
            byzantine: None,
        });
        let beta = r.beta.unwrap_or(Trim::DEFAULT_BETA);
        let byzantine = r.byzantine.unwrap_or(1);
        match method {
            AggregationMethod::Weighted => Rule::Weighted {
                weights: WeightBounds::default(),
            },
            AggregationMethod::Consensus => Rule::Consensus {
                trim: match r.trim {
                    Some(TrimKind::Median) => Trim::Median,
                    _ => Trim::Fraction(beta),
                },
                byzantine,
            },
            AggregationMethod::Hybrid => Rule::Hybrid {
                beta,
                byzantine,
                weights: WeightBounds::default(),
            },
        }
    }

    pub fn lesson_bounds(&self) -> LessonBounds {
        let d = LessonBounds::default();
        LessonBounds {
            min_tenants: self
                .secure
                .as_ref()
                .and_then(|s| s.min_tenants)
                .unwrap_or(d.min_tenants),
            ..d
        }
    }

    pub fn redaction(&self) -> RedactionProfile {
        self.secure
            .as_ref()
            .and_then(|s| s.redaction.clone())
            .unwrap_or_default()
    }
}
