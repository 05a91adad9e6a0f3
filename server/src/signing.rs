//! The certificate lifecycle and the admin's help, for every provider that signs: certificates
//! (issued or uploaded, rotated without a gap), the request to the system's admin and the
//! one-time link that answers it, the mint with the provider's exchange, and each
//! connection's status. The provider says what differs ([`crate::providers::Minting`],
//! [`crate::providers::AdminHelp`]); nothing here names one.
//!
//! Private keys and tokens are managed secrets of the connection (sealed in
//! `connection_secrets`); certificates are public and live in `certificates`. A rotated
//! certificate is `pending` until a token request signed with its key has worked once; until
//! then the `active` one keeps signing.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use crate::assertion::AssertionSigner;
use crate::audit::{self, Actor, Event};
use crate::certs;
use crate::connections::{self, Connection};
use crate::db::{format_time, now, Db, Tx};
use crate::environments::{self, Environment};
use crate::error::{Error, FieldError, Result};
use crate::providers::{self, AdminHelp, Identity, Key, Minted, Minting, ProviderDef, Refusal, RequestFacts, Secrets, TestResult};
use crate::config::Config;
use crate::links;
use crate::mail::Mailer;
use crate::outbound::Outbound;
use crate::seal::Vault;
use crate::secret::{SecretBytes, SecretString};

pub use crate::certs::LINK_PURPOSE;

/// What the certificate lifecycle, the live checks and the mint use of the running server:
/// the database, the vault, the way out, the mailer (admin requests) and the configuration
/// (the public URL, the mail limits). Built by `Services::signing`.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub db: &'a Db,
    pub vault: &'a Vault,
    pub outbound: &'a Outbound,
    pub mailer: &'a Mailer,
    pub config: &'a Config,
}
/// An admin request link works for 7 days.
pub const LINK_HOURS: i64 = 7 * 24;
/// Certificates expiring within this many days are flagged.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

// The values of the text fields below, for their schemas.
fn certificate_states() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::json_schema(serde_json::json!({"type": "string", "enum": ["active", "pending", "retired"]}))
}

fn certificate_origins() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::json_schema(serde_json::json!({"type": "string", "enum": ["issued", "uploaded"]}))
}

fn request_states() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::json_schema(serde_json::json!({"type": "string", "enum": ["open", "answered", "cancelled", "replaced"]}))
}

fn deliveries() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::json_schema(serde_json::json!({"type": "string", "enum": ["queued", "sent", "failed", "outbox"]}))
}

fn status_states() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let mut states = vec!["not_set_up", "no_certificate", "waiting_for_admin"];
    for help in providers::REGISTRY.iter().filter_map(|p| p.admin_help) {
        if !states.contains(&help.answered_state) {
            states.push(help.answered_state);
        }
    }
    states.extend(["not_tested", "connected", "failing"]);
    crate::schema::json_schema(serde_json::json!({"type": "string", "enum": states}))
}

/// A certificate as anyone may see it (the key never leaves the server).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = Certificate)]
pub struct CertificateInfo {
    pub id: i64,
    /// active, pending (a rotation that has not worked yet) or retired.
    #[schema(schema_with = certificate_states)]
    pub state: String,
    /// issued (by connvault) or uploaded.
    #[schema(schema_with = certificate_origins)]
    pub origin: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// SHA-1 of the DER, upper-case hex: the "Thumbprint" the Entra portal shows.
    pub thumbprint_sha1: String,
    pub bits: i64,
    #[schema(format = DateTime)]
    pub not_after: String,
    /// Expires within 30 days.
    pub expires_soon: bool,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A request to the system's admin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AdminRequest {
    pub id: i64,
    pub admin_email: String,
    /// open, answered, cancelled or replaced.
    #[schema(schema_with = request_states)]
    pub state: String,
    pub requested_by: String,
    #[schema(format = DateTime)]
    pub requested_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(required = true)]
    pub answered_at: Option<String>,
    /// What became of the email: `queued` (waiting for the mail server, or retried after it
    /// refused), `sent`, `failed` (every attempt failed: send the request again), or `outbox`
    /// (no mail server is configured: an owner passes it on from the outbox).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = deliveries)]
    pub delivery: Option<String>,
    /// Why the last delivery attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_error: Option<String>,
    /// The kept message (in the outbox).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
    /// The latest answer through the link and its test, for the requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_answer: Option<AnswerOutcome>,
}

/// What became of an answer to a request: when it came, whether the test that followed worked,
/// what it said, and how many more answers the link takes (0: used, by this answer or by too
/// many that failed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AnswerOutcome {
    #[schema(format = DateTime)]
    pub at: String,
    pub ok: bool,
    pub detail: String,
    #[schema(required = true)]
    pub advice: Option<String>,
    pub tries_left: i64,
}

/// Who the last good token acts as.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Connected {
    pub org_id: Option<String>,
    pub username: Option<String>,
    pub instance_url: String,
    pub obtained_at: String,
}

/// Where a connection that signs stands, in the words the UI uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = SigningStatus)]
pub struct Status {
    /// not_set_up (a setting of its environment is missing: a placeholder promotion created),
    /// no_certificate, waiting_for_admin, the provider's "answer received" state (Salesforce:
    /// consumer_key_received; Entra: app_ids_received), not_tested, connected, failing.
    #[schema(schema_with = status_states)]
    pub state: String,
    pub summary: String,
    pub advice: Option<String>,
    pub certificate: Option<CertificateInfo>,
    pub pending_certificate: Option<CertificateInfo>,
    pub request: Option<AdminRequest>,
    pub connected: Option<Connected>,
    pub checked_at: Option<String>,
}

/// Body of `POST …/certificate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    #[serde(default)]
    pub key_bits: Option<usize>,
    #[serde(default)]
    pub admin_email: Option<String>,
    #[serde(default)]
    pub send_request: bool,
}

crate::schema::hand_schema!(IssueRequest, "IssueRequest", || serde_json::json!({
    "type": "object",
    "additionalProperties": false,
    "properties": {
        "key_bits": {"type": ["integer", "null"], "enum": [2048, 4096, null], "default": 2048},
        "admin_email": admin_email_input(),
        "send_request": {
            "type": "boolean",
            "default": false,
            "description": "Send the request email to the admin (then an admin email is needed, given here or in the settings)"
        }
    }
}));

/// An `admin_email` in a request's body, as `resolve_admin_email` reads it: blank or left out
/// means the connection's setting; else an address, white space around it dropped.
pub fn admin_email_input() -> serde_json::Value {
    use crate::schema::WS;
    let mut address = crate::providers::patterns::email(WS);
    address["type"] = serde_json::json!("string");
    serde_json::json!({
        "type": ["string", "null"],
        "anyOf": [{"type": "null"}, {"type": "string", "pattern": format!("^[{WS}]*$")}, address],
        "description": "The system admin's email (as for the admin_email setting; surrounding white space is dropped); blank or left out: the connection's admin_email setting"
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Issued {
    pub certificate: CertificateInfo,
    pub request: Option<AdminRequest>,
}

/// Body of `PUT …/certificate` (and of the admin's answer, when they bring their own pair).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub certificate: String,
    pub private_key: SecretString,
}

/// What the admin sends back through the link: the link's token, the settings the provider's
/// admin fills in (Salesforce `consumer_key`; Entra `tenant`, `client_id`), and possibly their
/// own certificate and key.
#[derive(Debug, Deserialize)]
pub struct AdminAnswer {
    pub token: SecretString,
    #[serde(default)]
    pub certificate: Option<String>,
    #[serde(default)]
    pub private_key: Option<SecretString>,
    /// Everything else: checked against the provider's answer fields.
    #[serde(flatten)]
    pub fields: std::collections::BTreeMap<String, serde_json::Value>,
}

crate::schema::hand_schema!(AdminAnswer, "AdminAnswer", || {
    let mut properties = serde_json::Map::new();
    properties.insert("token".into(), json!({"type": "string", "writeOnly": true, "description": "The one-time link's token"}));
    properties.insert("certificate".into(), json!({"type": ["string", "null"], "description": "PEM; only with your own key"}));
    properties.insert(
        "private_key".into(),
        json!({"type": ["string", "null"], "writeOnly": true, "description": "PEM (PKCS#8 or PKCS#1), with your own certificate"}),
    );
    for def in providers::REGISTRY.iter().filter(|d| d.admin_help.is_some()) {
        for name in def.admin_help.map(|h| h.answer_fields).unwrap_or_default() {
            let label = def.field(name).map(|f| f.label).unwrap_or(name);
            properties.entry(name.to_string()).or_insert_with(|| json!({"type": "string", "maxLength": providers::MAX_SETTING_LEN, "description": label}));
        }
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["token"],
        "properties": properties,
        "description": "The provider's answer fields (Salesforce: consumer_key; SharePoint, Dataverse, Dynamics 365: tenant and client_id); others are refused"
    })
});

/// One thing the admin's page shows about the connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Fact {
    pub label: String,
    pub value: String,
}

