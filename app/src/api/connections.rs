//! Connections in the browser: the list, the create/edit form (field-level messages), delete.
//! Secrets are write-only: the page learns only which are set, when and by whom.

use std::collections::HashMap;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::ssr::*;
use super::Fallible;
#[cfg(feature = "ssr")]
use super::FieldMessage;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretState {
    pub field: String,
    pub set_at: String,
    pub set_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionItem {
    pub name: String,
    pub provider: String,
    /// The setting that identifies the target system (e.g. the base URL).
    pub target: String,
    pub secrets: Vec<SecretState>,
    pub updated_at: String,
    pub updated_by: String,
    /// "1 secret · set 3 days ago" (the secrets' details are in `secrets`).
    pub secrets_summary: String,
    /// "3 days ago": when the connection last changed.
    pub updated_ago: String,
    /// The latest live check: (worked, what happened, when); `None` if never tested.
    pub check: Option<(bool, String, String)>,
    /// Since when its checks fail (when failing).
    pub failing_since: Option<String>,
    /// Where the connection stands before its first test: `not_set_up` (any provider: a
    /// placeholder promotion created), or for a connection that signs waiting_for_admin, ….
    pub stage: Option<String>,
    /// Salesforce: the certificate's expiry, and whether it is within 30 days.
    pub certificate_expires: Option<(String, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionList {
    pub environment: String,
    pub items: Vec<ConnectionItem>,
    /// Connections matching the filters on every page; the page shown (from 1) of `pages`.
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    pub per_page: i64,
    pub providers: Vec<(String, String)>,
    pub can_write: bool,
}

/// One field of a provider's form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormField {
    pub name: String,
    pub label: String,
    pub help: String,
    /// `text`, `url`, `email`, `choice` or `integer`.
    pub kind: String,
    pub choices: Vec<String>,
    pub secret: bool,
    /// The field applies only when setting `.0` is one of `.1`.
    pub when: Option<(String, Vec<String>)>,
    pub required: bool,
    /// Folded away under "Advanced settings".
    #[serde(default)]
    pub advanced: bool,
    /// A URL offered as a choice of named values, `(label, URL)`, before `other` ("My Domain or
    /// another URL…"), which asks for the URL itself.
    #[serde(default)]
    pub presets: Vec<(String, String)>,
    #[serde(default)]
    pub other: String,
}

impl FormField {
    pub fn applies(&self, value_of: impl Fn(&str) -> String) -> bool {
        self.when.as_ref().is_none_or(|(setting, values)| values.contains(&value_of(setting)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderForm {
    pub id: String,
    pub label: String,
    pub fields: Vec<FormField>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionDetail {
    pub name: String,
    pub provider: String,
    pub settings: Vec<(String, String)>,
    pub secrets: Vec<SecretState>,
    pub created_by: String,
    pub created_at: String,
    pub updated_by: String,
    pub updated_at: String,
    /// Who is asked for help, when this connection signs with a certificate connvault keeps
    /// (e.g. "Salesforce admin"): the page then shows the certificate panel.
    pub signing_admin: Option<String>,
    /// The button that connects by signing in ("Connect with Salesforce"), when this
    /// connection's settings choose that flow: the page then shows the sign-in panel.
    pub sign_in: Option<String>,
    /// Who can be asked for this connection's typed secrets ("Workato workspace admin"), when
    /// its settings have secrets a person types: the page then offers "Request credentials".
    pub credential_admin: Option<String>,
    /// The provider's label when it shows details about the other side (`ProviderDef::details`).
    pub details_from: Option<String>,
}

impl ConnectionDetail {
    pub fn setting(&self, name: &str) -> String {
        self.settings.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionFormData {
    pub environment: String,
    pub can_write: bool,
    pub providers: Vec<ProviderForm>,
    pub connection: Option<ConnectionDetail>,
    /// Where the connection stands (for an existing one).
    #[serde(default)]
    pub flow: Option<FlowView>,
}

/// One step of a connection's flow (`server::flow::Step`): `state` is `done`, `next`,
/// `waiting`, `failed` or `todo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    pub id: String,
    pub title: String,
    pub state: String,
    pub summary: String,
}

/// The status the connection page shows first (`server::flow::Status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStatusView {
    pub state: String,
    pub label: String,
    pub summary: String,
    pub advice: Option<String>,
    pub checked_at: Option<String>,
}

/// A test, token mint or admin's answer (`server::flow::HistoryItem`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryView {
    pub at: String,
    pub kind: String,
    pub ok: bool,
    pub actor: String,
    pub detail: String,
}

/// Where a connection stands, as its page guides people (`server::flow::Flow`), with its
/// history when the person may read the environment's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowView {
    pub status: FlowStatusView,
    pub steps: Vec<StepView>,
    pub used_by: Vec<String>,
    pub signing: Option<super::SigningView>,
    pub credential_request: Option<super::RequestView>,
    pub admin: Option<String>,
    pub admin_email: Option<String>,
    #[serde(default)]
    pub history: Option<Vec<HistoryView>>,
}

impl FlowView {
    pub fn step(&self, id: &str) -> Option<&StepView> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The step whose action is next: the first one not done that is not waiting for an
    /// earlier one.
    pub fn current(&self) -> Option<&StepView> {
        self.steps.iter().find(|s| s.state != "done").filter(|s| s.state != "todo")
    }
}

/// The flow of connection `c` for `user` (the history only for those who may read the audit
/// trail).
#[cfg(feature = "ssr")]
async fn flow_of(s: &server::Services, user: &server::users::User, env: &server::environments::Environment, c: &server::connections::Connection) -> Fallible<FlowView> {
    use server::access::{Access, Resource};
    let flow = server::flow::of(&s.db, c).await.map_err(fail)?;
    let mut view: FlowView = super::certificates::mirror(&flow)?;
    if server::access::user_allows(user, &env.name, env.allow_dev_api_keys, Resource::Audit, Access::Read) {
        view.history = Some(super::certificates::mirror(&server::flow::history(&s.db, env.id, &c.name, 20).await.map_err(fail)?)?);
    }
    Ok(view)
}

/// Where a connection stands now (read again after each action on its page).
#[server(prefix = "/rpc", endpoint = "connection_flow")]
pub async fn connection_flow(environment: String, name: String) -> Fallible<FlowView> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Read).await?;
    let c = server::connections::get(&s.db, &env.name, &name).await.map_err(fail)?;
    flow_of(&s, &user, &env, &c).await
}

#[cfg(feature = "ssr")]
fn secret_states(c: &server::connections::Connection) -> Vec<SecretState> {
    c.secrets_set
        .iter()
        .map(|(field, at)| SecretState { field: field.clone(), set_at: at.clone(), set_by: c.secrets_set_by.get(field).cloned().unwrap_or_default() })
        .collect()
}

#[cfg(feature = "ssr")]
fn provider_forms() -> Vec<ProviderForm> {
    use server::providers::{FieldKind, REGISTRY};
    REGISTRY
        .iter()
        .map(|p| ProviderForm {
            id: p.id.into(),
            label: p.label.into(),
            fields: p
                .fields
                .iter()
                .map(|f| {
                    let presets = p.form.presets.iter().find(|x| x.field == f.name);
                    FormField {
                    advanced: p.form.advanced.contains(&f.name),
                    presets: presets.map(|x| x.values.iter().map(|(l, v)| (l.to_string(), v.to_string())).collect()).unwrap_or_default(),
                    other: presets.map(|x| x.other.to_string()).unwrap_or_default(),
                    name: f.name.into(),
                    label: f.label.into(),
                    help: f.help.into(),
                    kind: match f.kind {
                        FieldKind::Text => "text",
                        FieldKind::Url => "url",
                        FieldKind::Email => "email",
                        FieldKind::Choice => "choice",
                        FieldKind::Integer => "integer",
                        FieldKind::Object => "object",
                    }
                    .into(),
                    choices: f.choices.iter().map(|c| c.to_string()).collect(),
                    secret: f.secret,
                    when: f.when.map(|(s, v)| (s.to_string(), v.iter().map(|x| x.to_string()).collect())),
                    required: f.required,
                }})
                .collect(),
        })
        .collect()
}

/// "3 days ago", "2 hours ago", "just now" from a stored RFC 3339 time.
#[cfg(feature = "ssr")]
fn ago(t: &str) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(t) else { return t.to_string() };
    let secs = (chrono::Utc::now() - then.with_timezone(&chrono::Utc)).num_seconds().max(0);
    let (n, unit) = match secs {
        0..60 => return "just now".into(),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        86400..2_592_000 => (secs / 86400, "day"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Rows per page of the connections page.
pub const CONNECTIONS_PER_PAGE: i64 = 50;

/// One page of an environment's connections, filtered (name, provider, latest check), sorted
/// (`name`, `status`, `changed`), `page` from 1; secrets appear only as "set on DATE by WHO".
#[server(prefix = "/rpc", endpoint = "list_connections")]
pub async fn list_connections(
    environment: String,
    #[server(default)] search: String,
    #[server(default)] provider: String,
    #[server(default)] status: String,
    #[server(default)] sort: String,
    #[server(default)] page: String,
) -> Fallible<ConnectionList> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Read).await?;
    let query = server::connections::BrowseQuery {
        search: Some(search),
        provider: Some(provider).filter(|p| !p.is_empty()),
        check: server::connections::CheckFilter::parse(status.trim()).map_err(fail)?,
        sort: server::connections::Sort::parse(sort.trim()).map_err(fail)?,
        page: page.trim().parse().unwrap_or(1),
        per_page: CONNECTIONS_PER_PAGE,
    };
    let page = server::connections::browse(&s.db, &env.name, &query).await.map_err(fail)?;
    let ids: Vec<i64> = page.items.iter().map(|c| c.id).collect();
    let mut health = server::connections::health_of(&s.db, &ids).await.map_err(fail)?;
    let mut briefs = server::signing::briefs(&s.db, &page.items).await.map_err(fail)?;
    let items = page
        .items
        .into_iter()
        .map(|c| {
            let brief = briefs.remove(&c.id);
            let check = health.remove(&c.id);
            let latest = c.secrets_set.values().max().map(|t| format!(" · set {}", ago(t))).unwrap_or_default();
            let n = c.secrets_set.len();
            ConnectionItem {
                stage: brief.as_ref().map(|b| b.state.clone()).or_else(|| server::connections::setup_stage(&c).map(str::to_string)),
                certificate_expires: brief.and_then(|b| b.certificate_expires),
                secrets_summary: if n == 0 { "no secret set".into() } else { format!("{n} secret{}{latest}", if n == 1 { "" } else { "s" }) },
                updated_ago: ago(&c.updated_at),
                failing_since: check.as_ref().and_then(|h| h.failing_since.clone()),
                check: check.map(|h| (h.ok, h.detail, h.checked_at)),
                // Where the credential goes: the provider's first destination setting.
                target: server::providers::get(&c.provider)
                    .and_then(|d| d.destination_settings.first())
                    .and_then(|k| c.settings.get(*k).and_then(|v| v.as_str()))
                    .unwrap_or("")
                    .to_string(),
                secrets: secret_states(&c),
                name: c.name,
                provider: c.provider,
                updated_at: c.updated_at,
                updated_by: c.updated_by,
            }
        })
        .collect();
    Ok(ConnectionList {
        can_write: server::access::user_allows(&user, &env.name, env.allow_dev_api_keys, Resource::Connections, Access::Write),
        environment: env.name,
        items,
        total: page.total,
        page: page.page,
        pages: page.pages,
        per_page: page.per_page,
        providers: server::providers::REGISTRY.iter().map(|p| (p.id.to_string(), p.label.to_string())).collect(),
    })
}

/// What the create/edit page needs: the providers' fields and, for `name`, the connection.
#[server(prefix = "/rpc", endpoint = "connection_form")]
pub async fn connection_form(environment: String, #[server(default)] name: String) -> Fallible<ConnectionFormData> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Read).await?;
    let mut flow = None;
    let connection = if name.is_empty() {
        None
    } else {
        let c = server::connections::get(&s.db, &env.name, &name).await.map_err(fail)?;
        flow = Some(flow_of(&s, &user, &env, &c).await?);
        let def = server::providers::get(&c.provider);
        let signing_admin = def.filter(|d| d.signing(&c.settings).is_some()).map(|d| d.admin_help.map(|h| h.admin).unwrap_or("system's admin").to_string());
        let credential_admin = def.and_then(|d| d.credential_help.filter(|_| !d.typed_secrets(&c.settings).is_empty())).map(|h| h.admin.to_string());
        let sign_in = server::connect::authorization_of(&c).ok().map(|(_, a)| a.button.to_string());
        Some(ConnectionDetail {
            sign_in,
            signing_admin,
            credential_admin,
            details_from: def.filter(|d| d.details.is_some()).map(|d| d.label.to_string()),
            settings: c.settings.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect(),
            secrets: secret_states(&c),
            name: c.name,
            provider: c.provider,
            created_by: c.created_by,
            created_at: c.created_at,
            updated_by: c.updated_by,
            updated_at: c.updated_at,
        })
    };
    Ok(ConnectionFormData {
        can_write: server::access::user_allows(&user, &env.name, env.allow_dev_api_keys, Resource::Connections, Access::Write),
        environment: env.name,
        providers: provider_forms(),
        connection,
        flow,
    })
}

/// Creates (`original` empty) or changes a connection. Settings that do not apply to the chosen
/// options are dropped (the form shows every field before it hydrates); an empty secret field
/// keeps the stored secret; `presets[FIELD]`, when not empty, is the named URL chosen for that
/// setting (its text field is then not sent). On success the browser goes to the connection's
/// page. A refusal names every field to fix at once (a name already taken with a link to that
/// connection), and carries what was sent, secrets left out, so the form comes back as it was.
#[server(prefix = "/rpc", endpoint = "save_connection")]
pub async fn save_connection(
    environment: String,
    #[server(default)] original: String,
    name: String,
    provider: String,
    #[server(default)] settings: HashMap<String, String>,
    #[server(default)] secrets: HashMap<String, String>,
    #[server(default)] presets: HashMap<String, String>,
) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Write).await?;
    let mut settings = settings;
    for (k, v) in &presets {
        if !v.trim().is_empty() {
            settings.insert(k.clone(), v.clone());
        }
    }
    let mut values: Vec<(String, String)> = vec![("name".into(), name.clone()), ("provider".into(), provider.clone())];
    values.extend(settings.iter().map(|(k, v)| (format!("settings.{k}"), v.clone())));
    values.extend(presets.iter().map(|(k, v)| (format!("presets.{k}"), v.clone())));
    let actor = actor_of(&user).await;
    let created = original.is_empty();
    let outcome = save(&s, &actor, &env.name, &original, &name, &provider, settings, secrets).await;
    let saved = match outcome {
        Ok(saved) => saved,
        Err(e) => {
            let wanted = name.trim();
            // Whether the name is another connection's: said with the other mistakes, with a link.
            let taken = if server::connections::is_valid_name(wanted) && (created || !wanted.eq_ignore_ascii_case(&original)) {
                server::connections::get(&s.db, &env.name, wanted).await.ok()
            } else {
                None
            };
            let name_taken = matches!(e, server::Error::Conflict { code: "connection_exists", .. });
            let mut app = fail(e);
            if let Some(other) = taken {
                if name_taken {
                    app.message = "fix the fields marked".into();
                }
                app.fields.retain(|f| f.field != "name");
                app.fields.insert(
                    0,
                    FieldMessage {
                        field: "name".into(),
                        message: format!("{} already has a connection named {}; choose another name, or open that one", env.name, other.name),
                        href: Some(format!("/env/{}/connections/{}", env.name, urlencode(&other.name))),
                    },
                );
            }
            app.values = values;
            return Err(app);
        }
    };
    // A new or renamed connection lives at a new address; otherwise the page stays where it is
    // (a redirect to the same page would only add a history entry and race the next click).
    if created || saved.name != original {
        leptos_axum::redirect(&format!("/env/{}/connections/{}?saved=1", saved.environment, urlencode(&saved.name)));
    }
    Ok(())
}

/// The change `save_connection` makes, in the server's terms.
#[cfg(feature = "ssr")]
#[allow(clippy::too_many_arguments)]
async fn save(
    s: &server::Services,
    actor: &server::audit::Actor,
    environment: &str,
    original: &str,
    name: &str,
    provider: &str,
    settings: HashMap<String, String>,
    secrets: HashMap<String, String>,
) -> server::error::Result<server::connections::Connection> {
    use serde_json::{Map, Value};
    use server::secret::SecretString;
    let def = server::providers::get(provider)
        .ok_or_else(|| server::Error::field("provider", format!("choose a provider: {}", server::providers::ids().join(", "))))?;
    let mut given = Map::new();
    for (k, v) in &settings {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let value = def.field(k).map_or_else(|| Value::from(v), |f| f.value_from_text(v));
        given.insert(k.clone(), value);
    }
    let applies = |name: &str, all: &Map<String, Value>| def.field(name).is_none_or(|f| f.applies(all));
    let kept: Map<String, Value> = given.iter().filter(|(k, _)| applies(k, &given)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let secrets: std::collections::BTreeMap<String, SecretString> =
        secrets.into_iter().filter(|(k, v)| !v.is_empty() && applies(k, &kept)).map(|(k, v)| (k, SecretString::new(v))).collect();
    if original.is_empty() {
        let input = server::connections::NewConnection { name: name.trim().to_string(), provider: provider.to_string(), settings: kept, secrets };
        return server::connections::create(&s.db, &s.vault, actor, environment, input).await;
    }
    let current = server::connections::get(&s.db, environment, original).await?;
    if current.provider != provider {
        return Err(server::Error::field("provider", "a connection's provider cannot change; create a new connection instead"));
    }
    // Settings left empty are removed; the others replace the stored ones.
    let mut patch_settings = kept;
    for k in current.settings.keys() {
        patch_settings.entry(k.clone()).or_insert(Value::Null);
    }
    let rename = Some(name.trim().to_string()).filter(|n| *n != current.name);
    let patch = server::connections::ConnectionPatch { name: rename, settings: patch_settings, secrets };
    server::connections::update(&s.db, &s.vault, actor, environment, original, patch).await
}

/// Deletes a connection; while integrations are bound to it, only with `force` = "yes".
#[server(prefix = "/rpc", endpoint = "delete_connection")]
pub async fn delete_connection(environment: String, name: String, #[server(default)] force: String) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Write).await?;
    server::connections::delete(&s.db, &actor_of(&user).await, &env.name, &name, force == "yes").await.map_err(fail)?;
    leptos_axum::redirect(&format!("/env/{}/connections", env.name));
    Ok(())
}

/// Percent-encodes a path segment.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The outcome of a live check, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestOutcome {
    pub ok: bool,
    pub detail: String,
    pub advice: Option<String>,
}

/// Tests a connection against its system now (Developers and Administrators: it uses the
/// credential). Audited; the secret never appears in the answer.
#[server(prefix = "/rpc", endpoint = "test_connection")]
pub async fn test_connection(environment: String, name: String) -> Fallible<TestOutcome> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Write).await?;
    let r = server::checks::test(s.signing(), &actor_of(&user).await, &env.name, &name).await.map_err(fail)?;
    Ok(TestOutcome { ok: r.ok, detail: r.detail, advice: r.advice })
}

