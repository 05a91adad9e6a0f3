//! Asking a system's admin for the secrets people would otherwise type (an API token, a
//! password, a client secret): "Request credentials" emails the admin the steps the provider
//! declares (`ProviderDef::credential_help`) and a one-time link (7 days, single use, this
//! connection only). On the link's page the admin enters every secret field that applies to
//! the connection's settings, and may set the few settings they own (a user name, a client
//! ID); connvault seals the secrets at once, tests the connection and shows the admin the
//! result. The developer sees "set on DATE by the admin (EMAIL)", never a value.
//!
//! The requests share the table, the mail limits, the replacement of an open request, resend
//! and cancel with the certificate requests (`crate::signing`), as kind `credentials`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::audit::{self, Actor, ActorKind, Event};
use crate::connections::{self, Connection, Stamp};
use crate::db::{now, Db};
use crate::environments::{self, Environment};
use crate::error::{Error, FieldError, Result};
use crate::links;
use crate::mail::{escape_html, Email};
use crate::providers::{self, CredentialHelp, ProviderDef};
use crate::secret::SecretString;
use crate::signing::{self, AdminRequest, Handles, CREDENTIAL_REQUEST};

/// One field the admin's page asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CredentialField {
    pub name: String,
    pub label: String,
    pub help: String,
    /// A secret (write-only, never shown again) or a setting the admin may set.
    pub secret: bool,
    /// Required: every secret that applies is.
    pub required: bool,
    /// A setting's current value (secrets have none to show).
    #[schema(required = true)]
    pub value: Option<String>,
}

/// What the admin's one-time link page shows (the link is checked, not used).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CredentialLinkView {
    pub environment: String,
    pub connection: String,
    pub provider: String,
    pub provider_label: String,
    /// Who is asked, e.g. "Workato workspace admin".
    pub admin: String,
    pub requested_by: String,
    #[schema(format = DateTime)]
    pub requested_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// What to create, in order.
    pub steps: Vec<String>,
    pub fields: Vec<CredentialField>,
}

/// The admin's answer: the token of the link, the secrets, and the settings they own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialAnswer {
    pub token: SecretString,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretString>,
    #[serde(default)]
    pub settings: Map<String, Value>,
}

crate::schema::hand_schema!(CredentialAnswer, "CredentialAnswer", || json!({
    "type": "object",
    "additionalProperties": false,
    "required": ["token"],
    "properties": {
        "token": {"type": "string", "writeOnly": true, "description": "The token of the link in the request email"},
        "secrets": {"type": "object", "writeOnly": true, "additionalProperties": providers::secret_value_schema(), "description": "Every secret field the link's page lists"},
        "settings": {"type": "object", "additionalProperties": {"type": ["string", "null"]}, "description": "Only the settings the page lists as the admin's; null leaves one unset"}
    }
}));

fn help_of(def: &'static ProviderDef) -> Result<&'static CredentialHelp> {
    def.credential_help.ok_or_else(|| Error::Conflict { code: "no_credential_request", message: format!("{} connections cannot ask an admin for credentials", def.label) })
}

async fn load(db: &Db, env_name: &str, name: &str) -> Result<(Environment, Connection, &'static ProviderDef, &'static CredentialHelp)> {
    let env = environments::find(db, env_name).await?;
    let c = connections::get(db, &env.name, name).await?;
    let def = connections::provider(&c.provider)?;
    let help = help_of(def)?;
    Ok((env, c, def, help))
}

/// The fields the admin is asked for, with these settings: every typed secret that applies,
/// then the settings the admin owns.
fn fields(def: &ProviderDef, help: &CredentialHelp, settings: &Map<String, Value>) -> Vec<CredentialField> {
    let secrets = def.typed_secrets(settings).into_iter().map(|f| CredentialField {
        name: f.name.into(),
        label: f.label.into(),
        help: f.help.into(),
        secret: true,
        required: true,
        value: None,
    });
    let owned = help.owned_settings.iter().filter_map(|name| def.field(name)).filter(|f| f.applies(settings)).map(|f| CredentialField {
        name: f.name.into(),
        label: f.label.into(),
        help: f.help.into(),
        secret: false,
        required: false,
        value: settings.get(f.name).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())),
    });
    secrets.chain(owned).collect()
}