/// A field the admin fills in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AnswerField {
    pub name: String,
    pub label: String,
    pub help: String,
}

/// What the admin's link page shows: enough to know what they are answering, nothing secret.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkView {
    pub environment: String,
    pub connection: String,
    /// The provider's id and name, e.g. `salesforce`, "Salesforce".
    pub provider: String,
    pub provider_label: String,
    /// Who is asked, e.g. "Salesforce admin".
    pub admin: String,
    /// What the connection is (the user it acts as, the login URL, the site…).
    pub facts: Vec<Fact>,
    /// What the admin sends back.
    pub answer_fields: Vec<AnswerField>,
    /// Who asked, and when.
    pub requested_by: String,
    #[schema(format = DateTime)]
    pub requested_at: String,
    pub expires_at: String,
    /// The name to save the certificate under, e.g. `SF_Main-DEV.crt`.
    pub certificate_file: String,
    /// The certificate the admin registers (public), and its thumbprint.
    #[schema(required = true)]
    pub certificate_pem: Option<String>,
    #[schema(required = true)]
    pub thumbprint_sha1: Option<String>,
}

pub fn certificate_file_name(connection: &str, environment: &str) -> String {
    format!("{connection}-{environment}.crt")
}

/// The provider of a connection that signs (409 for one that does not).
fn signing_def(c: &Connection) -> Result<(&'static ProviderDef, &'static Minting)> {
    let def = providers::get(&c.provider).ok_or_else(|| Error::Internal(format!("unknown provider {}", c.provider)))?;
    match def.signing(&c.settings) {
        Some(m) => Ok((def, m)),
        None => {
            let signing: Vec<&str> = providers::REGISTRY.iter().filter(|d| d.minting.is_some_and(|m| d.is_managed(m.key_field))).map(|d| d.label).collect();
            let why = if def.minting.is_some_and(|m| def.is_managed(m.key_field)) {
                format!("{} uses a client secret, not a certificate (its auth setting)", c.name)
            } else {
                format!("{} is a {} connection", c.name, def.label)
            };
            Err(Error::Conflict {
                code: "not_signing",
                message: format!(
                    "{why}; certificates, admin requests and this status belong to connections that sign with a certificate ({})",
                    signing.join(", ")
                ),
            })
        }
    }
}

/// The environment and the signing connection `name` in it.
async fn load(db: &Db, env_name: &str, name: &str) -> Result<(Environment, Connection, &'static ProviderDef, &'static Minting)> {
    let env = environments::find(db, env_name).await?;
    let c = connections::get(db, &env.name, name).await?;
    let (def, minting) = signing_def(&c)?;
    Ok((env, c, def, minting))
}

