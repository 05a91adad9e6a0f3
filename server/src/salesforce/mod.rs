//! The Salesforce connected-app flow: certificates (issued or uploaded, rotated without a gap),
//! the request to the Salesforce admin and the one-time link that answers it, the JWT-bearer
//! flow, and each connection's status.
//!
//! Private keys and session tokens are managed secrets of the connection (sealed in
//! `connection_secrets`, see `providers::salesforce`); certificates are public and live in
//! `salesforce_certificates`. A rotated certificate is `pending` until an assertion signed with
//! its key has worked once; until then the `active` one keeps signing.

pub mod cert;
pub mod client;
pub mod jwt;
pub mod request;
pub mod standin;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::audit::{self, Actor, Event};
use crate::connections::{self, Connection};
use crate::db::{format_time, now, Db, Tx};
use crate::environments::{self, Environment};
use crate::error::{Error, FieldError, Result};
use crate::providers::salesforce::{Settings, ACCESS_TOKEN, PENDING_PRIVATE_KEY, PRIVATE_KEY, SALESFORCE};
use crate::providers::TestResult;
use crate::secret::{SecretBytes, SecretString};
use crate::sessions;
use crate::startup::Services;
use client::{Failure, Session};
use jwt::{AssertionSigner, Claims};

pub const LINK_PURPOSE: &str = "salesforce_admin";
/// An admin request link works for 7 days.
pub const LINK_HOURS: i64 = 7 * 24;
/// Certificates expiring within this many days are flagged.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

// The values of the text fields below, for their schemas.
fn certificate_states() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::api::doc::json_schema(serde_json::json!({"type": "string", "enum": ["active", "pending", "retired"]}))
}

fn certificate_origins() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::api::doc::json_schema(serde_json::json!({"type": "string", "enum": ["issued", "uploaded"]}))
}

fn request_states() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::api::doc::json_schema(serde_json::json!({"type": "string", "enum": ["open", "answered", "cancelled", "replaced"]}))
}

fn deliveries() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::api::doc::json_schema(serde_json::json!({"type": "string", "enum": ["smtp", "outbox"]}))
}

fn status_states() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::api::doc::json_schema(
        serde_json::json!({"type": "string", "enum": ["no_certificate", "waiting_for_admin", "consumer_key_received", "connected", "failing"]}),
    )
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
    pub fingerprint_sha256: String,
    pub bits: i64,
    #[schema(format = DateTime)]
    pub not_after: String,
    /// Expires within 30 days.
    pub expires_soon: bool,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A request to a Salesforce admin.
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
    /// How the email left: "smtp" or "outbox".
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = deliveries)]
    pub delivery: Option<String>,
    /// The outbox message, when no mail server is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
}

/// Who the last good session acts as.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Connected {
    pub org_id: Option<String>,
    pub username: Option<String>,
    pub instance_url: String,
    pub obtained_at: String,
}