/// "Request credentials": emails `admin_email` (or the connection's `admin_email` setting) the
/// provider's steps and a one-time link. An open request (of either kind) is replaced.
pub async fn request(s: Handles<'_>, actor: &Actor, env_name: &str, name: &str, admin_email: Option<&str>) -> Result<AdminRequest> {
    let (env, c, def, help) = load(s.db, env_name, name).await?;
    let to = signing::request_address(s.db, &c, help.admin, admin_email, &CREDENTIAL_REQUEST).await?;
    if def.typed_secrets(&c.settings).is_empty() {
        return Err(Error::Conflict {
            code: "no_typed_secret",
            message: format!("{} has no secret to ask for with these settings (a certificate connection: use Request admin help)", c.name),
        });
    }
    signing::ensure_set_up(&c, def)?;
    let steps = (help.steps)(&c.settings);
    signing::send_request(s, actor, &env, &c, &to, &CREDENTIAL_REQUEST, |link, expires_at| email(&actor.label, &to, &env, &c, def, help, &steps, link, expires_at))
        .await
}

#[allow(clippy::too_many_arguments)]
fn email(requester: &str, to: &str, env: &Environment, c: &Connection, def: &ProviderDef, help: &CredentialHelp, steps: &[String], link: &str, expires_at: &str) -> Email {
    let intro = format!(
        "{requester} asks you, as the {}, for the credentials connvault needs for the {} connection {} ({}). You enter them on a one-time page; \
         connvault seals them at once and tests the connection, and {requester} never sees them.",
        help.admin, def.label, c.name, env.name
    );
    let mut text = format!("{intro}\n\nSteps:\n");
    for (i, step) in steps.iter().enumerate() {
        text.push_str(&format!("{}. {step}\n", i + 1));
    }
    text.push_str(&format!("\nEnter them here (one use, until {expires_at}): {link}\n\nIf you did not expect this request, ignore it: the link expires on its own.\n"));
    let mut html = format!("<!doctype html><html><body><p>{}</p><ol>", escape_html(&intro));
    for step in steps {
        html.push_str(&format!("<li>{}</li>", escape_html(step)));
    }
    html.push_str(&format!(
        "</ol><p><a href=\"{}\">Enter the credentials for {}</a> (one use, until {}).</p><p>If you did not expect this request, ignore it: the link \
         expires on its own.</p></body></html>",
        escape_html(link),
        escape_html(&c.name),
        escape_html(expires_at)
    ));
    Email { to: to.to_string(), subject: format!("{requester} asks you for the {} credentials of {}", def.label, c.name), text, html, attachments: Vec::new() }
}

/// Cancels the open credential request: its link stops working.
pub async fn cancel(db: &Db, actor: &Actor, env_name: &str, name: &str) -> Result<()> {
    let (env, c, _, _) = load(db, env_name, name).await?;
    signing::cancel_of_kind(db, actor, &env, &c, &CREDENTIAL_REQUEST).await
}

/// The latest credential request of a connection, if any.
pub async fn latest(db: &Db, env_name: &str, name: &str) -> Result<Option<AdminRequest>> {
    let (_, c, _, _) = load(db, env_name, name).await?;
    signing::latest_of_kind(db, c.id, &CREDENTIAL_REQUEST).await
}

/// A connection the link may name; any mismatch looks like an invalid link.
async fn load_for_link(db: &Db, env_name: &str, name: &str, token: &str) -> Result<(Environment, Connection, &'static ProviderDef, &'static CredentialHelp)> {
    let invalid = |e: Error| if matches!(e, Error::Database(_) | Error::Internal(_)) { e } else { links::invalid_link() };
    let (env, c, def, help) = load(db, env_name, name).await.map_err(invalid)?;
    links::peek_link(db, CREDENTIAL_REQUEST.purpose, token, ("connection", c.id)).await?;
    Ok((env, c, def, help))
}

/// What the admin's page shows.
pub async fn link_view(db: &Db, env_name: &str, name: &str, token: &str) -> Result<CredentialLinkView> {
    let (env, c, def, help) = load_for_link(db, env_name, name, token).await?;
    let request = signing::latest_of_kind(db, c.id, &CREDENTIAL_REQUEST).await?;
    Ok(CredentialLinkView {
        environment: env.name,
        provider: def.id.to_string(),
        provider_label: def.label.to_string(),
        admin: help.admin.to_string(),
        requested_by: request.as_ref().map(|r| r.requested_by.clone()).unwrap_or_default(),
        requested_at: request.as_ref().map(|r| r.requested_at.clone()).unwrap_or_default(),
        expires_at: request.map(|r| r.expires_at).unwrap_or_default(),
        steps: (help.steps)(&c.settings),
        fields: fields(def, help, &c.settings),
        connection: c.name,
    })
}