fn help_of(def: &'static ProviderDef) -> Result<&'static AdminHelp> {
    def.admin_help.ok_or_else(|| Error::Conflict { code: "no_admin_help", message: format!("{} connections have no admin request", def.label) })
}

fn cert_from_row(r: &sqlx::any::AnyRow) -> Result<CertificateInfo> {
    let not_after: String = r.try_get("not_after")?;
    let soon = format_time(chrono::Utc::now() + chrono::Duration::days(EXPIRY_WARNING_DAYS));
    let pem: String = r.try_get("certificate_pem")?;
    Ok(CertificateInfo {
        id: r.try_get("id")?,
        state: r.try_get("state")?,
        origin: r.try_get("origin")?,
        fingerprint_sha256: r.try_get("fingerprint")?,
        thumbprint_sha1: certs::thumbprint_sha1(&certs::der_of(&pem)),
        bits: r.try_get("bits")?,
        expires_soon: not_after <= soon,
        not_after,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

const CERT_COLUMNS: &str = "id, connection_id, state, origin, certificate_pem, fingerprint, bits, not_after, created_by, created_at";

/// The active and pending certificates of a connection.
async fn certificates(db: &Db, connection_id: i64) -> Result<(Option<CertificateInfo>, Option<CertificateInfo>)> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CERT_COLUMNS} FROM certificates WHERE connection_id = $1 AND state <> 'retired'")))
        .bind(connection_id)
        .fetch_all(db.pool())
        .await?;
    let mut active = None;
    let mut pending = None;
    for r in &rows {
        let c = cert_from_row(r)?;
        if c.state == "active" {
            active = Some(c);
        } else {
            pending = Some(c);
        }
    }
    Ok((active, pending))
}

/// The PEM of the certificate the admin should upload: the pending one during a rotation,
/// otherwise the active one.
pub async fn certificate_pem(db: &Db, env_name: &str, name: &str) -> Result<(String, String)> {
    let (env, c, _, _) = load(db, env_name, name).await?;
    current_pem(db, &env, &c).await
}

async fn current_pem(db: &Db, env: &Environment, c: &Connection) -> Result<(String, String)> {
    let row = sqlx::query(
        "SELECT certificate_pem FROM certificates WHERE connection_id = $1 AND state <> 'retired' ORDER BY CASE state WHEN 'pending' THEN 0 ELSE 1 END LIMIT 1",
    )
    .bind(c.id)
    .fetch_optional(db.pool())
    .await?
    .ok_or_else(|| Error::NotFound(format!("{} in {} has no certificate yet; issue one (Request admin help) or upload your own", c.name, env.name)))?;
    Ok((row.try_get("certificate_pem")?, certificate_file_name(&c.name, &env.name)))
}

/// A certificate and its key on their way into storage.
struct NewCertificate<'a> {
    /// issued or uploaded
    origin: &'a str,
    certificate_pem: &'a str,
    key_der: &'a SecretBytes,
    /// Seconds since the epoch.
    not_after: i64,
}

/// Stores a new certificate and its key, and audits it as `action`: active if the connection
/// has none, pending (a rotation) otherwise. A previous pending certificate is retired.
#[allow(clippy::too_many_arguments)]
async fn store_certificate(
    tx: &mut Tx<'_>,
    s: Handles<'_>,
    actor: &Actor,
    env: &Environment,
    c: &Connection,
    minting: &Minting,
    new: NewCertificate<'_>,
    action: &str,
) -> Result<CertificateInfo> {
    let NewCertificate { origin, certificate_pem, key_der, not_after } = new;
    let not_after = &format_time(chrono::DateTime::from_timestamp(not_after, 0).unwrap_or_default());
    let (connection_id, by) = (c.id, actor.label.as_str());
    let has_active =
        sqlx::query("SELECT id FROM certificates WHERE connection_id = $1 AND state = 'active'").bind(connection_id).fetch_optional(&mut **tx).await?.is_some();
    let t = now();
    sqlx::query("UPDATE certificates SET state = 'retired', updated_at = $1 WHERE connection_id = $2 AND state = 'pending'")
        .bind(&t)
        .bind(connection_id)
        .execute(&mut **tx)
        .await?;
    let (state, field) = if has_active { ("pending", minting.pending_key_field) } else { ("active", minting.key_field) };
    if !has_active {
        // A check from before there was a certificate ("no certificate yet") no longer says
        // where the connection stands.
        sqlx::query("DELETE FROM connection_health WHERE connection_id = $1").bind(connection_id).execute(&mut **tx).await?;
    }
    let bits = AssertionSigner::from_pkcs8_der(key_der.expose_secret())?.bits() as i64;
    let row = sqlx::query(
        "INSERT INTO certificates (connection_id, state, origin, certificate_pem, fingerprint, bits, not_after, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(connection_id)
    .bind(state)
    .bind(origin)
    .bind(certificate_pem)
    .bind(certs::thumbprint_sha256(&certs::der_of(certificate_pem)))
    .bind(bits)
    .bind(not_after)
    .bind(by)
    .bind(&t)
    .fetch_one(&mut **tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    let key = SecretString::new(STANDARD.encode(key_der.expose_secret()));
    connections::put_secret(tx, &s.vault, env, connection_id, field, &key, by).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CERT_COLUMNS} FROM certificates WHERE id = $1"))).bind(id).fetch_one(&mut **tx).await?;
    let info = cert_from_row(&row)?;
    audit::record(
        tx,
        actor,
        Event::new(action).environment(env.id, &env.name).object("connection", &c.name).detail(json!({
            "provider": c.provider, "origin": origin, "bits": bits, "fingerprint_sha256": info.fingerprint_sha256,
            "thumbprint_sha1": info.thumbprint_sha1, "state": info.state, "not_after": info.not_after
        })),
    )
    .await?;
    Ok(info)
}


/// "Request admin help" / "Rotate certificate": a new key pair and self-signed certificate,
/// and (with `send_request`) the request email to the admin.
pub async fn issue_certificate(s: Handles<'_>, actor: &Actor, env_name: &str, name: &str, input: IssueRequest) -> Result<Issued> {
    let (env, c, def, minting) = load(&s.db, env_name, name).await?;
    let bits = input.key_bits.unwrap_or(2048);
    let admin_email = if input.send_request || input.admin_email.as_deref().is_some_and(|e| !e.trim().is_empty()) {
        let help = help_of(def)?;
        if input.send_request {
            Some(request_address(s.db, &c, help.admin, input.admin_email.as_deref(), &CERTIFICATE_REQUEST).await?)
        } else {
            resolve_admin_email(&c, help.admin, input.admin_email.as_deref(), false)?
        }
    } else {
        None
    };
    if admin_email.is_some() {
        // Refused before a key pair is made for nothing.
        ensure_set_up(&c, def)?;
        let mut tx = s.db.begin().await?;
        check_mail_limits(&mut tx, s, actor, &c).await?;
        tx.rollback().await?;
    }
    let (conn_name, env_label) = (c.name.clone(), env.name.clone());
    let issued = tokio::task::spawn_blocking(move || certs::issue(bits, &conn_name, &env_label, time::OffsetDateTime::now_utc()))
        .await
        .map_err(|e| Error::Internal(format!("key generation stopped: {e}")))??;
    let mut tx = s.db.begin().await?;
    let new = NewCertificate {
        origin: "issued",
        certificate_pem: &issued.certificate_pem,
        key_der: &issued.private_key,
        not_after: issued.not_after.unix_timestamp(),
    };
    let certificate = store_certificate(&mut tx, s, actor, &env, &c, minting, new, "certificate.issue").await?;
    tx.commit().await?;
    let request = match admin_email {
        Some(to) => Some(request_admin_help(s, actor, &env.name, &c.name, Some(&to)).await?),
        None => None,
    };
    Ok(Issued { certificate, request })
}

/// The admin's address for a request: the one given, else the connection's setting.
pub(crate) fn resolve_admin_email(c: &Connection, admin: &str, given: Option<&str>, needed: bool) -> Result<Option<String>> {
    let stored = c.settings.get("admin_email").and_then(|v| v.as_str());
    let email = given.map(str::trim).filter(|e| !e.is_empty()).or(stored).map(str::to_string);
    match email {
        Some(e) if !crate::providers::looks_like_email(&e) => Err(Error::field("admin_email", "the admin's email must be an address such as admin@acme.com")),
        None if needed => Err(Error::field("admin_email", format!("say whom to ask: give the {admin}'s email address"))),
        Some(e) if needed => Ok(Some(e)),
        _ => Ok(None),
    }
}

/// Where a request goes: the address given, else the connection's `admin_email` setting, else
/// where the latest request of `kind` went (the admin's address is asked once).
pub(crate) async fn request_address(db: &Db, c: &Connection, admin: &str, given: Option<&str>, kind: &RequestKind) -> Result<String> {
    let given = given.map(str::trim).filter(|e| !e.is_empty());
    if given.is_none() && c.settings.get("admin_email").and_then(|v| v.as_str()).is_none() {
        if let Some(r) = latest_of_kind(db, c.id, kind).await? {
            return Ok(r.admin_email);
        }
    }
    Ok(resolve_admin_email(c, admin, given, true)?.expect("needed"))
}

/// `PUT …/certificate`: the admin's own certificate and key, checked, instead of an issued one.
pub async fn upload_certificate(s: Handles<'_>, actor: &Actor, env_name: &str, name: &str, upload: &Upload) -> Result<CertificateInfo> {
    let (env, c, _, minting) = load(&s.db, env_name, name).await?;
    let checked = certs::check_upload(&upload.certificate, upload.private_key.expose_secret(), chrono::Utc::now().timestamp())?;
    let mut tx = s.db.begin().await?;
    let new = NewCertificate { origin: "uploaded", certificate_pem: &checked.certificate_pem, key_der: &checked.private_key, not_after: checked.not_after };
    let info = store_certificate(&mut tx, s, actor, &env, &c, minting, new, "certificate.upload").await?;
    tx.commit().await?;
    Ok(info)
}

fn request_from_row(r: &sqlx::any::AnyRow) -> Result<AdminRequest> {
    let last_answer = match (r.try_get::<Option<String>, _>("answer_at")?, r.try_get::<Option<String>, _>("answer_outcome")?) {
        (Some(at), Some(outcome)) => Some(AnswerOutcome {
            at,
            ok: outcome == "ok",
            detail: r.try_get::<Option<String>, _>("answer_detail")?.unwrap_or_default(),
            advice: r.try_get("answer_advice")?,
            tries_left: r.try_get::<Option<i64>, _>("answer_tries_left")?.unwrap_or(0),
        }),
        _ => None,
    };
    Ok(AdminRequest {
        last_answer,
        id: r.try_get("id")?,
        admin_email: r.try_get("admin_email")?,
        state: r.try_get("state")?,
        requested_by: r.try_get("requested_by")?,
        requested_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        answered_at: r.try_get("answered_at")?,
        delivery: r.try_get("delivery")?,
        delivery_error: r.try_get("delivery_error")?,
        outbox_id: r.try_get("outbox_id")?,
    })
}

/// The latest request of a connection.
async fn latest_request(db: &Db, connection_id: i64) -> Result<Option<AdminRequest>> {
    latest_of_kind(db, connection_id, &CERTIFICATE_REQUEST).await
}

/// The latest request of `kind` for a connection.
pub(crate) async fn latest_of_kind(db: &Db, connection_id: i64, kind: &RequestKind) -> Result<Option<AdminRequest>> {
    let row = sqlx::query(
        "SELECT r.id, r.admin_email, r.state, r.requested_by, r.created_at, r.expires_at, r.answered_at, r.outbox_id, o.delivery, o.last_error AS delivery_error, \
         r.answer_at, r.answer_outcome, r.answer_detail, r.answer_advice, r.answer_tries_left FROM admin_requests r LEFT JOIN outbox o ON o.id = r.outbox_id WHERE r.connection_id = $1 AND r.kind = $2 ORDER BY r.id DESC LIMIT 1",
    )
    .bind(connection_id)
    .bind(kind.kind)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(request_from_row).transpose()
}

/// Refuses (429) one more email about `c` when the past hour already holds
/// CONNVAULT_MAIL_PER_CONNECTION_PER_HOUR requests for it, or
/// CONNVAULT_MAIL_PER_PERSON_PER_HOUR requests by `actor`: otherwise anyone allowed to change a
/// connection could have connvault mail any address any number of times. Counted from the
/// stored requests (sent or not), so a restart does not reset it. On PostgreSQL the
/// connection's row is locked first, so that requests for one connection are counted one after
/// the other.
pub(crate) async fn check_mail_limits(tx: &mut Tx<'_>, s: Handles<'_>, actor: &Actor, c: &Connection) -> Result<()> {
    if s.db.backend() == crate::db::Backend::Postgres {
        sqlx::query("SELECT id FROM connections WHERE id = $1 FOR UPDATE").bind(c.id).fetch_optional(&mut **tx).await?;
    }
    let since = format_time(chrono::Utc::now() - chrono::Duration::hours(1));
    let limited = |n: i64, first: Option<String>, what: String, setting: &str| -> Error {
        let wait = first
            .and_then(|f| chrono::DateTime::parse_from_rfc3339(&f).ok())
            .map(|f| (f.with_timezone(&chrono::Utc) + chrono::Duration::hours(1) - chrono::Utc::now()).num_seconds().max(1) as u64)
            .unwrap_or(3600);
        Error::Limited {
            message: format!("{what} {n} admin requests in the past hour, the most allowed ({setting}); try again in {} minutes", wait.div_ceil(60)),
            retry_after_secs: wait,
        }
    };
    let row = sqlx::query("SELECT COUNT(*) AS n, MIN(created_at) AS first FROM admin_requests WHERE connection_id = $1 AND created_at > $2")
        .bind(c.id)
        .bind(&since)
        .fetch_one(&mut **tx)
        .await?;
    let n: i64 = row.try_get("n")?;
    if n >= i64::from(s.config.mail_per_connection_per_hour) {
        return Err(limited(n, row.try_get("first")?, format!("{} has had", c.name), "CONNVAULT_MAIL_PER_CONNECTION_PER_HOUR"));
    }
    let row = sqlx::query("SELECT COUNT(*) AS n, MIN(created_at) AS first FROM admin_requests WHERE requested_by = $1 AND created_at > $2")
        .bind(&actor.label)
        .bind(&since)
        .fetch_one(&mut **tx)
        .await?;
    let n: i64 = row.try_get("n")?;
    if n >= i64::from(s.config.mail_per_person_per_hour) {
        return Err(limited(n, row.try_get("first")?, format!("{} has sent", actor.label), "CONNVAULT_MAIL_PER_PERSON_PER_HOUR"));
    }
    Ok(())
}

/// Emails the admin a request with the certificate to upload and a one-time link (7 days).
/// A previous open request is replaced (its link stops working). If the email cannot be sent,
/// the request is withdrawn again and the error says why.
pub async fn request_admin_help(s: Handles<'_>, actor: &Actor, env_name: &str, name: &str, admin_email: Option<&str>) -> Result<AdminRequest> {
    let (env, c, def, _) = load(&s.db, env_name, name).await?;
    let help = help_of(def)?;
    ensure_set_up(&c, def)?;
    let to = request_address(s.db, &c, help.admin, admin_email, &CERTIFICATE_REQUEST).await?;
    let (pem, file) = current_pem(&s.db, &env, &c).await.map_err(|_| Error::Conflict {
        code: "no_certificate",
        message: format!("{} has no certificate to send; issue one first (POST …/certificate) or upload your own", c.name),
    })?;
    let thumbprint = certs::thumbprint_sha1(&certs::der_of(&pem));
    let base = s.config.public_url.trim_end_matches('/').to_string();
    send_request(s, actor, &env, &c, &to, &CERTIFICATE_REQUEST, |link, expires_at| {
        (help.email)(&RequestFacts {
            requester: &actor.label,
            to: &to,
            connection: &c.name,
            environment: &env.name,
            settings: &c.settings,
            callback_url: &format!("{base}/oauth/callback"),
            link,
            expires_at,
            certificate_pem: &pem,
            certificate_file: &file,
            thumbprint_sha1: &thumbprint,
        })
    })
    .await
}

/// A request to an admin tells them where the connection goes and whose it is: refused (409
/// `not_set_up`) while the connection lacks its environment's own settings (a placeholder
/// promotion created), with what to fill in.
pub(crate) fn ensure_set_up(c: &Connection, def: &ProviderDef) -> Result<()> {
    let missing = def.setup_missing(&c.settings, &c.secrets_set.keys().cloned().collect());
    if missing.is_empty() || missing.iter().all(|f| f.secret) {
        // Only secrets are missing: what a credential request is for.
        return Ok(());
    }
    Err(Error::Conflict {
        code: "not_set_up",
        message: format!(
            "{} is not set up in {} yet: {} first, so that the request can tell the admin where the connection goes",
            c.name,
            c.environment,
            providers::setup_advice(&missing)
        ),
    })
}

/// One kind of request to a system's admin: its stored kind, the purpose and page of its
/// one-time link, and the name of its audit events.
pub(crate) struct RequestKind {
    pub kind: &'static str,
    pub purpose: &'static str,
    /// The page the link opens: `PUBLIC_URL/{page}/{env}/{name}?token=…`.
    pub page: &'static str,
    /// `{event}.send`, `{event}.cancel`, `{event}.answer`.
    pub event: &'static str,
}

/// The certificate and the steps to register it (this module's requests).
pub(crate) const CERTIFICATE_REQUEST: RequestKind = RequestKind { kind: "certificate", purpose: LINK_PURPOSE, page: "respond", event: "admin_request" };
/// The secrets people would otherwise type, asked of the admin (`crate::credential_requests`).
pub(crate) const CREDENTIAL_REQUEST: RequestKind =
    RequestKind { kind: "credentials", purpose: "credential_request", page: "credentials", event: "credential_request" };

/// Opens a request of `kind` to `to` for `c`: a previous open one (of any kind) is replaced and
/// its link stops working; the mail limits are checked; a one-time link (7 days) is made and
/// the request stored and audited (`{event}.send`). Then the email that `email(link,
/// expires_at)` makes goes out; if it cannot, the request is withdrawn again and the error says
/// why.
pub(crate) async fn send_request(
    s: Handles<'_>,
    actor: &Actor,
    env: &Environment,
    c: &Connection,
    to: &str,
    kind: &RequestKind,
    email: impl FnOnce(&str, &str) -> crate::mail::Email,
) -> Result<AdminRequest> {
    let mut tx = s.db.begin().await?;
    let t = now();
    // The first statement writes (on SQLite it takes the write lock); a refused request rolls
    // it back.
    sqlx::query("UPDATE admin_requests SET state = 'replaced', updated_at = $1 WHERE connection_id = $2 AND state = 'open'")
        .bind(&t)
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    for other in [CERTIFICATE_REQUEST.purpose, CREDENTIAL_REQUEST.purpose].into_iter().filter(|p| *p != kind.purpose) {
        links::drop_links(&mut tx, other, ("connection", c.id)).await?;
    }
    check_mail_limits(&mut tx, s, actor, c).await?;
    let token = links::create_link(&mut tx, kind.purpose, Some(("connection", c.id)), LINK_HOURS, &actor.label).await?;
    let expires_at = format_time(chrono::Utc::now() + chrono::Duration::hours(LINK_HOURS));
    let row = sqlx::query(
        "INSERT INTO admin_requests (connection_id, certificate_id, kind, admin_email, state, requested_by, expires_at, created_at, updated_at) \
         VALUES ($1, (SELECT id FROM certificates WHERE connection_id = $1 AND state <> 'retired' AND $2 = 'certificate' \
         ORDER BY CASE state WHEN 'pending' THEN 0 ELSE 1 END LIMIT 1), $2, $3, 'open', $4, $5, $6, $6) RETURNING id",
    )
    .bind(c.id)
    .bind(kind.kind)
    .bind(to)
    .bind(&actor.label)
    .bind(&expires_at)
    .bind(&t)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    let base = s.config.public_url.trim_end_matches('/');
    let link = format!("{base}/{}/{}/{}?token={}", kind.page, crate::links::url_part(&env.name), crate::links::url_part(&c.name), token.expose_secret());
    // The email is kept with the request and goes out through the job queue: a mail server
    // that is down delays it (retried, its state on the page), it never loses the request.
    let queued = s.mailer.queue(&mut tx, s.vault, &email(&link, &expires_at)).await?;
    sqlx::query("UPDATE admin_requests SET outbox_id = $1 WHERE id = $2").bind(queued.id).bind(id).execute(&mut *tx).await?;
    audit::record(
        &mut tx,
        actor,
        Event::new(&format!("{}.send", kind.event))
            .environment(env.id, &env.name)
            .object("connection", &c.name)
            .detail(json!({"provider": c.provider, "to": to, "expires_at": expires_at, "delivery": queued.delivery})),
    )
    .await?;
    tx.commit().await?;
    crate::jobs::wake(crate::mail::MAIL_JOB);
    Ok(AdminRequest {
        id,
        admin_email: to.to_string(),
        state: "open".into(),
        requested_by: actor.label.clone(),
        requested_at: t,
        expires_at,
        answered_at: None,
        delivery: Some(queued.delivery.into()),
        delivery_error: None,
        outbox_id: Some(queued.id),
        last_answer: None,
    })
}


/// The email of a connection's open request that no mail server took (none is configured, or
/// every attempt failed), for the requester to pass on themselves: to whom, its subject, its
/// text, the whole message (`.eml`) and the one-time link in it. The caller lets only people
/// who may change the connection see it; each reading is audited (`{event}.message_read`),
/// without the link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Undelivered {
    pub to: String,
    pub subject: String,
    pub text: String,
    /// The whole message, base64 (standard alphabet).
    pub eml_base64: String,
    /// `CONNECTION-ENV-request.eml`.
    pub file_name: String,
    /// The one-time link the message carries.
    pub link: String,
    /// `outbox` (no mail server is configured) or `failed` (every attempt failed).
    pub delivery: String,
}

/// The undelivered email of `name`'s open request (409 `no_undelivered_request` when there is
/// none: no open request, or its email went to the mail server).
pub async fn undelivered(s: Handles<'_>, actor: &Actor, env_name: &str, name: &str) -> Result<Undelivered> {
    let env = environments::find(s.db, env_name).await?;
    let c = connections::get(s.db, &env.name, name).await?;
    let none = |why: &str| Error::Conflict { code: "no_undelivered_request", message: format!("{} has no request to pass on: {why}", c.name) };
    let row = sqlx::query("SELECT kind FROM admin_requests WHERE connection_id = $1 AND state = 'open' ORDER BY id DESC LIMIT 1")
        .bind(c.id)
        .fetch_optional(s.db.pool())
        .await?
        .ok_or_else(|| none("no request is open"))?;
    let kind_name: String = row.try_get("kind")?;
    let kind = if kind_name == CREDENTIAL_REQUEST.kind { &CREDENTIAL_REQUEST } else { &CERTIFICATE_REQUEST };
    let request = latest_of_kind(s.db, c.id, kind).await?.filter(|r| r.state == "open").ok_or_else(|| none("no request is open"))?;
    let delivery = request.delivery.clone().unwrap_or_default();
    if !matches!(delivery.as_str(), "outbox" | "failed") {
        return Err(none("its email went to the mail server"));
    }
    let id = request.outbox_id.ok_or_else(|| none("its email is not kept"))?;
    let (item, text) = crate::mail::text(s.db, s.vault, id).await?;
    let (_, eml) = crate::mail::eml(s.db, s.vault, id).await?;
    let start = format!("{}/{}/", s.config.public_url.trim_end_matches('/'), kind.page);
    let link = text.find(&start).map(|i| text[i..].chars().take_while(|c| !c.is_whitespace()).collect::<String>()).unwrap_or_default();
    audit::record_alone(
        s.db,
        actor,
        Event::new(&format!("{}.message_read", kind.event))
            .environment(env.id, &env.name)
            .object("connection", &c.name)
            .detail(json!({"provider": c.provider, "to": item.to, "delivery": delivery})),
    )
    .await?;
    Ok(Undelivered {
        to: item.to,
        subject: item.subject,
        text,
        eml_base64: STANDARD.encode(&eml),
        file_name: format!("{}-{}-request.eml", c.name, env.name),
        link,
        delivery,
    })
}

/// Cancels the open request: its link stops working.
pub async fn cancel_request(s: Handles<'_>, actor: &Actor, env_name: &str, name: &str) -> Result<()> {
    let (env, c, _, _) = load(&s.db, env_name, name).await?;
    cancel_of_kind(s.db, actor, &env, &c, &CERTIFICATE_REQUEST).await
}

/// Cancels `c`'s open request of `kind` (409 when there is none): its link stops working.
pub(crate) async fn cancel_of_kind(db: &Db, actor: &Actor, env: &Environment, c: &Connection, kind: &RequestKind) -> Result<()> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("UPDATE admin_requests SET state = 'cancelled', updated_at = $1 WHERE connection_id = $2 AND kind = $3 AND state = 'open'")
        .bind(now())
        .bind(c.id)
        .bind(kind.kind)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::Conflict { code: "no_open_request", message: format!("{} has no open request to cancel", c.name) });
    }
    links::drop_links(&mut tx, kind.purpose, ("connection", c.id)).await?;
    audit::record(&mut tx, actor, Event::new(&format!("{}.cancel", kind.event)).environment(env.id, &env.name).object("connection", &c.name)).await?;
    tx.commit().await?;
    Ok(())
}

