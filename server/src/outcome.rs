//! The outcome of a live check (a test, a token mint, an admin's answer): whether it worked,
//! what happened and what to fix. A leaf, so protocol modules and providers share it.

use serde::{Deserialize, Serialize};

use crate::outbound::{self, OutboundError};

/// The outcome of a live check: whether it worked, what happened, and what to fix. A check that
/// ran and failed is a result (`ok: false`), not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestResult {
    /// Whether the service accepted the credentials
    pub ok: bool,
    /// What happened, in plain words (HTTP status, a short excerpt of an error answer); never a secret
    pub detail: String,
    /// What to fix, when there is something to fix
    #[schema(required = true)]
    pub advice: Option<String>,
}

impl TestResult {
    pub fn passed(detail: impl Into<String>) -> TestResult {
        TestResult { ok: true, detail: detail.into(), advice: None }
    }

    pub fn failed(detail: impl Into<String>, advice: impl Into<String>) -> TestResult {
        TestResult { ok: false, detail: detail.into(), advice: Some(advice.into()) }
    }

    /// The same result with every secret (and its usual encodings) removed from the text.
    pub fn scrubbed(self, secrets: &[&str]) -> TestResult {
        TestResult { ok: self.ok, detail: outbound::scrub(&self.detail, secrets), advice: self.advice.map(|a| outbound::scrub(&a, secrets)) }
    }
}

impl From<OutboundError> for TestResult {
    fn from(e: OutboundError) -> TestResult {
        TestResult { ok: false, detail: e.to_string(), advice: e.advice() }
    }
}