/// A table the provider shows about the other side (Workato's collaborators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetailsView {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub note: Option<String>,
}

/// The table, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetailsOutcome {
    pub table: Option<DetailsView>,
    pub failure: Option<TestOutcome>,
}

/// Reads what the provider shows about the other side with the stored credential (Developers
/// and Administrators: it uses the credential). Audited.
#[server(prefix = "/rpc", endpoint = "connection_details")]
pub async fn connection_details(environment: String, name: String) -> Fallible<DetailsOutcome> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Write).await?;
    Ok(match server::checks::details(s.signing(), &actor_of(&user).await, &env.name, &name).await.map_err(fail)? {
        Ok(d) => DetailsOutcome { table: Some(DetailsView { title: d.title, columns: d.columns, rows: d.rows, note: d.note }), failure: None },
        Err(r) => DetailsOutcome { table: None, failure: Some(TestOutcome { ok: r.ok, detail: r.detail, advice: r.advice }) },
    })
}

/// Certificates in use that expire within 30 days, in the environments this person
/// can see (for the start page).
#[server(prefix = "/rpc", endpoint = "expiring_certificates")]
pub async fn expiring_certificates() -> Fallible<Vec<(String, String, String)>> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let envs = server::environments::list(&s.db).await.map_err(fail)?;
    let ids: Vec<i64> =
        envs.iter().filter(|e| server::access::user_allows(&user, &e.name, e.allow_dev_api_keys, Resource::Connections, Access::Read)).map(|e| e.id).collect();
    let list = server::signing::expiring(&s.db, &ids).await.map_err(fail)?;
    Ok(list.into_iter().map(|e| (e.environment, e.connection, e.not_after)).collect())
}

/// One thing that needs attention (the home page).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttentionItem {
    pub environment: String,
    pub kind: String,
    pub object: String,
    pub detail: String,
    pub path: String,
}

/// What needs attention in every environment the signed-in person may see.
#[server(prefix = "/rpc", endpoint = "attention")]
pub async fn attention() -> Fallible<Vec<AttentionItem>> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let envs = server::environments::list(&s.db).await.map_err(fail)?;
    let ids: Vec<i64> =
        envs.iter().filter(|e| server::access::user_allows(&user, &e.name, e.allow_dev_api_keys, Resource::Connections, Access::Read)).map(|e| e.id).collect();
    let items = server::attention::items(&s.db, &ids).await.map_err(fail)?;
    Ok(items
        .into_iter()
        .map(|i| AttentionItem { environment: i.environment, kind: i.kind.to_string(), object: i.object, detail: i.detail, path: i.path })
        .collect())
}