/// A connection the link may name; any mismatch looks like an invalid link.
async fn load_for_link(db: &Db, env_name: &str, name: &str) -> Result<(Environment, Connection, &'static ProviderDef, &'static Minting, &'static AdminHelp)> {
    let invalid = |e: Error| if matches!(e, Error::Database(_) | Error::Internal(_)) { e } else { links::invalid_link() };
    let (env, c, def, minting) = load(db, env_name, name).await.map_err(invalid)?;
    let help = help_of(def).map_err(invalid)?;
    Ok((env, c, def, minting, help))
}

/// What the admin's link page shows (the link is checked, not used).
pub async fn link_view(db: &Db, env_name: &str, name: &str, token: &str) -> Result<LinkView> {
    let (env, c, def, _, help) = load_for_link(db, env_name, name).await?;
    links::peek_link(db, LINK_PURPOSE, token, ("connection", c.id)).await?;
    let request = latest_request(db, c.id).await?;
    let pem = current_pem(db, &env, &c).await.ok().map(|(pem, _)| pem);
    let certificate_file = certificate_file_name(&c.name, &env.name);
    Ok(LinkView {
        environment: env.name,
        connection: c.name,
        provider: def.id.to_string(),
        provider_label: def.label.to_string(),
        admin: help.admin.to_string(),
        facts: (help.link_facts)(&c.settings).into_iter().map(|(label, value)| Fact { label: label.to_string(), value }).collect(),
        answer_fields: help
            .answer_fields
            .iter()
            .map(|name| {
                let spec = def.field(name);
                AnswerField {
                    name: name.to_string(),
                    label: spec.map(|f| f.label).unwrap_or(name).to_string(),
                    help: spec.map(|f| f.help).unwrap_or_default().to_string(),
                }
            })
            .collect(),
        requested_by: request.as_ref().map(|r| r.requested_by.clone()).unwrap_or_default(),
        requested_at: request.as_ref().map(|r| r.requested_at.clone()).unwrap_or_default(),
        expires_at: request.map(|r| r.expires_at).unwrap_or_default(),
        certificate_file,
        thumbprint_sha1: pem.as_deref().map(|p| certs::thumbprint_sha1(&certs::der_of(p))),
        certificate_pem: pem,
    })
}

