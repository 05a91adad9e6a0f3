//! Connections that sign, in the browser: status, "Request admin help" (certificate + email),
//! resend / cancel, upload of the admin's own certificate, and the admin's answer page (no
//! account: the one-time link is the permission).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::connections::TestOutcome;
#[cfg(feature = "ssr")]
use super::ssr::*;
#[cfg(feature = "ssr")]
use super::AppError;
use super::Fallible;

/// The wasm build cannot see `server::signing`'s types; these carry the same fields and are
/// filled from them through serde, so a renamed field fails loudly instead of going missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateView {
    pub state: String,
    pub origin: String,
    pub fingerprint_sha256: String,
    pub thumbprint_sha1: String,
    pub bits: i64,
    pub not_after: String,
    pub expires_soon: bool,
    pub created_by: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    pub admin_email: String,
    pub state: String,
    pub requested_by: String,
    pub requested_at: String,
    pub expires_at: String,
    pub answered_at: Option<String>,
    /// The email's delivery: `queued`, `sent`, `failed` or `outbox`.
    #[serde(default)]
    pub delivery: Option<String>,
    #[serde(default)]
    pub delivery_error: Option<String>,
    /// The latest answer through the link and its test.
    #[serde(default)]
    pub last_answer: Option<AnswerOutcomeView>,
}

/// `server::signing::AnswerOutcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerOutcomeView {
    pub at: String,
    pub ok: bool,
    pub detail: String,
    pub advice: Option<String>,
    pub tries_left: i64,
}

/// A request's email that no mail server took, to pass on by hand (`server::signing::Undelivered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeliveredView {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub eml_base64: String,
    pub file_name: String,
    pub link: String,
    pub delivery: String,
}

impl RequestView {
    /// What became of the request's email, in words.
    pub fn delivery_words(&self) -> Option<String> {
        let error = self.delivery_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
        Some(match self.delivery.as_deref()? {
            "sent" => "Email sent.".to_string(),
            "queued" if self.delivery_error.is_none() => "Email being sent.".to_string(),
            "queued" => format!("Email not delivered yet; connvault keeps trying{error}."),
            "failed" => format!("Email not delivered: every attempt failed{error}. Check the mail server, then send the request again."),
            _ => "Email not sent: no mail server is configured. An owner passes it on from the Outbox.".to_string(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectedView {
    pub org_id: Option<String>,
    pub username: Option<String>,
    pub instance_url: String,
    pub obtained_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningView {
    pub state: String,
    pub summary: String,
    pub advice: Option<String>,
    pub certificate: Option<CertificateView>,
    pub pending_certificate: Option<CertificateView>,
    pub request: Option<RequestView>,
    pub connected: Option<ConnectedView>,
    pub checked_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub label: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerField {
    pub name: String,
    pub label: String,
    pub help: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    pub environment: String,
    pub connection: String,
    pub provider: String,
    pub provider_label: String,
    pub admin: String,
    pub facts: Vec<Fact>,
    pub answer_fields: Vec<AnswerField>,
    pub requested_by: String,
    #[serde(default)]
    pub requested_at: String,
    pub expires_at: String,
    #[serde(default)]
    pub certificate_file: String,
    pub certificate_pem: Option<String>,
    pub thumbprint_sha1: Option<String>,
}

#[cfg(feature = "ssr")]
pub(super) fn mirror<T: Serialize, U: serde::de::DeserializeOwned>(value: &T) -> Result<U, AppError> {
    serde_json::to_value(value).and_then(serde_json::from_value).map_err(|e| AppError::new(format!("internal: {e}")))
}

#[server(prefix = "/rpc", endpoint = "signing_status")]
pub async fn signing_status(environment: String, name: String) -> Fallible<SigningView> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Read).await?;
    mirror(&server::signing::status_of(&s.db, &env.name, &name).await.map_err(fail)?)
}

/// "Request admin help" / "Rotate certificate": a new key pair and certificate, and the email.
#[server(prefix = "/rpc", endpoint = "request_admin_help")]
pub async fn request_admin_help(environment: String, name: String, admin_email: String, #[server(default)] key_bits: Option<usize>) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Write).await?;
    let input = server::signing::IssueRequest { key_bits, admin_email: Some(admin_email), send_request: true };
    server::signing::issue_certificate(s.signing(), &actor_of(&user).await, &env.name, &name, input).await.map_err(fail)?;
    Ok(())
}

/// Sends the request (again: the old link stops working) to `admin_email`, else to the
/// connection's setting, else where the latest request went; or cancels it.
#[server(prefix = "/rpc", endpoint = "admin_request_again")]
pub async fn admin_request_again(environment: String, name: String, cancel: bool, #[server(default)] admin_email: String) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Write).await?;
    let actor = actor_of(&user).await;
    if cancel {
        server::signing::cancel_request(s.signing(), &actor, &env.name, &name).await.map_err(fail)?;
    } else {
        let to = Some(admin_email.as_str()).filter(|e| !e.trim().is_empty());
        server::signing::request_admin_help(s.signing(), &actor, &env.name, &name, to).await.map_err(fail)?;
    }
    Ok(())
}

#[server(prefix = "/rpc", endpoint = "upload_certificate")]
pub async fn upload_certificate(environment: String, name: String, certificate: String, private_key: String) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Write).await?;
    let upload = server::signing::Upload { certificate, private_key: server::secret::SecretString::new(private_key) };
    server::signing::upload_certificate(s.signing(), &actor_of(&user).await, &env.name, &name, &upload).await.map_err(fail)?;
    Ok(())
}

/// What the admin's page shows; the link is checked, not used.
#[server(prefix = "/rpc", endpoint = "admin_link_view")]
pub async fn admin_link_view(environment: String, name: String, token: String) -> Fallible<LinkView> {
    let s = services()?;
    mirror(&server::signing::link_view(&s.db, &environment, &name, &token).await.map_err(fail)?)
}

/// The admin's answer: the provider's answer fields (`fields[consumer_key]`, `fields[tenant]`…)
/// and possibly their own certificate and key; answered with the connection test that follows.
#[server(prefix = "/rpc", endpoint = "answer_admin_request")]
pub async fn answer_admin_request(
    environment: String,
    name: String,
    token: String,
    #[server(default)] fields: std::collections::BTreeMap<String, String>,
    #[server(default)] certificate: String,
    #[server(default)] private_key: String,
) -> Fallible<TestOutcome> {
    use server::secret::SecretString;
    let s = services()?;
    let answer = server::signing::AdminAnswer {
        token: SecretString::new(token),
        fields: fields.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect(),
        certificate: Some(certificate).filter(|c| !c.trim().is_empty()),
        private_key: Some(private_key).filter(|k| !k.trim().is_empty()).map(SecretString::new),
    };
    let r = server::checks::answer(s.signing(), &environment, &name, &answer, client_addr().await).await.map_err(fail)?;
    Ok(TestOutcome { ok: r.ok, detail: r.detail, advice: r.advice })
}

/// The open request's email that no mail server took (none is configured, or every attempt
/// failed), to pass on by hand: its text, the `.eml` and the one-time link. Only for people who
/// may change the connection (the requester among them); each reading is audited, never the
/// link. Read on demand (a button), so the link is never in a page's HTML.
#[server(prefix = "/rpc", endpoint = "undelivered_request")]
pub async fn undelivered_request(environment: String, name: String) -> Fallible<UndeliveredView> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Write).await?;
    mirror(&server::signing::undelivered(s.signing(), &actor_of(&user).await, &env.name, &name).await.map_err(fail)?)
}