/// Where a Salesforce connection stands, in the words the UI uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = SalesforceStatus)]
pub struct Status {
    /// no_certificate, waiting_for_admin, consumer_key_received, connected, failing.
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

crate::api::doc::hand_schema!(IssueRequest, "IssueRequest", || serde_json::json!({
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
    use crate::api::doc::WS;
    let mut address = crate::providers::patterns::email(WS);
    address["type"] = serde_json::json!("string");
    serde_json::json!({
        "type": ["string", "null"],
        "anyOf": [{"type": "null"}, {"type": "string", "pattern": format!("^[{WS}]*$")}, address],
        "description": "The Salesforce admin's email (as for the admin_email setting; surrounding white space is dropped); blank or left out: the connection's admin_email setting"
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

/// What the admin sends back through the link.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminAnswer {
    pub token: SecretString,
    pub consumer_key: String,
    #[serde(default)]
    pub certificate: Option<String>,
    #[serde(default)]
    pub private_key: Option<SecretString>,
}

/// What the admin's link page shows: enough to know what they are answering, nothing secret.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkView {
    pub environment: String,
    pub connection: String,
    pub username: String,
    pub login_url: String,
    pub requested_by: String,
    pub expires_at: String,
}

fn fingerprint(certificate_pem: &str) -> String {
    let der = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes()).map(|(_, p)| p.contents).unwrap_or_default();
    hex::encode(Sha256::digest(der))
}

pub fn certificate_file_name(connection: &str, environment: &str) -> String {
    format!("{connection}-{environment}.crt")
}

/// The environment and the Salesforce connection `name` in it.
async fn load(db: &Db, env_name: &str, name: &str) -> Result<(Environment, Connection)> {
    let env = environments::find(db, env_name).await?;
    let c = connections::get(db, &env.name, name).await?;
    if c.provider != SALESFORCE.id {
        return Err(Error::Conflict {
            code: "not_salesforce",
            message: format!("{} is a {} connection; certificates, admin requests and status belong to Salesforce connections", c.name, c.provider),
        });
    }
    Ok((env, c))
}

fn cert_from_row(r: &sqlx::any::AnyRow) -> Result<CertificateInfo> {
    let not_after: String = r.try_get("not_after")?;
    let soon = format_time(chrono::Utc::now() + chrono::Duration::days(EXPIRY_WARNING_DAYS));
    Ok(CertificateInfo {
        id: r.try_get("id")?,
        state: r.try_get("state")?,
        origin: r.try_get("origin")?,
        fingerprint_sha256: r.try_get("fingerprint")?,
        bits: r.try_get("bits")?,
        expires_soon: not_after <= soon,
        not_after,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

const CERT_COLUMNS: &str = "id, connection_id, state, origin, fingerprint, bits, not_after, created_by, created_at";

/// The active and pending certificates of a connection.
async fn certificates(db: &Db, connection_id: i64) -> Result<(Option<CertificateInfo>, Option<CertificateInfo>)> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CERT_COLUMNS} FROM salesforce_certificates WHERE connection_id = $1 AND state <> 'retired'")))
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
    let (env, c) = load(db, env_name, name).await?;
    current_pem(db, &env, &c).await
}

async fn current_pem(db: &Db, env: &Environment, c: &Connection) -> Result<(String, String)> {
    let row = sqlx::query("SELECT certificate_pem FROM salesforce_certificates WHERE connection_id = $1 AND state <> 'retired' ORDER BY CASE state WHEN 'pending' THEN 0 ELSE 1 END LIMIT 1")
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
async fn store_certificate(
    tx: &mut Tx<'_>,
    s: &Services,
    actor: &Actor,
    env: &Environment,
    c: &Connection,
    new: NewCertificate<'_>,
    action: &str,
) -> Result<CertificateInfo> {
    let NewCertificate { origin, certificate_pem, key_der, not_after } = new;
    let not_after = &format_time(chrono::DateTime::from_timestamp(not_after, 0).unwrap_or_default());
    let (connection_id, by) = (c.id, actor.label.as_str());
    let has_active = sqlx::query("SELECT id FROM salesforce_certificates WHERE connection_id = $1 AND state = 'active'")
        .bind(connection_id)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    let t = now();
    sqlx::query("UPDATE salesforce_certificates SET state = 'retired', updated_at = $1 WHERE connection_id = $2 AND state = 'pending'")
        .bind(&t)
        .bind(connection_id)
        .execute(&mut **tx)
        .await?;
    let (state, field) = if has_active { ("pending", PENDING_PRIVATE_KEY) } else { ("active", PRIVATE_KEY) };
    let bits = AssertionSigner::from_pkcs8_der(key_der.expose_secret())?.bits() as i64;
    let row = sqlx::query(
        "INSERT INTO salesforce_certificates (connection_id, state, origin, certificate_pem, fingerprint, bits, not_after, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(connection_id)
    .bind(state)
    .bind(origin)
    .bind(certificate_pem)
    .bind(fingerprint(certificate_pem))
    .bind(bits)
    .bind(not_after)
    .bind(by)
    .bind(&t)
    .fetch_one(&mut **tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    let key = SecretString::new(STANDARD.encode(key_der.expose_secret()));
    connections::put_secret(tx, &s.vault, env, connection_id, field, &key, by).await?;
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CERT_COLUMNS} FROM salesforce_certificates WHERE id = $1"))).bind(id).fetch_one(&mut **tx).await?;
    let info = cert_from_row(&row)?;
    audit::record(
        tx,
        actor,
        Event::new(action).environment(env.id, &env.name).object("connection", &c.name).detail(json!({
            "origin": origin, "bits": bits, "fingerprint_sha256": info.fingerprint_sha256, "state": info.state, "not_after": info.not_after
        })),
    )
    .await?;
    Ok(info)
}

/// Retires everything that came with a connection's key when its login URL or audience
/// changes (see `providers::salesforce::SALESFORCE.retire_on_destination_change`): its
/// certificates, the open request to the admin and its link, and the session minted with it.
/// The caller drops the key itself with the other stored secrets, in the same transaction.
pub(crate) async fn retire_credentials(tx: &mut Tx<'static>, connection_id: i64) -> Result<()> {
    let t = now();
    sqlx::query("UPDATE salesforce_certificates SET state = 'retired', updated_at = $1 WHERE connection_id = $2 AND state <> 'retired'")
        .bind(&t)
        .bind(connection_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE salesforce_requests SET state = 'cancelled', updated_at = $1 WHERE connection_id = $2 AND state = 'open'")
        .bind(&t)
        .bind(connection_id)
        .execute(&mut **tx)
        .await?;
    sessions::drop_links(tx, LINK_PURPOSE, ("connection", connection_id)).await?;
    sqlx::query("DELETE FROM salesforce_sessions WHERE connection_id = $1").bind(connection_id).execute(&mut **tx).await?;
    Ok(())
}

/// "Request admin help" / "Rotate certificate": a new key pair and self-signed certificate,
/// and (with `send_request`) the request email to the admin.
pub async fn issue_certificate(s: &Services, actor: &Actor, env_name: &str, name: &str, input: IssueRequest) -> Result<Issued> {
    let (env, c) = load(&s.db, env_name, name).await?;
    let bits = input.key_bits.unwrap_or(2048);
    let admin_email = resolve_admin_email(&c, input.admin_email.as_deref(), input.send_request)?;
    if admin_email.is_some() {
        // Refused before a key pair is made for nothing.
        let mut tx = s.db.begin().await?;
        check_mail_limits(&mut tx, s, actor, &c).await?;
        tx.rollback().await?;
    }
    let (conn_name, env_label) = (c.name.clone(), env.name.clone());
    let issued = tokio::task::spawn_blocking(move || cert::issue(bits, &conn_name, &env_label, time::OffsetDateTime::now_utc()))
        .await
        .map_err(|e| Error::Internal(format!("key generation stopped: {e}")))??;
    let mut tx = s.db.begin().await?;
    let new = NewCertificate {
        origin: "issued",
        certificate_pem: &issued.certificate_pem,
        key_der: &issued.private_key,
        not_after: issued.not_after.unix_timestamp(),
    };
    let certificate = store_certificate(&mut tx, s, actor, &env, &c, new, "salesforce.certificate_issue").await?;
    tx.commit().await?;
    let request = match admin_email {
        Some(to) => Some(request_admin_help(s, actor, &env.name, &c.name, Some(&to)).await?),
        None => None,
    };
    Ok(Issued { certificate, request })
}

/// The admin's address for a request: the one given, else the connection's setting.
fn resolve_admin_email(c: &Connection, given: Option<&str>, needed: bool) -> Result<Option<String>> {
    let stored = c.settings.get("admin_email").and_then(|v| v.as_str());
    let email = given.map(str::trim).filter(|e| !e.is_empty()).or(stored).map(str::to_string);
    match email {
        Some(e) if !crate::providers::looks_like_email(&e) => Err(Error::field("admin_email", "the admin's email must be an address such as admin@acme.com")),
        None if needed => Err(Error::field("admin_email", "say whom to ask: give the Salesforce admin's email address")),
        Some(e) if needed => Ok(Some(e)),
        _ => Ok(None),
    }
}

/// `PUT …/certificate`: the admin's own certificate and key, checked, instead of an issued one.
pub async fn upload_certificate(s: &Services, actor: &Actor, env_name: &str, name: &str, upload: &Upload) -> Result<CertificateInfo> {
    let (env, c) = load(&s.db, env_name, name).await?;
    let checked = cert::check_upload(&upload.certificate, upload.private_key.expose_secret(), chrono::Utc::now().timestamp())?;
    let mut tx = s.db.begin().await?;
    let new = NewCertificate { origin: "uploaded", certificate_pem: &checked.certificate_pem, key_der: &checked.private_key, not_after: checked.not_after };
    let info = store_certificate(&mut tx, s, actor, &env, &c, new, "salesforce.certificate_upload").await?;
    tx.commit().await?;
    Ok(info)
}

fn request_from_row(r: &sqlx::any::AnyRow) -> Result<AdminRequest> {
    Ok(AdminRequest {
        id: r.try_get("id")?,
        admin_email: r.try_get("admin_email")?,
        state: r.try_get("state")?,
        requested_by: r.try_get("requested_by")?,
        requested_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        answered_at: r.try_get("answered_at")?,
        delivery: None,
        outbox_id: None,
    })
}

/// The latest request of a connection.
async fn latest_request(db: &Db, connection_id: i64) -> Result<Option<AdminRequest>> {
    let row = sqlx::query(
        "SELECT id, admin_email, state, requested_by, created_at, expires_at, answered_at FROM salesforce_requests WHERE connection_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(connection_id)
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
pub(crate) async fn check_mail_limits(tx: &mut Tx<'_>, s: &Services, actor: &Actor, c: &Connection) -> Result<()> {
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
    let row = sqlx::query("SELECT COUNT(*) AS n, MIN(created_at) AS first FROM salesforce_requests WHERE connection_id = $1 AND created_at > $2")
        .bind(c.id)
        .bind(&since)
        .fetch_one(&mut **tx)
        .await?;
    let n: i64 = row.try_get("n")?;
    if n >= i64::from(s.config.mail_per_connection_per_hour) {
        return Err(limited(n, row.try_get("first")?, format!("{} has had", c.name), "CONNVAULT_MAIL_PER_CONNECTION_PER_HOUR"));
    }
    let row = sqlx::query("SELECT COUNT(*) AS n, MIN(created_at) AS first FROM salesforce_requests WHERE requested_by = $1 AND created_at > $2")
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
pub async fn request_admin_help(s: &Services, actor: &Actor, env_name: &str, name: &str, admin_email: Option<&str>) -> Result<AdminRequest> {
    let (env, c) = load(&s.db, env_name, name).await?;
    let to = resolve_admin_email(&c, admin_email, true)?.expect("needed");
    let settings = Settings::from_map(&c.settings);
    let (pem, file) = current_pem(&s.db, &env, &c).await.map_err(|_| Error::Conflict {
        code: "no_certificate",
        message: format!("{} has no certificate to send; issue one first (POST …/certificate) or upload your own", c.name),
    })?;
    let mut tx = s.db.begin().await?;
    let t = now();
    // The first statement writes (on SQLite it takes the write lock); a refused request rolls
    // it back.
    sqlx::query("UPDATE salesforce_requests SET state = 'replaced', updated_at = $1 WHERE connection_id = $2 AND state = 'open'")
        .bind(&t)
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    check_mail_limits(&mut tx, s, actor, &c).await?;
    let token = sessions::create_link(&mut tx, LINK_PURPOSE, Some(("connection", c.id)), LINK_HOURS, &actor.label).await?;
    let expires_at = format_time(chrono::Utc::now() + chrono::Duration::hours(LINK_HOURS));
    let row = sqlx::query(
        "INSERT INTO salesforce_requests (connection_id, certificate_id, admin_email, state, requested_by, expires_at, created_at, updated_at) \
         VALUES ($1, (SELECT id FROM salesforce_certificates WHERE connection_id = $1 AND state <> 'retired' ORDER BY CASE state WHEN 'pending' THEN 0 ELSE 1 END LIMIT 1), \
         $2, 'open', $3, $4, $5, $5) RETURNING id",
    )
    .bind(c.id)
    .bind(&to)
    .bind(&actor.label)
    .bind(&expires_at)
    .bind(&t)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    audit::record(
        &mut tx,
        actor,
        Event::new("salesforce.admin_request").environment(env.id, &env.name).object("connection", &c.name).detail(json!({"to": to, "expires_at": expires_at})),
    )
    .await?;
    tx.commit().await?;

    let base = s.config.public_url.trim_end_matches('/');
    let link = format!("{base}/respond/{}/{}?token={}", url_part(&env.name), url_part(&c.name), token.expose_secret());
    let facts = request::RequestFacts {
        requester: &actor.label,
        to: &to,
        connection: &c.name,
        environment: &env.name,
        username: &settings.username,
        login_url: &settings.login_url,
        callback_url: &format!("{base}/salesforce/callback"),
        link: &link,
        expires_at: &expires_at,
        certificate_pem: &pem,
        certificate_file: &file,
    };
    match s.mailer.send(&s.db, &s.vault, &request::email(&facts)).await {
        Ok(delivery) => {
            let (delivery, outbox_id) = match delivery {
                crate::mail::Delivery::Sent => ("smtp", None),
                crate::mail::Delivery::Outbox { id } => ("outbox", Some(id)),
            };
            Ok(AdminRequest {
                id,
                admin_email: to,
                state: "open".into(),
                requested_by: actor.label.clone(),
                requested_at: t,
                expires_at,
                answered_at: None,
                delivery: Some(delivery.into()),
                outbox_id,
            })
        }
        Err(e) => {
            let mut tx = s.db.begin().await?;
            sqlx::query("UPDATE salesforce_requests SET state = 'cancelled', updated_at = $1 WHERE id = $2").bind(now()).bind(id).execute(&mut *tx).await?;
            sessions::drop_links(&mut tx, LINK_PURPOSE, ("connection", c.id)).await?;
            audit::record(
                &mut tx,
                actor,
                Event::new("salesforce.admin_request")
                    .outcome("failure")
                    .environment(env.id, &env.name)
                    .object("connection", &c.name)
                    .detail(json!({"to": to, "error": e.public_message()})),
            )
            .await?;
            tx.commit().await?;
            Err(e)
        }
    }
}

fn url_part(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Cancels the open request: its link stops working.
pub async fn cancel_request(s: &Services, actor: &Actor, env_name: &str, name: &str) -> Result<()> {
    let (env, c) = load(&s.db, env_name, name).await?;
    let mut tx = s.db.begin().await?;
    let done = sqlx::query("UPDATE salesforce_requests SET state = 'cancelled', updated_at = $1 WHERE connection_id = $2 AND state = 'open'")
        .bind(now())
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::Conflict { code: "no_open_request", message: format!("{} has no open admin request to cancel", c.name) });
    }
    sessions::drop_links(&mut tx, LINK_PURPOSE, ("connection", c.id)).await?;
    audit::record(&mut tx, actor, Event::new("salesforce.admin_request_cancel").environment(env.id, &env.name).object("connection", &c.name)).await?;
    tx.commit().await?;
    Ok(())
}

/// A connection the link may name; any mismatch looks like an invalid link.
async fn load_for_link(db: &Db, env_name: &str, name: &str) -> Result<(Environment, Connection)> {
    load(db, env_name, name).await.map_err(|e| if matches!(e, Error::Database(_) | Error::Internal(_)) { e } else { sessions::invalid_link() })
}

/// What the admin's link page shows (the link is checked, not used).
pub async fn link_view(db: &Db, env_name: &str, name: &str, token: &str) -> Result<LinkView> {
    let (env, c) = load_for_link(db, env_name, name).await?;
    sessions::peek_link(db, LINK_PURPOSE, token, ("connection", c.id)).await?;
    let settings = Settings::from_map(&c.settings);
    let request = latest_request(db, c.id).await?;
    Ok(LinkView {
        environment: env.name,
        connection: c.name,
        username: settings.username,
        login_url: settings.login_url,
        requested_by: request.as_ref().map(|r| r.requested_by.clone()).unwrap_or_default(),
        expires_at: request.map(|r| r.expires_at).unwrap_or_default(),
    })
}

/// The admin's answer through the one-time link: the consumer key (and possibly their own
/// certificate and key). Everything is checked before the link is used, so a typo does not
/// burn it; then the link is used, the answer stored, and the connection tested at once so the
/// admin sees whether it works.
pub async fn answer_request(s: &Services, env_name: &str, name: &str, answer: &AdminAnswer, addr: Option<std::net::IpAddr>) -> Result<TestResult> {
    let (env, c) = load_for_link(&s.db, env_name, name).await?;
    sessions::peek_link(&s.db, LINK_PURPOSE, answer.token.expose_secret(), ("connection", c.id)).await?;
    let key = answer.consumer_key.trim();
    let mut settings = c.settings.clone();
    settings.insert("consumer_key".into(), json!(key));
    let mut errors: Vec<FieldError> = if key.is_empty() {
        vec![FieldError::new("consumer_key", "paste the Consumer Key from the connected app (Manage Consumer Details)")]
    } else {
        SALESFORCE.validate(&settings, &Default::default()).into_iter().map(|e| FieldError::new(e.field.trim_start_matches("settings."), e.message)).collect()
    };
    let upload = match (&answer.certificate, &answer.private_key) {
        (Some(cert), Some(key)) if !cert.trim().is_empty() || !key.is_empty() => {
            match cert::check_upload(cert, key.expose_secret(), chrono::Utc::now().timestamp()) {
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
    let actor = Actor { kind: audit::ActorKind::User, id: None, label: "Salesforce admin (request link)".into(), client_addr: addr.map(|a| a.to_string()) };
    let mut tx = s.db.begin().await?;
    sessions::consume_link(&mut tx, LINK_PURPOSE, answer.token.expose_secret(), Some(("connection", c.id))).await?;
    let t = now();
    sqlx::query("UPDATE connections SET settings = $1, updated_by = $2, updated_at = $3 WHERE id = $4")
        .bind(serde_json::Value::Object(settings).to_string())
        .bind(&actor.label)
        .bind(&t)
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    connections::remove_secret(&mut tx, c.id, ACCESS_TOKEN).await?;
    sqlx::query("DELETE FROM connection_health WHERE connection_id = $1").bind(c.id).execute(&mut *tx).await?;
    sqlx::query("UPDATE salesforce_requests SET state = 'answered', answered_at = $1, updated_at = $1 WHERE connection_id = $2 AND state = 'open'")
        .bind(&t)
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    let mut detail = json!({"consumer_key_set": true});
    if let Some(u) = &upload {
        let new = NewCertificate { origin: "uploaded", certificate_pem: &u.certificate_pem, key_der: &u.private_key, not_after: u.not_after };
        let info = store_certificate(&mut tx, s, &actor, &env, &c, new, "salesforce.certificate_upload").await?;
        detail["certificate_uploaded"] = json!(info.fingerprint_sha256);
    }
    audit::record(&mut tx, &actor, Event::new("salesforce.admin_response").environment(env.id, &env.name).object("connection", &c.name).detail(detail)).await?;
    tx.commit().await?;
    connections::test(s, &actor, &env.name, &c.name).await
}

/// Opens a managed private key (`field`) and parses it once for signing.
async fn signer(s: &Services, env: &Environment, c: &Connection, field: &str) -> Result<AssertionSigner> {
    let b64 = connections::open_secret(&s.db, &s.vault, &env.name, &c.name, field).await?;
    let der = zeroize::Zeroizing::new(STANDARD.decode(b64.expose_secret()).map_err(|_| Error::Internal("a stored private key is not base64".into()))?);
    AssertionSigner::from_pkcs8_der(&der)
}

/// One JWT-bearer exchange with the key in `field`.
async fn exchange(s: &Services, env: &Environment, c: &Connection, settings: &Settings, field: &str) -> Result<std::result::Result<Session, Failure>> {
    let Some(consumer_key) = settings.consumer_key.as_deref() else {
        return Ok(Err(Failure::NotReady {
            detail: "no consumer key yet".into(),
            advice: "paste the connected app's Consumer Key into this connection, or wait for the Salesforce admin to send it through the request link".into(),
        }));
    };
    let signer = signer(s, env, c, field).await?;
    let assertion = signer.assertion(&Claims::new(consumer_key, &settings.username, &settings.audience, chrono::Utc::now().timestamp()))?;
    Ok(client::request_token(&s.outbound, &settings.login_url, &assertion).await)
}

/// Keeps a new session (token sealed), audited as a mint.
async fn keep_session(s: &Services, actor: &Actor, env: &Environment, c: &Connection, session: &Session, via: &str) -> Result<String> {
    let t = now();
    let mut tx = s.db.begin().await?;
    connections::put_secret(&mut tx, &s.vault, env, c.id, ACCESS_TOKEN, &session.access_token, &actor.label).await?;
    sqlx::query(
        "INSERT INTO salesforce_sessions (connection_id, instance_url, org_id, user_id, obtained_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (connection_id) DO UPDATE SET instance_url = excluded.instance_url, org_id = excluded.org_id, user_id = excluded.user_id, \
         obtained_at = excluded.obtained_at, updated_at = excluded.updated_at",
    )
    .bind(c.id)
    .bind(&session.instance_url)
    .bind(&session.org_id)
    .bind(&session.user_id)
    .bind(&t)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("salesforce.token_mint")
            .environment(env.id, &env.name)
            .object("connection", &c.name)
            .detail(json!({"instance_url": session.instance_url, "org_id": session.org_id, "key": via})),
    )
    .await?;
    tx.commit().await?;
    Ok(t)
}

/// The pending certificate has worked: it becomes the active one, the old one is retired.
async fn promote_pending(s: &Services, actor: &Actor, env: &Environment, c: &Connection) -> Result<()> {
    let key = connections::open_secret(&s.db, &s.vault, &env.name, &c.name, PENDING_PRIVATE_KEY).await?;
    let t = now();
    let mut tx = s.db.begin().await?;
    sqlx::query("UPDATE salesforce_certificates SET state = 'retired', updated_at = $1 WHERE connection_id = $2 AND state = 'active'")
        .bind(&t)
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE salesforce_certificates SET state = 'active', updated_at = $1 WHERE connection_id = $2 AND state = 'pending'")
        .bind(&t)
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    connections::put_secret(&mut tx, &s.vault, env, c.id, PRIVATE_KEY, &key, &actor.label).await?;
    connections::remove_secret(&mut tx, c.id, PENDING_PRIVATE_KEY).await?;
    audit::record(&mut tx, actor, Event::new("salesforce.certificate_activate").environment(env.id, &env.name).object("connection", &c.name)).await?;
    tx.commit().await?;
    Ok(())
}

/// A fresh session with the active key (the token broker's mint). Salesforce's refusals are
/// the inner `Err`; the caller records them.
pub async fn mint(s: &Services, actor: &Actor, env: &Environment, c: &Connection) -> Result<std::result::Result<(Session, String), Failure>> {
    let settings = Settings::from_map(&c.settings);
    if !c.secrets_set.contains_key(PRIVATE_KEY) {
        return Ok(Err(Failure::NotReady {
            detail: format!("{} has no certificate in use", c.name),
            advice: "issue a certificate (Request admin help) or upload one, then test the connection".into(),
        }));
    }
    match exchange(s, env, c, &settings, PRIVATE_KEY).await? {
        Ok(session) => {
            let at = keep_session(s, actor, env, c, &session, "active").await?;
            Ok(Ok((session, at)))
        }
        Err(f) => Ok(Err(f)),
    }
}

/// "Test connection" for Salesforce: a JWT-bearer exchange (with the pending certificate first,
/// during a rotation), then userinfo with the new token. Returns the result to show; the
/// caller audits it and records it as the connection's latest check.
pub async fn live_check(s: &Services, actor: &Actor, env: &Environment, c: &Connection) -> Result<TestResult> {
    let settings = Settings::from_map(&c.settings);
    if !c.secrets_set.contains_key(PRIVATE_KEY) && !c.secrets_set.contains_key(PENDING_PRIVATE_KEY) {
        return Ok(TestResult::failed(
            "this connection has no certificate yet",
            "choose Request admin help to issue a certificate and email the Salesforce admin, or upload your own certificate and key",
        ));
    }
    if settings.consumer_key.is_none() {
        let waiting = match latest_request(&s.db, c.id).await? {
            Some(r) if r.state == "open" => format!("; the request to {} was sent on {}", r.admin_email, &r.requested_at[..10.min(r.requested_at.len())]),
            _ => String::new(),
        };
        return Ok(TestResult::failed(
            format!("no consumer key yet{waiting}"),
            "paste the connected app's Consumer Key into this connection, or wait for the Salesforce admin to send it through the request link",
        ));
    }
    let mut note = String::new();
    let mut outcome = None;
    if c.secrets_set.contains_key(PENDING_PRIVATE_KEY) {
        match exchange(s, env, c, &settings, PENDING_PRIVATE_KEY).await? {
            Ok(session) => {
                promote_pending(s, actor, env, c).await?;
                keep_session(s, actor, env, c, &session, "new certificate").await?;
                note = "; the new certificate works and is now in use".into();
                outcome = Some(Ok(session));
            }
            Err(f) if c.secrets_set.contains_key(PRIVATE_KEY) => {
                let why = f.explain(&settings);
                note = format!("; the new certificate does not work yet ({}), so the current one stays in use", why.detail);
            }
            Err(f) => outcome = Some(Err(f)),
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        None => match exchange(s, env, c, &settings, PRIVATE_KEY).await? {
            Ok(session) => {
                keep_session(s, actor, env, c, &session, "active").await?;
                Ok(session)
            }
            Err(f) => Err(f),
        },
    };
    let session = match outcome {
        Ok(session) => session,
        Err(f) => return Ok(f.explain(&settings)),
    };
    let secrets = [session.access_token.expose_secret()];
    let result = match client::userinfo(&s.outbound, &session.instance_url, &session.access_token).await {
        Ok(info) => {
            sqlx::query("UPDATE salesforce_sessions SET org_id = $1, user_id = $2, username = $3, updated_at = $4 WHERE connection_id = $5")
                .bind(&info.organization_id)
                .bind(&info.user_id)
                .bind(&info.preferred_username)
                .bind(now())
                .bind(c.id)
                .execute(s.db.pool())
                .await?;
            s.broker.forget(c.id);
            TestResult::passed(format!("connected to org {} as {} ({}){note}", info.organization_id, info.preferred_username, session.instance_url))
        }
        Err(f) => f.explain(&settings),
    };
    Ok(result.scrubbed(&secrets))
}

/// Where the Salesforce connection `name` stands (409 for a connection of another provider).
pub async fn status_of(db: &Db, env_name: &str, name: &str) -> Result<Status> {
    let (_, c) = load(db, env_name, name).await?;
    status(db, &c).await
}

/// Where this Salesforce connection stands.
pub async fn status(db: &Db, c: &Connection) -> Result<Status> {
    let (certificate, pending_certificate) = certificates(db, c.id).await?;
    let request = latest_request(db, c.id).await?;
    let health = connections::health_of(db, &[c.id]).await?.remove(&c.id);
    let session = sqlx::query("SELECT instance_url, org_id, username, obtained_at FROM salesforce_sessions WHERE connection_id = $1")
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
    let settings = Settings::from_map(&c.settings);
    let open = request.as_ref().filter(|r| r.state == "open" && r.expires_at > now());
    let (state, summary, advice) = match (&health, &certificate, &pending_certificate) {
        (Some(h), _, _) if h.ok => ("connected", h.detail.clone(), None),
        (Some(h), _, _) => ("failing", h.detail.clone(), h.advice.clone()),
        (None, None, None) => {
            ("no_certificate", "no certificate yet".to_string(), Some("choose Request admin help, or upload your own certificate".to_string()))
        }
        _ if settings.consumer_key.is_some() => {
            ("consumer_key_received", "consumer key received; not tested yet".to_string(), Some("choose Test connection".to_string()))
        }
        _ => match open {
            Some(r) => (
                "waiting_for_admin",
                format!("waiting for the admin: requested on {} to {}", &r.requested_at[..10.min(r.requested_at.len())], r.admin_email),
                None,
            ),
            None => (
                "waiting_for_admin",
                "certificate ready; no open request to an admin".to_string(),
                Some("send the request to the Salesforce admin, or paste the consumer key".to_string()),
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

/// What the connections list shows of each Salesforce connection (one query for a page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Brief {
    /// no_certificate, waiting_for_admin or consumer_key_received (a tested connection shows
    /// its latest check instead).
    pub state: String,
    /// The active certificate's expiry, and whether it is within the warning window.
    pub certificate_expires: Option<(String, bool)>,
}

pub async fn briefs(db: &Db, list: &[Connection]) -> Result<std::collections::BTreeMap<i64, Brief>> {
    let ids: Vec<i64> = list.iter().filter(|c| c.provider == SALESFORCE.id).map(|c| c.id).collect();
    let mut out = std::collections::BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let in_list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    // `in_list` is integers read from the database.
    let certs = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT connection_id, not_after FROM salesforce_certificates WHERE state = 'active' AND connection_id IN ({in_list})"
    )))
    .fetch_all(db.pool())
    .await?;
    let soon = format_time(chrono::Utc::now() + chrono::Duration::days(EXPIRY_WARNING_DAYS));
    let mut expiry = std::collections::BTreeMap::new();
    for r in &certs {
        let not_after: String = r.try_get("not_after")?;
        expiry.insert(r.try_get::<i64, _>("connection_id")?, (not_after.clone(), not_after <= soon));
    }
    for c in list.iter().filter(|c| c.provider == SALESFORCE.id) {
        let has_key = c.secrets_set.contains_key(PRIVATE_KEY) || c.secrets_set.contains_key(PENDING_PRIVATE_KEY);
        let state = if !has_key {
            "no_certificate"
        } else if c.settings.get("consumer_key").is_some() {
            "consumer_key_received"
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
    let in_list = environment_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let soon = format_time(chrono::Utc::now() + chrono::Duration::days(EXPIRY_WARNING_DAYS));
    // `in_list` is integers read from the database.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT e.name AS environment, c.name AS connection, s.not_after FROM salesforce_certificates s JOIN connections c ON c.id = s.connection_id \
         JOIN environments e ON e.id = c.environment_id WHERE s.state = 'active' AND s.not_after <= $1 AND c.environment_id IN ({in_list}) ORDER BY s.not_after, c.name"
    )))
    .bind(soon)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok(Expiring { environment: r.try_get("environment")?, connection: r.try_get("connection")?, not_after: r.try_get("not_after")? }))
        .collect()
}