/// The admin's answer through the one-time link: the provider's answer fields (and possibly
/// their own certificate and key). Everything is checked before the link is used, so a typo
/// does not burn it; then the link is used and the answer stored. Returns who answered and the
/// connection's environment and name, for the test that follows at once (`checks::answer`).
pub async fn take_answer(s: Handles<'_>, env_name: &str, name: &str, answer: &AdminAnswer, addr: Option<std::net::IpAddr>) -> Result<Taken> {
    let (env, c, def, minting, help) = load_for_link(&s.db, env_name, name).await?;
    links::peek_link(&s.db, LINK_PURPOSE, answer.token.expose_secret(), ("connection", c.id)).await?;
    let request = latest_request(s.db, c.id).await?.filter(|r| r.state == "open").ok_or_else(links::invalid_link)?;
    let mut settings = c.settings.clone();
    let mut errors: Vec<FieldError> = Vec::new();
    for (name, value) in &answer.fields {
        if !help.answer_fields.contains(&name.as_str()) {
            errors.push(FieldError::new(name, format!("a {} answers with {} only; remove {name}", help.admin, help.answer_fields.join(", "))));
            continue;
        }
        match value.as_str().map(str::trim) {
            Some(v) if !v.is_empty() => {
                settings.insert(name.clone(), json!(v));
            }
            Some(_) => {}
            None => errors.push(FieldError::new(name, format!("{name} must be text"))),
        }
    }
    for name in help.answer_fields {
        if !settings.contains_key(*name) || answer.fields.get(*name).and_then(|v| v.as_str()).is_some_and(|v| v.trim().is_empty()) {
            let spec = def.field(name);
            errors.push(FieldError::new(*name, format!("{} is needed: {}", spec.map(|f| f.label).unwrap_or(name), spec.map(|f| f.help).unwrap_or_default())));
        }
    }
    if errors.is_empty() {
        errors =
            def.validate(&settings, &Default::default()).into_iter().map(|e| FieldError::new(e.field.trim_start_matches("settings."), e.message)).collect();
    }
    let upload = match (&answer.certificate, &answer.private_key) {
        (Some(cert), Some(key)) if !cert.trim().is_empty() || !key.is_empty() => {
            match certs::check_upload(cert, key.expose_secret(), chrono::Utc::now().timestamp()) {
                Ok(u) => Some(u),
                Err(Error::Validation(e)) => {
                    errors.extend(e);
                    None
                }
                Err(e) => return Err(e),
            }
        }
        (Some(cert), None) if !cert.trim().is_empty() => {
            errors.push(FieldError::new("private_key", "connvault signs with the certificate's private key: upload the key together with your certificate"));
            None
        }
        _ => None,
    };
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let actor = Actor { kind: audit::ActorKind::User, id: None, label: format!("{} (request link)", help.admin), client_addr: addr.map(|a| a.to_string()) };
    let mut tx = s.db.begin().await?;
    let t = now();
    sqlx::query("UPDATE connections SET settings = $1, updated_by = $2, updated_at = $3 WHERE id = $4")
        .bind(serde_json::Value::Object(settings).to_string())
        .bind(&actor.label)
        .bind(&t)
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    connections::remove_secret(&mut tx, c.id, minting.token_field).await?;
    sqlx::query("DELETE FROM connection_health WHERE connection_id = $1").bind(c.id).execute(&mut *tx).await?;
    let filled: Vec<&str> = help.answer_fields.to_vec();
    let mut detail = json!({"provider": c.provider, "settings_set": filled});
    if let Some(u) = &upload {
        let new = NewCertificate { origin: "uploaded", certificate_pem: &u.certificate_pem, key_der: &u.private_key, not_after: u.not_after };
        let info = store_certificate(&mut tx, s, &actor, &env, &c, minting, new, "certificate.upload").await?;
        detail["certificate_uploaded"] = json!(info.fingerprint_sha256);
    }
    audit::record(&mut tx, &actor, Event::new("admin_request.answer").environment(env.id, &env.name).object("connection", &c.name).detail(detail)).await?;
    tx.commit().await?;
    Ok(Taken::new(actor, env, c, request.id, &CERTIFICATE_REQUEST, help.admin))
}