/// The admin's answer. Everything is checked first (a typo costs nothing): every secret that
/// applies must be there and nothing else, only the admin's settings may change, and the
/// connection must be valid with them. Then, in one transaction, the settings and secrets are
/// stored (sealed; set by "the admin (EMAIL)"). The link is not used yet: the test that follows
/// at once decides (`checks::answer_credentials`, then `signing::settle`).
pub async fn take_answer(s: Handles<'_>, env_name: &str, name: &str, answer: &CredentialAnswer, addr: Option<std::net::IpAddr>) -> Result<signing::Taken> {
    let (env, c, def, help) = load_for_link(s.db, env_name, name, answer.token.expose_secret()).await?;
    let request = signing::latest_of_kind(s.db, c.id, &CREDENTIAL_REQUEST).await?.filter(|r| r.state == "open").ok_or_else(links::invalid_link)?;
    let mut errors = Vec::new();
    let mut settings = c.settings.clone();
    for (key, value) in &answer.settings {
        if !help.owned_settings.contains(&key.as_str()) {
            errors.push(FieldError::new(format!("settings.{key}"), format!("{key} is not the admin's to set here; the page asks only for {}", help.owned_settings.join(", "))));
            continue;
        }
        match value {
            Value::Null => {
                settings.remove(key);
            }
            Value::String(v) if v.trim().is_empty() => {
                settings.remove(key);
            }
            Value::String(v) => {
                settings.insert(key.clone(), json!(v.trim()));
            }
            _ => errors.push(FieldError::new(format!("settings.{key}"), format!("{key} must be text"))),
        }
    }
    let wanted: Vec<&str> = def.typed_secrets(&settings).into_iter().map(|f| f.name).collect();
    for (name, value) in &answer.secrets {
        if !wanted.contains(&name.as_str()) {
            errors.push(FieldError::new(format!("secrets.{name}"), format!("{name} is not asked for here; the page asks for {}", wanted.join(", "))));
        } else if value.expose_secret().trim().is_empty() {
            errors.push(FieldError::new(format!("secrets.{name}"), "must not be empty"));
        } else if value.len() > providers::MAX_SECRET_LEN {
            errors.push(FieldError::new(format!("secrets.{name}"), format!("is longer than {} bytes", providers::MAX_SECRET_LEN)));
        }
    }
    for name in wanted.iter().filter(|n| !answer.secrets.contains_key(**n)) {
        let label = def.field(name).map(|f| f.label).unwrap_or(name);
        errors.push(FieldError::new(format!("secrets.{name}"), format!("{label} is needed: connvault asked you for it")));
    }
    if errors.is_empty() {
        let present: std::collections::BTreeSet<String> = c.secrets_set.keys().cloned().chain(answer.secrets.keys().cloned()).collect();
        errors = def.validate(&settings, &present);
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let by = format!("the admin ({})", request.admin_email);
    let actor = Actor { kind: ActorKind::User, id: None, label: format!("{by} (request link)"), client_addr: addr.map(|a| a.to_string()) };
    let t = now();
    let mut tx = s.db.begin().await?;
    let changed: Vec<&String> = answer.settings.keys().filter(|k| settings.get(*k) != c.settings.get(*k)).collect();
    sqlx::query("UPDATE connections SET settings = $1, updated_by = $2, updated_at = $3 WHERE id = $4")
        .bind(Value::Object(settings).to_string())
        .bind(&actor.label)
        .bind(&t)
        .bind(c.id)
        .execute(&mut *tx)
        .await?;
    for (field, value) in &answer.secrets {
        connections::store_secret(&mut tx, s.vault, &env, c.id, field, value, &Stamp { by: &by, at: &t }).await?;
    }
    // A cached token or check from before says nothing about these secrets.
    for cached in def.cached_secrets {
        connections::remove_secret(&mut tx, c.id, cached).await?;
    }
    sqlx::query("DELETE FROM connection_health WHERE connection_id = $1").bind(c.id).execute(&mut *tx).await?;
    let secrets_set: Vec<&String> = answer.secrets.keys().collect();
    audit::record(
        &mut tx,
        &actor,
        Event::new("credential_request.answer")
            .environment(env.id, &env.name)
            .object("connection", &c.name)
            .detail(json!({"provider": c.provider, "secrets_set": secrets_set, "settings_set": changed})),
    )
    .await?;
    tx.commit().await?;
    Ok(signing::Taken::new(actor, env, c, request.id, &CREDENTIAL_REQUEST, help.admin))
}