/// An admin's answer taken (stored, its link not used yet): who gave it, for which connection
/// and request.
pub struct Taken {
    pub actor: Actor,
    pub environment: String,
    pub connection: String,
    pub(crate) request_id: i64,
    pub(crate) environment_id: i64,
    pub(crate) provider: String,
    pub(crate) kind: &'static RequestKind,
    /// Who was asked, e.g. "Salesforce admin".
    pub(crate) admin: &'static str,
}

impl Taken {
    /// The answer of `actor` to request `request_id` of `kind` (to `admin`) for `c` in `env`.
    pub(crate) fn new(actor: Actor, env: Environment, c: Connection, request_id: i64, kind: &'static RequestKind, admin: &'static str) -> Taken {
        Taken { actor, environment: env.name, connection: c.name, request_id, environment_id: env.id, provider: c.provider, kind, admin }
    }
}

/// After the test of an admin's answer (promise 16): one that works uses the link up and
/// answers the request; one that fails leaves the link usable, up to
/// `links::MAX_FAILED_ANSWERS` failed answers, and the result says how many tries are left (or
/// that the link is used up, and whom to ask for a new one). The outcome is kept with the
/// request (the connection page shows it), and the requester, when they are a person with an
/// account, is emailed it in the same transaction (never the link). Audited (`{event}.settle`).
pub async fn settle(s: Handles<'_>, taken: &Taken, token: &SecretString, result: TestResult) -> Result<TestResult> {
    let requester = sqlx::query_scalar::<_, String>("SELECT requested_by FROM admin_requests WHERE id = $1").bind(taken.request_id).fetch_one(s.db.pool()).await?;
    let tested = result.clone();
    let (result, used_up, left) = if result.ok {
        (result, true, 0)
    } else {
        let left = links::fail_answer(s.db, taken.kind.purpose, token.expose_secret()).await?;
        let note = if left > 0 {
            format!("correct it and send again on this page ({left} more {} with this link)", if left == 1 { "try" } else { "tries" })
        } else {
            format!("this link is used up after {} answers that did not work: ask {requester} for a new one", links::MAX_FAILED_ANSWERS)
        };
        let advice = match result.advice {
            Some(a) => format!("{a}; then {note}"),
            None => note,
        };
        (TestResult { advice: Some(advice), ..result }, left == 0, left)
    };
    let t = now();
    let mut tx = s.db.begin().await?;
    if result.ok {
        // A concurrent answer may have used it first: the connection works either way.
        let _ = links::consume_link(&mut tx, taken.kind.purpose, token.expose_secret(), None).await;
    }
    sqlx::query(
        "UPDATE admin_requests SET answer_at = $1, answer_outcome = $2, answer_detail = $3, answer_advice = $4, answer_tries_left = $5, updated_at = $1 \
         WHERE id = $6",
    )
    .bind(&t)
    .bind(if tested.ok { "ok" } else { "failed" })
    .bind(&tested.detail)
    .bind(&tested.advice)
    .bind(left)
    .bind(taken.request_id)
    .execute(&mut *tx)
    .await?;
    if used_up {
        sqlx::query("UPDATE admin_requests SET state = 'answered', answered_at = $1 WHERE id = $2 AND state = 'open'")
            .bind(&t)
            .bind(taken.request_id)
            .execute(&mut *tx)
            .await?;
    }
    let to = requester_address(&mut tx, &requester).await?;
    if let Some(to) = &to {
        let email = outcome_email(s, taken, to, &tested, left);
        s.mailer.queue(&mut tx, s.vault, &email).await?;
    }
    audit::record(
        &mut tx,
        &taken.actor,
        Event::new(&format!("{}.settle", taken.kind.event))
            .outcome(if result.ok { "ok" } else { "failed" })
            .environment(taken.environment_id, &taken.environment)
            .object("connection", &taken.connection)
            .detail(json!({"provider": taken.provider, "link_used": used_up, "tries_left": left, "requester_emailed": to.is_some()})),
    )
    .await?;
    tx.commit().await?;
    if to.is_some() {
        crate::jobs::wake(crate::mail::MAIL_JOB);
    }
    Ok(result)
}

/// The address to tell `requester` (a request's `requested_by`) at: theirs, when it is a
/// person with an active account (an API key or the command line has none).
async fn requester_address(tx: &mut Tx<'_>, requester: &str) -> Result<Option<String>> {
    if !providers::looks_like_email(requester) {
        return Ok(None);
    }
    let row = sqlx::query("SELECT email FROM users WHERE email_key = $1 AND status = 'active'").bind(requester.to_lowercase()).fetch_optional(&mut **tx).await?;
    Ok(row.map(|r| r.try_get("email")).transpose()?)
}

/// The email that tells the requester what became of the admin's answer: the test's outcome,
/// what to do, and the connection's page (never the one-time link, which is the admin's).
fn outcome_email(s: Handles<'_>, taken: &Taken, to: &str, tested: &TestResult, left: i64) -> crate::mail::Email {
    use crate::mail::escape_html;
    let label = providers::get(&taken.provider).map(|d| d.label).unwrap_or("");
    let (admin, name, env) = (taken.admin, &taken.connection, &taken.environment);
    let page = format!("{}/env/{}/connections/{}", s.config.public_url.trim_end_matches('/'), links::url_part(env), links::url_part(name));
    let what = format!("The {admin} answered your request for the {label} connection {name} in {env}");
    let (subject, lines) = if tested.ok {
        (format!("{name} in {env} works: the {admin} answered your request"), vec![format!("{what}, and connvault tested it at once: it works ({}).", tested.detail)])
    } else {
        let mut lines = vec![format!("{what}, but the test that followed did not work: {}.", tested.detail)];
        if let Some(a) = &tested.advice {
            lines.push(format!("What to do: {a}."));
        }
        lines.push(if left > 0 {
            format!("The link you sent takes {left} more {}: the {admin} can correct the answer and send it again.", if left == 1 { "answer" } else { "answers" })
        } else {
            format!(
                "The link is used up after {} answers that did not work: send the request again from the connection's page.",
                links::MAX_FAILED_ANSWERS
            )
        });
        (format!("{name} in {env}: the {admin}'s answer does not work yet"), lines)
    };
    let mut text = lines.join("\n\n");
    text.push_str(&format!("\n\nThe connection: {page}\n"));
    let mut html = String::from("<!doctype html><html><body>");
    for l in &lines {
        html.push_str(&format!("<p>{}</p>", escape_html(l)));
    }
    html.push_str(&format!("<p><a href=\"{}\">Open {} in {}</a></p></body></html>", escape_html(&page), escape_html(name), escape_html(env)));
    crate::mail::Email { to: to.to_string(), subject, text, html, attachments: Vec::new() }
}

/// A managed private key (`field`), opened and parsed once for signing, with the DER of the
/// certificate it belongs to (the pending certificate for the pending key).
async fn key_of(s: Handles<'_>, env: &Environment, c: &Connection, minting: &Minting, field: &str) -> Result<(AssertionSigner, Vec<u8>)> {
    let b64 = connections::open_secret(&s.db, &s.vault, &env.name, &c.name, field).await?;
    let der = zeroize::Zeroizing::new(STANDARD.decode(b64.expose_secret()).map_err(|_| Error::Internal("a stored private key is not base64".into()))?);
    let signer = AssertionSigner::from_pkcs8_der(&der)?;
    let state = if field == minting.pending_key_field { "pending" } else { "active" };
    let pem: Option<String> = sqlx::query("SELECT certificate_pem FROM certificates WHERE connection_id = $1 AND state = $2 ORDER BY id DESC LIMIT 1")
        .bind(c.id)
        .bind(state)
        .fetch_optional(s.db.pool())
        .await?
        .map(|r| r.try_get("certificate_pem"))
        .transpose()?;
    Ok((signer, pem.map(|p| certs::der_of(&p)).unwrap_or_default()))
}

/// One token request: with the key in `field` for a connection that signs, else with its
/// typed secrets (opened by the caller, once).
async fn exchange(
    s: Handles<'_>,
    env: &Environment,
    c: &Connection,
    secrets: &Secrets,
    minting: &Minting,
    field: &str,
) -> Result<std::result::Result<Minted, Refusal>> {
    if let Some((detail, advice)) = (minting.not_ready)(&c.settings) {
        return Ok(Err(Refusal { result: TestResult::failed(detail, advice), transient: false }));
    }
    let values: Vec<String> = secrets.values().map(|v| v.expose_secret().to_string()).collect();
    let scrub = |r: Refusal| {
        let secrets: Vec<&str> = values.iter().map(String::as_str).collect();
        Refusal { result: r.result.scrubbed(&secrets), transient: r.transient }
    };
    if signs(c) {
        let (signer, der) = key_of(s, env, c, minting, field).await?;
        Ok((minting.exchange)(s.outbound, &c.settings, secrets, Some(Key { signer: &signer, certificate_der: &der })).await.map_err(scrub))
    } else {
        Ok((minting.exchange)(s.outbound, &c.settings, secrets, None).await.map_err(scrub))
    }
}

/// Whether `c`'s settings choose an auth mode that signs with the key connvault keeps.
fn signs(c: &Connection) -> bool {
    providers::get(&c.provider).and_then(|d| d.signing(&c.settings)).is_some()
}

/// When a minted token should be treated as expired.
fn expiry(minting: &Minting, c: &Connection, minted: &Minted, obtained: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    obtained + minted.expires_in.unwrap_or_else(|| (minting.default_lifetime)(&c.settings))
}

/// Keeps a new token (sealed), audited as a mint. Returns when it was obtained and when it
/// expires.
async fn keep_token(s: Handles<'_>, actor: &Actor, env: &Environment, c: &Connection, minting: &Minting, minted: &Minted, via: &str) -> Result<(String, String)> {
    let obtained = chrono::Utc::now();
    let (t, expires_at) = (format_time(obtained), format_time(expiry(minting, c, minted, obtained)));
    let mut tx = s.db.begin().await?;
    connections::put_secret(&mut tx, &s.vault, env, c.id, minting.token_field, &minted.access_token, &actor.label).await?;
    sqlx::query(
        "INSERT INTO tokens (connection_id, instance_url, org_id, user_id, obtained_at, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $5) \
         ON CONFLICT (connection_id) DO UPDATE SET instance_url = excluded.instance_url, org_id = excluded.org_id, user_id = excluded.user_id, \
         username = NULL, obtained_at = excluded.obtained_at, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
    )
    .bind(c.id)
    .bind(&minted.instance_url)
    .bind(&minted.org_id)
    .bind(&minted.user_id)
    .bind(&t)
    .bind(&expires_at)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("token.mint").environment(env.id, &env.name).object("connection", &c.name).detail(json!({
            "provider": c.provider, "instance_url": minted.instance_url, "org_id": minted.org_id, "expires_at": expires_at, "key": via
        })),
    )
    .await?;
    tx.commit().await?;
    Ok((t, expires_at))
}

/// The pending certificate has worked: it becomes the active one, the old one is retired.
async fn promote_pending(s: Handles<'_>, actor: &Actor, env: &Environment, c: &Connection, minting: &Minting) -> Result<()> {
    let key = connections::open_secret(&s.db, &s.vault, &env.name, &c.name, minting.pending_key_field).await?;
    let t = now();
    let mut tx = s.db.begin().await?;
    sqlx::query("UPDATE certificates SET state = 'retired', updated_at = $1 WHERE connection_id = $2 AND state = 'active'")
        .bind(&t)
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE certificates SET state = 'active', updated_at = $1 WHERE connection_id = $2 AND state = 'pending'")
        .bind(&t)
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    connections::put_secret(&mut tx, &s.vault, env, c.id, minting.key_field, &key, &actor.label).await?;
    connections::remove_secret(&mut tx, c.id, minting.pending_key_field).await?;
    audit::record(&mut tx, actor, Event::new("certificate.activate").environment(env.id, &env.name).object("connection", &c.name)).await?;
    tx.commit().await?;
    Ok(())
}

/// A fresh token with the active key, or the typed secret (the token broker's mint). The
/// provider's refusals are the inner `Err`; the caller records them. On success: the token,
/// when it was obtained and when it expires.
pub async fn mint(s: Handles<'_>, actor: &Actor, env: &Environment, c: &Connection) -> Result<std::result::Result<(Minted, String, String), Refusal>> {
    let def = providers::get(&c.provider).ok_or_else(|| Error::Internal(format!("unknown provider {}", c.provider)))?;
    let minting = def.minting_for(&c.settings).ok_or_else(|| Error::Internal(format!("{} connections with these settings are not minted", def.label)))?;
    if signs(c) && !c.secrets_set.contains_key(minting.key_field) {
        return Ok(Err(Refusal {
            result: TestResult::failed(
                format!("{} has no certificate in use", c.name),
                "issue a certificate (Request admin help) or upload one, then test the connection",
            ),
            transient: false,
        }));
    }
    let mut secrets = connections::open_applicable_secrets(s.db, s.vault, &env.name, c, def).await?;
    // A connection someone signed in for refreshes with the refresh token it keeps.
    let mut used = None;
    if let Some(auth) = def.authorization.filter(|_| (def.auth_mode)(&c.settings).signs_in()) {
        let Some((value, blob)) = connections::open_refresh(s.db, s.vault, env, c, auth.refresh_field).await? else {
            return Ok(Err(Refusal {
                result: TestResult::failed(format!("nobody has signed in for {} yet", c.name), format!("choose {} on the connection page and sign in", auth.button)),
                transient: false,
            }));
        };
        secrets.insert(auth.refresh_field.to_string(), value.clone());
        used = Some((auth, value, blob));
    }
    match exchange(s, env, c, &secrets, minting, minting.key_field).await? {
        Ok(mut minted) => {
            if let (Some(new), Some((auth, value, blob))) = (minted.refresh_token.take(), &used) {
                // Rotation: the new refresh token replaces the one used, unless something newer
                // is stored by now (then that stays, and this one is dropped).
                let kept = connections::rotate_refresh(s.db, s.vault, env, c, auth.refresh_field, value, blob, &new, &actor.label).await?;
                if !kept {
                    tracing::info!(environment = %env.name, connection = %c.name, "a newer refresh token is stored; the one this refresh rotated to is dropped");
                }
            }
            let via = if used.is_some() { "refresh token" } else if signs(c) { "active" } else { "secret" };
            let (at, expires) = keep_token(s, actor, env, c, minting, &minted, via).await?;
            Ok(Ok((minted, at, expires)))
        }
        Err(f) => Ok(Err(f)),
    }
}

/// "Test connection" for a minted connection: a token request (with the pending certificate
/// first, during a rotation), then the provider's verifying call with the new token. Returns
/// the result to show; the caller (`checks::test`) opened `secrets` (the typed secrets that
/// apply), and scrubs, audits and records the result as the connection's latest check.
pub async fn live_check(s: Handles<'_>, actor: &Actor, env: &Environment, c: &Connection, secrets: &Secrets) -> Result<TestResult> {
    let def = providers::get(&c.provider).ok_or_else(|| Error::Internal(format!("unknown provider {}", c.provider)))?;
    let minting = def.minting_for(&c.settings).ok_or_else(|| Error::Internal(format!("{} connections with these settings are not minted", def.label)))?;
    let signs = def.signing(&c.settings).is_some();
    let (has_key, has_pending) = (c.secrets_set.contains_key(minting.key_field), c.secrets_set.contains_key(minting.pending_key_field));
    if signs && !has_key && !has_pending {
        let admin = def.admin_help.map(|h| h.admin).unwrap_or("system's admin");
        return Ok(TestResult::failed(
            "this connection has no certificate yet",
            format!("choose Request admin help to issue a certificate and email the {admin}, or upload your own certificate and key"),
        ));
    }
    if let Some((detail, advice)) = (minting.not_ready)(&c.settings) {
        let waiting = match latest_request(&s.db, c.id).await? {
            Some(r) if r.state == "open" && r.delivery.as_deref() == Some("outbox") => {
                format!("; the request to {} of {} was not sent (no mail server is configured)", r.admin_email, &r.requested_at[..10.min(r.requested_at.len())])
            }
            Some(r) if r.state == "open" => format!("; the request to {} was sent on {}", r.admin_email, &r.requested_at[..10.min(r.requested_at.len())]),
            _ => String::new(),
        };
        return Ok(TestResult::failed(format!("{detail}{waiting}"), advice));
    }
    let mut note = String::new();
    let mut outcome = None;
    if signs && has_pending {
        match exchange(s, env, c, secrets, minting, minting.pending_key_field).await? {
            Ok(minted) => {
                promote_pending(s, actor, env, c, minting).await?;
                keep_token(s, actor, env, c, minting, &minted, "new certificate").await?;
                note = "; the new certificate works and is now in use".into();
                outcome = Some(Ok(minted));
            }
            Err(f) if has_key => {
                note = format!("; the new certificate does not work yet ({}), so the current one stays in use", f.result.detail);
            }
            Err(f) => outcome = Some(Err(f)),
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        // Signed in: a refresh (with its rotation), as the broker makes it.
        None if def.authorization.is_some_and(|_| (def.auth_mode)(&c.settings).signs_in()) => mint(s, actor, env, c).await?.map(|(minted, _, _)| minted),
        None => match exchange(s, env, c, secrets, minting, minting.key_field).await? {
            Ok(minted) => {
                keep_token(s, actor, env, c, minting, &minted, if signs { "active" } else { "secret" }).await?;
                Ok(minted)
            }
            Err(f) => Err(f),
        },
    };
    let minted = match outcome {
        Ok(minted) => minted,
        Err(f) => return Ok(f.result),
    };
    let secrets = [minted.access_token.expose_secret()];
    let result = match (minting.verify)(&s.outbound, &c.settings, &minted).await {
        Ok(Identity { org_id, user_id, username, summary }) => {
            sqlx::query(
                "UPDATE tokens SET org_id = COALESCE($1, org_id), user_id = COALESCE($2, user_id), username = $3, updated_at = $4 WHERE connection_id = $5",
            )
            .bind(&org_id)
            .bind(&user_id)
            .bind(&username)
            .bind(now())
            .bind(c.id)
            .execute(s.db.pool())
            .await?;
            TestResult::passed(format!("{summary}{note}"))
        }
        Err(f) => f.result,
    };
    Ok(result.scrubbed(&secrets))
}

/// Where the signing connection `name` stands (409 for a connection that does not sign).
pub async fn status_of(db: &Db, env_name: &str, name: &str) -> Result<Status> {
    let (_, c, _, _) = load(db, env_name, name).await?;
    status(db, &c).await
}

/// Where this signing connection stands.
pub async fn status(db: &Db, c: &Connection) -> Result<Status> {
    let (def, minting) = signing_def(c)?;
    let (certificate, pending_certificate) = certificates(db, c.id).await?;
    let request = latest_request(db, c.id).await?;
    let health = connections::health_of(db, &[c.id]).await?.remove(&c.id);
    let session = sqlx::query("SELECT instance_url, org_id, username, obtained_at FROM tokens WHERE connection_id = $1")
        .bind(c.id)
        .fetch_optional(db.pool())
        .await?
        .map(|r| -> Result<Connected> {
            Ok(Connected {
                instance_url: r.try_get("instance_url")?,
                org_id: r.try_get("org_id")?,
                username: r.try_get("username")?,
                obtained_at: r.try_get("obtained_at")?,
            })
        })
        .transpose()?;
    let open = request.as_ref().filter(|r| r.state == "open" && r.expires_at > now());
    let admin = def.admin_help.map(|h| h.admin).unwrap_or("system's admin");
    let answered = def.admin_help.map(|h| h.answered_state).unwrap_or("not_tested");
    let ready = (minting.not_ready)(&c.settings).is_none();
    let missing = def.setup_missing(&c.settings, &c.secrets_set.keys().cloned().collect());
    let (state, summary, advice) = match (&health, &certificate, &pending_certificate) {
        // A placeholder promotion created, or a connection that lost a required setting.
        _ if !missing.is_empty() => (
            "not_set_up",
            format!("not set up in {} yet", c.environment),
            Some(format!("{} here, then issue or upload a certificate and ask the {admin}", providers::setup_advice(&missing))),
        ),
        (Some(h), _, _) if h.ok => ("connected", h.detail.clone(), None),
        (Some(h), _, _) => ("failing", h.detail.clone(), h.advice.clone()),
        (None, None, None) => {
            ("no_certificate", "no certificate yet".to_string(), Some("choose Request admin help, or upload your own certificate".to_string()))
        }
        _ if ready => {
            let what = def.admin_help.map(|h| h.answer_fields.iter().map(|f| def.field(f).map(|s| s.label).unwrap_or(f)).collect::<Vec<_>>().join(" and "));
            (answered, format!("{} received; not tested yet", what.unwrap_or_else(|| "settings".into())), Some("choose Test connection".to_string()))
        }
        _ => match open {
            Some(r) => {
                let (summary, advice) = waiting_words(r, admin);
                ("waiting_for_admin", summary, advice)
            }
            None => (
                "waiting_for_admin",
                "certificate ready; no open request to an admin".to_string(),
                Some(format!("send the request to the {admin}, or fill in what the admin created")),
            ),
        },
    };
    Ok(Status {
        state: state.into(),
        summary,
        advice,
        certificate,
        pending_certificate,
        request,
        connected: if state == "connected" { session } else { None },
        checked_at: health.map(|h| h.checked_at),
    })
}

/// An open request in words, as `(summary, advice)`: waiting for the admin, or not sent
/// because no mail server is configured (then the requester passes it on), or not delivered;
/// and what became of the admin's latest answer, if it did not work.
pub(crate) fn waiting_words(r: &AdminRequest, admin: &str) -> (String, Option<String>) {
    let day = &r.requested_at[..10.min(r.requested_at.len())];
    // An answer came through the link: the request reached the admin, however it went.
    let (mut summary, mut advice) = match r.delivery.as_deref().filter(|_| r.last_answer.is_none()) {
        Some("outbox") => (
            format!("the request to {} ({day}) was not sent: no mail server is configured", r.admin_email),
            Some("pass it on yourself: its text, its .eml and the link are on the connection's page (an owner also finds it in the outbox)".to_string()),
        ),
        Some("failed") => (
            format!(
                "the request to {} ({day}) was not delivered: every attempt failed{}",
                r.admin_email,
                r.delivery_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            ),
            Some("check the mail server, then send the request again; or pass it on yourself from the connection's page".to_string()),
        ),
        _ => (format!("waiting for the {admin}: requested on {day} to {}", r.admin_email), None),
    };
    if let Some(a) = r.last_answer.as_ref().filter(|a| !a.ok) {
        summary.push_str(&format!(
            "; the answer of {} did not work ({}; {} more {} with the link)",
            &a.at[..10.min(a.at.len())],
            a.detail,
            a.tries_left,
            if a.tries_left == 1 { "try" } else { "tries" }
        ));
        advice = advice.or_else(|| a.advice.clone());
    }
    (summary, advice)
}

/// What the connections list shows of each signing connection (one query for a page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Brief {
    /// not_set_up, no_certificate, waiting_for_admin or the provider's answered state (a tested
    /// connection shows its latest check instead).
    pub state: String,
    /// The active certificate's expiry, and whether it is within the warning window.
    pub certificate_expires: Option<(String, bool)>,
}

pub async fn briefs(db: &Db, list: &[Connection]) -> Result<std::collections::BTreeMap<i64, Brief>> {
    let signing: Vec<(&Connection, &ProviderDef, &Minting)> = list.iter().filter_map(|c| signing_def(c).ok().map(|(d, m)| (c, d, m))).collect();
    let mut out = std::collections::BTreeMap::new();
    if signing.is_empty() {
        return Ok(out);
    }
    let in_list = crate::db::id_list(signing.iter().map(|(c, _, _)| c.id));
    // `in_list` is integers read from the database.
    let certs =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT connection_id, not_after FROM certificates WHERE state = 'active' AND connection_id IN ({in_list})")))
            .fetch_all(db.pool())
            .await?;
    let soon = format_time(chrono::Utc::now() + chrono::Duration::days(EXPIRY_WARNING_DAYS));
    let mut expiry = std::collections::BTreeMap::new();
    for r in &certs {
        let not_after: String = r.try_get("not_after")?;
        expiry.insert(r.try_get::<i64, _>("connection_id")?, (not_after.clone(), not_after <= soon));
    }
    for (c, def, minting) in signing {
        let has_key = c.secrets_set.contains_key(minting.key_field) || c.secrets_set.contains_key(minting.pending_key_field);
        let state = if !def.setup_missing(&c.settings, &c.secrets_set.keys().cloned().collect()).is_empty() {
            "not_set_up"
        } else if !has_key {
            "no_certificate"
        } else if (minting.not_ready)(&c.settings).is_none() {
            def.admin_help.map(|h| h.answered_state).unwrap_or("not_tested")
        } else {
            "waiting_for_admin"
        };
        out.insert(c.id, Brief { state: state.into(), certificate_expires: expiry.remove(&c.id) });
    }
    Ok(out)
}

/// A certificate that expires within the warning window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiring {
    pub environment: String,
    pub connection: String,
    pub not_after: String,
}

/// Certificates in use that expire within 30 days (or have expired), soonest first, in these
/// environments.
pub async fn expiring(db: &Db, environment_ids: &[i64]) -> Result<Vec<Expiring>> {
    if environment_ids.is_empty() {
        return Ok(Vec::new());
    }
    let in_list = crate::db::id_list(environment_ids.iter().copied());
    let soon = format_time(chrono::Utc::now() + chrono::Duration::days(EXPIRY_WARNING_DAYS));
    // `in_list` is integers read from the database.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT e.name AS environment, c.name AS connection, s.not_after FROM certificates s JOIN connections c ON c.id = s.connection_id \
         JOIN environments e ON e.id = c.environment_id WHERE s.state = 'active' AND s.not_after <= $1 AND c.environment_id IN ({in_list}) ORDER BY s.not_after, c.name"
    )))
    .bind(soon)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok(Expiring { environment: r.try_get("environment")?, connection: r.try_get("connection")?, not_after: r.try_get("not_after")? }))
        .collect()
}
