//! Promotion: carrying what an environment uses (its integrations, the descriptors of its
//! connections, and which connection each integration is bound to) to the next environment as
//! a versioned bundle.
//!
//! A bundle never carries a secret (promise 12): connection descriptors hold only the settings
//! a provider declares non-secret, so the target's administrator fills in secrets there. Nor
//! does it carry what belongs to one environment (`ProviderDef::environment_settings`: where a
//! credential goes, whose it is): format version 2 leaves those settings out, an import never
//! compares or writes them (an older, version 1 bundle that still has them is read with them
//! ignored, and the plan says so), and a connection the import creates for a binding (a
//! placeholder) has only a name, a provider and the shared settings, to be set up there.
//! Import (promise 13) validates the whole bundle before it reads the target, plans every
//! change against the target, and applies the plan in one transaction with its audit events:
//! all or nothing. A change that would overwrite something the target decided (different
//! connection settings, a different provider, another binding) is a conflict and stops the
//! import unless an option allows it. Importing the same bundle again finds nothing to do and
//! writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::audit::{self, Actor, Event};
use crate::db::{now, Db, Tx};
use crate::environments::{self, Environment};
use crate::error::{Error, FieldError, Result};
use crate::integrations::{self, ObjectInput, ObjectUse, Publish};
use crate::providers::{self, and_list, ProviderDef};

pub const FORMAT: &str = "connvault-bundle";
/// The version export writes: 2 leaves environment settings out of connection descriptors.
pub const FORMAT_VERSION: i64 = 2;
/// The versions import reads: 1 (environment settings in the descriptors, ignored) and 2.
pub const READABLE_VERSIONS: [i64; 2] = [1, 2];
/// The largest bundle an import accepts. Bundles hold names and settings only, so this is far
/// more than any real environment needs, and small enough to validate in memory.
pub const MAX_BUNDLE_BYTES: usize = 10 * 1024 * 1024;

/// The top-level fields of every format version, in the order export writes them.
const TOP_LEVEL: [&str; 9] =
    ["format", "format_version", "source_environment", "exported_at", "exported_by", "integrations", "connections", "bindings", "digest"];

/// An integration as a bundle carries it.
#[derive(Debug, Clone, Serialize)]
struct ExportIntegration {
    name: String,
    provider: String,
    objects: Vec<ObjectUse>,
    description: Option<String>,
    version: Option<String>,
}

/// A connection as a bundle carries it: what it is (its shared settings), never what it holds
/// or what belongs to its environment.
#[derive(Debug, Clone, Serialize)]
struct ExportConnection {
    name: String,
    provider: String,
    settings: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleBinding {
    integration: String,
    connection: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportIntegration {
    name: String,
    provider: String,
    #[serde(default)]
    objects: Vec<ObjectInput>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportConnection {
    name: String,
    provider: String,
    #[serde(default)]
    settings: Map<String, Value>,
    /// Accepted only to be refused with its path: a bundle never carries secrets.
    #[serde(default)]
    secrets: Option<Value>,
}

/// The canonical JSON of a value: object keys sorted (by bytes), no insignificant whitespace.
/// The digest is computed over it, so any tool can recompute it.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// SHA-256 (lower-case hex) of the canonical JSON of a bundle without its `digest` field.
pub fn digest_of(bundle: &Value) -> String {
    let mut without = bundle.clone();
    if let Value::Object(m) = &mut without {
        m.remove("digest");
    }
    hex::encode(Sha256::digest(canonical_json(&without).as_bytes()))
}

/// The bundle of one environment: its integrations, connection descriptors (shared settings
/// only: neither secrets nor environment settings) and bindings by connection name, each list
/// by name, with its digest.
pub async fn export(db: &Db, actor: &Actor, env_name: &str) -> Result<Value> {
    let env = environments::find(db, env_name).await?;
    let rows = sqlx::query(
        "SELECT i.name, i.provider, i.objects, i.description, i.version, c.name AS connection FROM integrations i \
         LEFT JOIN connections c ON c.id = i.connection_id WHERE i.environment_id = $1 ORDER BY i.name_key",
    )
    .bind(env.id)
    .fetch_all(db.pool())
    .await?;
    let mut integrations = Vec::new();
    let mut bindings = Vec::new();
    for r in &rows {
        let name: String = r.try_get("name")?;
        let objects: String = r.try_get("objects")?;
        if let Some(connection) = r.try_get::<Option<String>, _>("connection")? {
            bindings.push(BundleBinding { integration: name.clone(), connection });
        }
        integrations.push(ExportIntegration {
            objects: serde_json::from_str(&objects).map_err(|e| Error::Internal(format!("integration {name}: stored objects: {e}")))?,
            name,
            provider: r.try_get("provider")?,
            description: r.try_get("description")?,
            version: r.try_get("version")?,
        });
    }
    let rows = sqlx::query("SELECT id, name, provider, settings FROM connections WHERE environment_id = $1 ORDER BY name_key")
        .bind(env.id)
        .fetch_all(db.pool())
        .await?;
    let mut connections = Vec::new();
    for r in &rows {
        let id: i64 = r.try_get("id")?;
        let provider: String = r.try_get("provider")?;
        let settings: String = r.try_get("settings")?;
        let Ok(Value::Object(settings)) = serde_json::from_str(&settings) else {
            return Err(Error::Internal(format!("connection {id} has unreadable settings")));
        };
        // Only what the provider declares a shared, non-secret setting: settings never hold
        // secrets (validation refuses them), and this keeps it so even for a row written some
        // other way; environment settings stay where they are.
        let def = providers::get(&provider);
        let settings = settings
            .into_iter()
            .filter(|(k, _)| def.is_some_and(|d| !d.is_environment_setting(k)) && def.and_then(|d| d.field(k)).is_some_and(|f| !f.secret))
            .collect();
        connections.push(ExportConnection { name: r.try_get("name")?, provider, settings });
    }
    let mut bundle = json!({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source_environment": env.name,
        "exported_at": now(),
        "exported_by": actor.label,
        "integrations": to_json(&integrations)?,
        "connections": to_json(&connections)?,
        "bindings": to_json(&bindings)?,
    });
    bundle["digest"] = json!(digest_of(&bundle));
    Ok(bundle)
}

/// A well-formed bundle of generated items, as an export of `source` would look: `integrations`
/// http integrations (two objects each) and `connections` http connection descriptors, the
/// first half of the integrations bound round-robin. For load tests, benchmarks and trying
/// `connvault import` on a big environment.
pub fn sample_bundle(source: &str, integrations: usize, connections: usize) -> Value {
    let connection_names: Vec<String> = (0..connections).map(|i| format!("Conn_{i:05}")).collect();
    let list: Vec<Value> = (0..integrations)
        .map(|i| {
            json!({"name": format!("Integration_{i:05}"), "provider": "http", "version": "1.0", "description": format!("generated integration {i}"),
                   "objects": [{"name": "Account", "access": "read"}, {"name": format!("Object{}", i % 50), "access": "read_write"}]})
        })
        .collect();
    let descriptors: Vec<Value> = connection_names.iter().map(|name| json!({"name": name, "provider": "http", "settings": {"auth": "bearer"}})).collect();
    let bindings: Vec<Value> = if connection_names.is_empty() {
        Vec::new()
    } else {
        (0..integrations / 2)
            .map(|i| json!({"integration": format!("Integration_{i:05}"), "connection": connection_names[i % connection_names.len()]}))
            .collect()
    };
    let mut bundle = json!({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source_environment": source,
        "exported_at": now(),
        "exported_by": "sample",
        "integrations": list,
        "connections": descriptors,
        "bindings": bindings,
    });
    bundle["digest"] = json!(digest_of(&bundle));
    bundle
}

fn to_json<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("bundle: {e}")))
}

/// An integration of a validated bundle, in its stored form.
#[derive(Debug, Clone)]
struct InIntegration {
    path: String,
    name: String,
    provider: String,
    objects: Vec<ObjectUse>,
    objects_json: String,
    description: Option<String>,
    version: Option<String>,
}

#[derive(Debug, Clone)]
struct InConnection {
    path: String,
    name: String,
    def: &'static ProviderDef,
    /// Its shared settings: all an import reads of it.
    settings: Map<String, Value>,
    /// The environment settings an older bundle carried, left out (by name).
    ignored: Vec<String>,
}

#[derive(Debug, Clone)]
struct InBinding {
    path: String,
    connection: String,
}

/// A bundle that passed every check: well-formed, untampered, every item valid, every
/// reference inside it resolved.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub source_environment: String,
    pub digest: String,
    integrations: Vec<InIntegration>,
    connections: Vec<InConnection>,
    /// By integration name (lower case).
    bindings: BTreeMap<String, InBinding>,
}

// A bundle as export writes it and import reads it (see `parse` for every check).
crate::schema::hand_schema!(Bundle, "Bundle", || {
    use crate::connections::name_schema;
    let not_blank = json!({"type": "string", "pattern": crate::schema::not_blank(), "description": "Not blank, as export writes it"});
    let provider = json!({"type": "string", "enum": crate::providers::ids()});
    let mut integration = crate::integrations::publish_properties();
    integration["name"] = name_schema();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": TOP_LEVEL,
        "properties": {
            "format": {"const": FORMAT},
            "format_version": {"enum": READABLE_VERSIONS, "description": "Export writes 2; import also reads 1 (whose connection descriptors carry environment settings, which it ignores)"},
            "source_environment": not_blank,
            "exported_at": {"type": "string", "format": "date-time"},
            "exported_by": not_blank,
            "integrations": {
                "type": "array",
                "items": {"type": "object", "required": ["name", "provider"], "additionalProperties": false, "properties": integration}
            },
            "connections": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "provider", "settings"],
                    "additionalProperties": false,
                    "properties": {
                        "name": name_schema(),
                        "provider": provider,
                        "settings": {"type": "object", "description": "Shared settings only, valid for the provider (see NewConnection): never a secret, never an environment setting (format_version 1 may carry those; they are ignored)"}
                    }
                }
            },
            "bindings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["integration", "connection"],
                    "additionalProperties": false,
                    "properties": {"integration": name_schema(), "connection": name_schema()}
                }
            },
            "digest": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$",
                "description": "SHA-256 (hex) of the canonical JSON (keys sorted at every level, no whitespace) of the bundle without digest"
            }
        }
    })
});

/// Moves a validation error of one item under its path in the bundle (`name` →
/// `integrations[3].name`); any other error is reported at the item itself.
fn nest(prefix: &str, result: Result<()>, errors: &mut Vec<FieldError>) {
    match result {
        Ok(()) => {}
        Err(Error::Validation(list)) => errors.extend(list.into_iter().map(|e| FieldError::new(format!("{prefix}.{}", e.field), e.message))),
        Err(other) => errors.push(FieldError::new(prefix, other.to_string())),
    }
}

fn text_field(top: &Map<String, Value>, field: &str, errors: &mut Vec<FieldError>) -> String {
    match top.get(field).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => v.to_string(),
        None => {
            errors.push(FieldError::new(field, "must be non-empty text, as export writes it"));
            String::new()
        }
    }
}

fn list_field<'a>(top: &'a Map<String, Value>, field: &str, errors: &mut Vec<FieldError>) -> &'a [Value] {
    match top.get(field) {
        Some(Value::Array(items)) => items,
        _ => {
            errors.push(FieldError::new(field, "must be a list (possibly empty), as export writes it"));
            &[]
        }
    }
}

/// Reads and checks a bundle before anything else happens: the format and its version, the
/// digest, and every item, each problem with its path in the bundle (`integrations[1].provider`).
/// Settings are checked by the provider as far as a bundle carries them: only the shared ones
/// (the environment settings of an older bundle are left out unread), and the secrets and
/// environment settings a descriptor lacks are the target's to fill in, not missing.
pub fn parse(body: &[u8]) -> Result<Bundle> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::BadRequest(format!("the body is not valid JSON ({e}); send the bundle exactly as GET /api/v1/environments/{{env}}/export gave it"))
    })?;
    check(&value)
}

/// The checks of [`parse`] on a bundle already in memory (an export about to be imported
/// in the same process need not be written out and read back).
pub fn check(value: &Value) -> Result<Bundle> {
    let Value::Object(top) = value else {
        return Err(Error::field("body", "a bundle is a JSON object, as GET /api/v1/environments/{env}/export gives it"));
    };
    let mut errors = Vec::new();
    for key in top.keys().filter(|k| !TOP_LEVEL.contains(&k.as_str())) {
        // The empty key is named as JSON writes it, so the path is never blank.
        let path = if key.is_empty() { "\"\"".to_string() } else { key.clone() };
        errors.push(FieldError::new(
            path,
            format!("is not part of a {FORMAT} (format_version {}); remove it", READABLE_VERSIONS.map(|v| v.to_string()).join(" or ")),
        ));
    }
    if top.get("format").and_then(Value::as_str) != Some(FORMAT) {
        errors.push(FieldError::new("format", format!("must be {FORMAT:?}: send a bundle made by GET /api/v1/environments/{{env}}/export")));
    }
    match top.get("format_version").and_then(Value::as_i64) {
        Some(v) if READABLE_VERSIONS.contains(&v) => {}
        Some(v) => errors.push(FieldError::new(
            "format_version",
            format!("version {v} is not supported: this server reads format_version 1 and {FORMAT_VERSION}; export the bundle from a server of this version"),
        )),
        None => errors.push(FieldError::new("format_version", format!("must be the number {FORMAT_VERSION} (or 1, of an older export)"))),
    }
    let digest = match top.get("digest").and_then(Value::as_str) {
        None => {
            errors.push(FieldError::new("digest", "is missing: a bundle carries the SHA-256 of its content; export it again"));
            String::new()
        }
        Some(d) => {
            let expected = digest_of(value);
            if !d.eq_ignore_ascii_case(&expected) {
                errors.push(FieldError::new(
                    "digest",
                    "does not match the bundle's content: it was changed after export, or damaged on the way. Export it again instead of editing it",
                ));
            }
            expected
        }
    };
    let source_environment = text_field(top, "source_environment", &mut errors);
    text_field(top, "exported_at", &mut errors);
    text_field(top, "exported_by", &mut errors);

    // Integrations: each checked as a publish would check it.
    let mut integrations = Vec::new();
    let mut integration_providers: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (i, raw) in list_field(top, "integrations", &mut errors).iter().enumerate() {
        let path = format!("integrations[{i}]");
        let item: ImportIntegration = match serde_json::from_value(raw.clone()) {
            Ok(item) => item,
            Err(e) => {
                errors.push(FieldError::new(path, format!("{e}; an integration is {{name, provider, objects, description, version}}")));
                continue;
            }
        };
        nest(&path, integrations::validate_name(&item.name), &mut errors);
        if let Some((j, _)) = integration_providers.get(&item.name.to_lowercase()) {
            errors.push(FieldError::new(format!("{path}.name"), format!("{} is listed twice (also integrations[{j}])", item.name)));
        } else {
            integration_providers.insert(item.name.to_lowercase(), (i, item.provider.clone()));
        }
        let publish = Publish { provider: item.provider.clone(), objects: item.objects, description: item.description, version: item.version };
        match integrations::normalize(&publish) {
            Ok((objects, description, version)) => {
                let objects_json = serde_json::to_string(&objects).map_err(|e| Error::Internal(e.to_string()))?;
                integrations.push(InIntegration { path, name: item.name, provider: item.provider, objects, objects_json, description, version });
            }
            Err(e) => nest(&path, Err(e), &mut errors),
        }
    }

    // Connection descriptors: settings only, checked by their provider.
    let mut connections = Vec::new();
    let mut connection_providers: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (i, raw) in list_field(top, "connections", &mut errors).iter().enumerate() {
        let path = format!("connections[{i}]");
        let item: ImportConnection = match serde_json::from_value(raw.clone()) {
            Ok(item) => item,
            Err(e) => {
                errors.push(FieldError::new(path, format!("{e}; a connection descriptor is {{name, provider, settings}}")));
                continue;
            }
        };
        nest(&path, crate::connections::validate_name(&item.name), &mut errors);
        if let Some((j, _)) = connection_providers.get(&item.name.to_lowercase()) {
            errors.push(FieldError::new(format!("{path}.name"), format!("{} is listed twice (also connections[{j}])", item.name)));
        } else {
            connection_providers.insert(item.name.to_lowercase(), (i, item.provider.clone()));
        }
        if item.secrets.is_some() {
            errors.push(FieldError::new(
                format!("{path}.secrets"),
                "a bundle never carries secrets: remove them, import, then set the secrets in the target environment",
            ));
        }
        let Some(def) = providers::get(&item.provider) else {
            errors
                .push(FieldError::new(format!("{path}.provider"), format!("unknown provider {:?}; use one of {}", item.provider, providers::ids().join(", "))));
            continue;
        };
        // Environment settings (an older bundle's) are left out unread; the secrets and
        // environment settings the rest call for are the target's to fill in, so only the
        // shared settings are judged (and the provider's own checks run on them).
        let ignored: Vec<String> = item.settings.keys().filter(|k| def.is_environment_setting(k)).cloned().collect();
        let settings = def.shared_settings(&item.settings);
        let problems = def.validate_shared(&settings);
        if problems.is_empty() {
            connections.push(InConnection { path, name: item.name, def, settings, ignored });
        } else {
            nest(&path, Err(Error::Validation(problems)), &mut errors);
        }
    }

    // Bindings: both ends in this bundle, one provider, one binding per integration.
    let mut bindings = BTreeMap::new();
    for (i, raw) in list_field(top, "bindings", &mut errors).iter().enumerate() {
        let path = format!("bindings[{i}]");
        let item: BundleBinding = match serde_json::from_value(raw.clone()) {
            Ok(item) => item,
            Err(e) => {
                errors.push(FieldError::new(path, format!("{e}; a binding is {{integration, connection}}")));
                continue;
            }
        };
        let integration = integration_providers.get(&item.integration.to_lowercase());
        let connection = connection_providers.get(&item.connection.to_lowercase());
        if integration.is_none() {
            errors.push(FieldError::new(format!("{path}.integration"), format!("{} is not among this bundle's integrations", item.integration)));
        }
        if connection.is_none() {
            errors.push(FieldError::new(format!("{path}.connection"), format!("{} is not among this bundle's connections", item.connection)));
        }
        if let (Some((_, ip)), Some((_, cp))) = (integration, connection) {
            if ip != cp {
                errors.push(FieldError::new(
                    format!("{path}.connection"),
                    format!("{} is a {cp} connection; {} needs a {ip} connection", item.connection, item.integration),
                ));
            }
        }
        if bindings.contains_key(&item.integration.to_lowercase()) {
            errors.push(FieldError::new(format!("{path}.integration"), format!("{} is bound twice; an integration has one connection", item.integration)));
            continue;
        }
        bindings.insert(item.integration.to_lowercase(), InBinding { path, connection: item.connection });
    }

    if errors.is_empty() {
        Ok(Bundle { source_environment, digest, integrations, connections, bindings })
    } else {
        Err(Error::Validation(errors))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Plan,
    Apply,
}

/// What an import may do beyond adding what the target lacks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Change the shared settings of a target connection that differ from the bundle's (its
    /// environment settings are never compared or changed).
    pub overwrite_settings: bool,
    /// Create the connections the target lacks, to be set up there: a name, a provider and the
    /// shared settings only (neither secrets nor environment settings).
    pub create_placeholders: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Integration,
    Connection,
    Binding,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Integration => "integration",
            Kind::Connection => "connection",
            Kind::Binding => "binding",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Conflict,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Conflict => "conflict",
        }
    }
}

/// One line of an import plan. A binding's `name` is its integration's.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub kind: Kind,
    /// For a binding: its integration.
    pub name: String,
    pub action: Action,
    pub detail: String,
    /// Where the item is in the bundle (for conflict details).
    #[serde(skip)]
    pub path: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ImportReport)]
pub struct Report {
    pub mode: Mode,
    /// What would change (a plan) or what changed (an apply), in the plan's words or, after
    /// an apply, in the past tense.
    pub changes: Vec<Change>,
    /// Integrations that will have (or have) no connection in the target, and why.
    pub needs_connection: Vec<String>,
    /// Whether the changes were made (apply without conflicts).
    pub applied: bool,
    /// One sentence: "Plan for DEV → QA: 2 to create, …" or "Promoted DEV → QA: 2 created, …".
    pub summary: String,
    /// What the target still needs once this is applied (or now, after an apply): connections
    /// to set up there, integrations to bind there, each with the page to do it on.
    pub checklist: Vec<Step>,
    /// Environment settings an older (format_version 1) bundle carried: ignored, never
    /// compared or written.
    pub ignored_settings: Vec<IgnoredSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ImportStepKind)]
pub enum StepKind {
    /// A connection the target has (or gets, as a placeholder) that is not set up there.
    SetUpConnection,
    /// An integration without a connection in the target.
    BindIntegration,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::SetUpConnection => "set_up_connection",
            StepKind::BindIntegration => "bind_integration",
        }
    }
}

/// One item of the checklist: what to do in the target, and where (a path of the web app).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ImportStep)]
pub struct Step {
    pub kind: StepKind,
    /// The connection or integration.
    pub name: String,
    /// "Set up SF_Main in QA: fill in its Login URL and Integration username, then …".
    pub text: String,
    /// The page to do it on, e.g. `/env/QA/connections/SF_Main`.
    pub path: String,
}

/// The environment settings of one connection descriptor that an import ignored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IgnoredSettings {
    pub connection: String,
    /// Setting names.
    pub settings: Vec<String>,
}

struct TargetConnection {
    id: i64,
    provider: String,
    settings: Map<String, Value>,
    secret_fields: BTreeSet<String>,
}

struct TargetIntegration {
    id: i64,
    provider: String,
    objects: String,
    description: Option<String>,
    version: Option<String>,
    connection: Option<String>,
}

/// One write of an apply, decided by the plan.
enum Op {
    CreateConnection(InConnection),
    /// `settings`: the target's environment settings with the bundle's shared ones.
    UpdateConnection {
        id: i64,
        name: String,
        settings: Map<String, Value>,
        changed: Vec<String>,
        obsolete: Vec<String>,
    },
    CreateIntegration(InIntegration),
    UpdateIntegration {
        id: i64,
        incoming: InIntegration,
    },
    Bind {
        integration: String,
        connection: String,
    },
}

async fn load_target(tx: &mut Tx<'_>, env: &Environment) -> Result<(BTreeMap<String, TargetConnection>, BTreeMap<String, TargetIntegration>)> {
    let mut connections = BTreeMap::new();
    for r in sqlx::query("SELECT id, name_key, provider, settings FROM connections WHERE environment_id = $1").bind(env.id).fetch_all(&mut **tx).await? {
        let id: i64 = r.try_get("id")?;
        let settings: String = r.try_get("settings")?;
        let Ok(Value::Object(settings)) = serde_json::from_str(&settings) else {
            return Err(Error::Internal(format!("connection {id} has unreadable settings")));
        };
        connections.insert(r.try_get("name_key")?, TargetConnection { id, provider: r.try_get("provider")?, settings, secret_fields: BTreeSet::new() });
    }
    let secrets = sqlx::query("SELECT c.name_key, s.field FROM connection_secrets s JOIN connections c ON c.id = s.connection_id WHERE c.environment_id = $1")
        .bind(env.id)
        .fetch_all(&mut **tx)
        .await?;
    for r in secrets {
        let key: String = r.try_get("name_key")?;
        if let Some(c) = connections.get_mut(&key) {
            c.secret_fields.insert(r.try_get("field")?);
        }
    }
    let mut integrations = BTreeMap::new();
    let rows = sqlx::query(
        "SELECT i.id, i.name_key, i.provider, i.objects, i.description, i.version, c.name AS connection FROM integrations i \
         LEFT JOIN connections c ON c.id = i.connection_id WHERE i.environment_id = $1",
    )
    .bind(env.id)
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        integrations.insert(
            r.try_get("name_key")?,
            TargetIntegration {
                id: r.try_get("id")?,
                provider: r.try_get("provider")?,
                objects: r.try_get("objects")?,
                description: r.try_get("description")?,
                version: r.try_get("version")?,
                connection: r.try_get("connection")?,
            },
        );
    }
    Ok((connections, integrations))
}

/// What the secrets of a connection to set up will need, in words.
fn secrets_to_fill(def: &ProviderDef, settings: &Map<String, Value>) -> Option<String> {
    if def.signing(settings).is_some() {
        return Some("issue or upload its certificate there before use".into());
    }
    let needed: Vec<&str> = def.fields.iter().filter(|f| f.secret && f.applies(settings)).map(|f| f.name).collect();
    (!needed.is_empty()).then(|| format!("set its secrets there before use ({})", needed.join(", ")))
}

/// The checklist item of a connection that is not set up in `env`, if it is not.
fn set_up_step(env: &Environment, name: &str, def: &ProviderDef, settings: &Map<String, Value>, secret_fields: &BTreeSet<String>) -> Option<Step> {
    let missing = def.setup_missing(settings, secret_fields);
    if missing.is_empty() {
        return None;
    }
    let fill: Vec<&str> = missing.iter().filter(|f| !f.secret).map(|f| f.label).collect();
    let mut todo = Vec::new();
    if !fill.is_empty() {
        todo.push(format!("fill in its {}", and_list(&fill)));
    }
    todo.extend(secrets_to_fill(def, settings));
    Some(Step {
        kind: StepKind::SetUpConnection,
        name: name.to_string(),
        text: format!("Set up {name} in {}: {}", env.name, todo.join(", then ")),
        path: format!("/env/{}/connections/{name}", env.name),
    })
}

/// What a plan decided: its lines, its integrations without a connection, its writes, and
/// what the target will still need.
struct Planned {
    changes: Vec<Change>,
    needs: Vec<String>,
    ops: Vec<Op>,
    checklist: Vec<Step>,
}

/// Compares the bundle with the target and decides every change, without writing. Only
/// shared settings are compared (the bundle has no others that count); the words are the
/// plan's, or in the past tense for an apply (`mode`), which only ever reports a plan it made.
fn plan(
    env: &Environment,
    bundle: &Bundle,
    mode: Mode,
    options: Options,
    target_connections: &BTreeMap<String, TargetConnection>,
    target_integrations: &BTreeMap<String, TargetIntegration>,
) -> Planned {
    let (mut changes, mut needs, mut ops, mut steps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let item = |kind, name: &str, action, detail: String, path: &str| Change { kind, name: name.to_string(), action, detail, path: path.to_string() };
    let done = mode == Mode::Apply;
    let tense = |planned: &'static str, past: &'static str| if done { past } else { planned };
    let (from, to) = (bundle.source_environment.as_str(), env.name.as_str());

    for c in &bundle.connections {
        let ignored = match c.ignored.len() {
            0 => String::new(),
            1 => format!("; the bundle's {} {} ignored (it belongs to {from})", c.ignored[0], tense("is", "was")),
            _ => format!("; the bundle's {} {} ignored (they belong to {from})", and_list(&c.ignored), tense("are", "were")),
        };
        let change = match target_connections.get(&c.name.to_lowercase()) {
            None if options.create_placeholders => {
                ops.push(Op::CreateConnection(c.clone()));
                let shared: Vec<&String> = c.settings.keys().collect();
                let carried = if shared.is_empty() {
                    "its name and provider only".to_string()
                } else {
                    format!("its name, provider and shared settings ({}) only", and_list(&shared))
                };
                let own: Vec<&str> = c.def.environment_settings.iter().copied().filter(|n| c.def.field(n).is_some_and(|f| f.applies(&c.settings))).collect();
                let mut todo = Vec::new();
                if !own.is_empty() {
                    todo.push(format!("{to} fills in its own {}", and_list(&own)));
                }
                todo.extend(secrets_to_fill(c.def, &c.settings));
                let todo = if todo.is_empty() { String::new() } else { format!("; {}", todo.join(" and must ")) };
                steps.extend(set_up_step(env, &c.name, c.def, &c.settings, &BTreeSet::new()));
                let detail = format!("{} created in {to}, to set up there, with {carried}{todo}{ignored}", tense("will be", "was"));
                item(Kind::Connection, &c.name, Action::Create, detail, &c.path)
            }
            // Not created without the option; the integrations that need it say so.
            None => continue,
            Some(t) if t.provider != c.def.id => {
                let detail = format!(
                    "{to}'s {} is a {} connection, the bundle's a {} one; rename or delete one of them (an import never changes a provider)",
                    c.name, t.provider, c.def.id
                );
                item(Kind::Connection, &c.name, Action::Conflict, detail, &c.path)
            }
            // Environment settings (destinations among them: promise 17) are never compared: the
            // bundle has none that count, and the target's stay as they are.
            Some(t) => {
                steps.extend(set_up_step(env, &c.name, c.def, &t.settings, &t.secret_fields));
                let theirs = c.def.shared_settings(&t.settings);
                let own: Vec<&String> = t.settings.keys().filter(|k| c.def.is_environment_setting(k)).collect();
                let kept = if own.is_empty() { String::new() } else { format!("; {to} keeps its own {}", and_list(&own)) };
                let keys: BTreeSet<&String> = theirs.keys().chain(c.settings.keys()).collect();
                let changed: Vec<String> = keys.into_iter().filter(|k| theirs.get(*k) != c.settings.get(*k)).cloned().collect();
                // The target's environment settings with the bundle's shared ones.
                let mut merged: Map<String, Value> =
                    t.settings.iter().filter(|(k, _)| c.def.is_environment_setting(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
                merged.extend(c.settings.clone());
                // What taking the bundle's shared settings would break that is not broken already
                // (every secret that applies counted as set: they are the target's business).
                let judged = |settings: &Map<String, Value>| {
                    let secrets: BTreeSet<String> = c.def.fields.iter().filter(|f| f.secret && f.applies(settings)).map(|f| f.name.to_string()).collect();
                    c.def.validate(settings, &secrets)
                };
                let broken = || -> Vec<String> {
                    let before: BTreeSet<String> = judged(&t.settings).into_iter().map(|e| e.field).collect();
                    judged(&merged).into_iter().filter(|e| !before.contains(&e.field)).map(|e| e.message).collect()
                };
                let broken = if changed.is_empty() { Vec::new() } else { broken() };
                if changed.is_empty() {
                    item(Kind::Connection, &c.name, Action::Unchanged, format!("same provider and shared settings{kept}{ignored}"), &c.path)
                } else if !broken.is_empty() {
                    let detail = format!(
                        "its shared settings in {to} differ from the bundle's ({}), and taking the bundle's would leave {to}'s own settings incomplete ({}); \
                         change it in {to} itself, or make them equal in {from}",
                        changed.join(", "),
                        broken.join("; ")
                    );
                    item(Kind::Connection, &c.name, Action::Conflict, detail, &c.path)
                } else if options.overwrite_settings {
                    let mut obsolete = c.def.obsolete_secrets(&merged, t.secret_fields.iter());
                    obsolete.extend(t.secret_fields.iter().filter(|f| c.def.cached_secrets.contains(&f.as_str())).cloned());
                    let mut detail = format!("shared settings {}: {}{kept}", tense("will change", "changed"), changed.join(", "));
                    let no_longer: Vec<&String> = obsolete.iter().filter(|f| !c.def.cached_secrets.contains(&f.as_str())).collect();
                    if !no_longer.is_empty() {
                        detail.push_str(&format!("; secrets that no longer apply {} removed: {}", tense("are", "were"), and_list(&no_longer)));
                    }
                    detail.push_str(&ignored);
                    ops.push(Op::UpdateConnection { id: t.id, name: c.name.clone(), settings: merged, changed, obsolete });
                    item(Kind::Connection, &c.name, Action::Update, detail, &c.path)
                } else {
                    let detail = format!(
                        "its shared settings in {to} differ from the bundle's ({}); to take the bundle's, import again allowing shared settings to be \
                         overwritten, or make them equal in {to}{kept}",
                        changed.join(", ")
                    );
                    item(Kind::Connection, &c.name, Action::Conflict, detail, &c.path)
                }
            }
        };
        changes.push(change);
    }

    for i in &bundle.integrations {
        let key = i.name.to_lowercase();
        let target = target_integrations.get(&key);
        let change = match target {
            None => {
                ops.push(Op::CreateIntegration(i.clone()));
                let version = i.version.as_deref().map(|v| format!(", version {v}")).unwrap_or_default();
                let detail = format!("{} published ({}, {} objects{version})", tense("will be", "was"), i.provider, i.objects.len());
                item(Kind::Integration, &i.name, Action::Create, detail, &i.path)
            }
            Some(t) => {
                let mut differs = Vec::new();
                if t.provider != i.provider {
                    differs.push("provider");
                }
                if t.objects != i.objects_json {
                    differs.push("objects");
                }
                if t.description != i.description {
                    differs.push("description");
                }
                if t.version != i.version {
                    differs.push("version");
                }
                match (&t.connection, differs.is_empty()) {
                    (_, true) => item(Kind::Integration, &i.name, Action::Unchanged, "same provider, objects, description and version".into(), &i.path),
                    (Some(bound), false) if t.provider != i.provider => {
                        let detail = format!(
                            "it is bound to {bound} (a {} connection) in {to}; unbind it there before its provider can change to {}",
                            t.provider, i.provider
                        );
                        item(Kind::Integration, &i.name, Action::Conflict, detail, &i.path)
                    }
                    (_, false) => {
                        ops.push(Op::UpdateIntegration { id: t.id, incoming: i.clone() });
                        item(Kind::Integration, &i.name, Action::Update, format!("{}: {}", tense("will change", "changed"), differs.join(", ")), &i.path)
                    }
                }
            }
        };
        changes.push(change);

        // Its binding: carried over when the target has (or gets) the connection; an existing
        // binding of the target is never replaced or removed.
        let current = target.and_then(|t| t.connection.clone());
        let label = providers::get(&i.provider).map_or(i.provider.as_str(), |d| d.label);
        let (will_need, bind_one) = (tense("will need", "needs"), format!("bind a {label} connection to it in {to}"));
        let unbound = match bundle.bindings.get(&key) {
            Some(b) => {
                let available = match target_connections.get(&b.connection.to_lowercase()) {
                    Some(t) => t.provider == i.provider,
                    None => options.create_placeholders,
                };
                match (available, current) {
                    (true, Some(c)) if c.eq_ignore_ascii_case(&b.connection) => {
                        changes.push(item(Kind::Binding, &i.name, Action::Unchanged, format!("bound to {c}"), &b.path));
                        None
                    }
                    (true, Some(c)) => {
                        let detail = format!(
                            "it is bound to {c} in {to}, the bundle binds it to {}; change the binding there by hand (or unbind it there and import again)",
                            b.connection
                        );
                        changes.push(item(Kind::Binding, &i.name, Action::Conflict, detail, &b.path));
                        None
                    }
                    (true, None) => {
                        ops.push(Op::Bind { integration: i.name.clone(), connection: b.connection.clone() });
                        changes.push(item(Kind::Binding, &i.name, Action::Create, format!("{} bound to {}", tense("will be", "was"), b.connection), &b.path));
                        None
                    }
                    (false, Some(c)) => {
                        let detail = format!("stays bound to {c} ({to} has no {label} connection named {})", b.connection);
                        changes.push(item(Kind::Binding, &i.name, Action::Unchanged, detail, &b.path));
                        None
                    }
                    (false, None) => Some(format!(
                        "{} {will_need} a connection in {to}: no {label} connection named {} there; create it in {to} (or let the import create the \
                         connections {to} lacks, to set up there), or {bind_one}",
                        i.name, b.connection
                    )),
                }
            }
            None if current.is_none() => Some(format!("{} {will_need} a connection in {to}: it is not bound in {from} either; {bind_one}", i.name)),
            None => None,
        };
        if let Some(need) = unbound {
            needs.push(need);
            steps.push(Step {
                kind: StepKind::BindIntegration,
                name: i.name.clone(),
                text: format!("Bind a {label} connection to {} in {to}", i.name),
                path: format!("/env/{to}/integrations"),
            });
        }
    }
    // Connections first, then integrations, each in the bundle's order.
    steps.sort_by_key(|s| s.kind == StepKind::BindIntegration);
    Planned { changes, needs, ops, checklist: steps }
}

/// The report's one sentence.
fn summary(from: &str, to: &str, changes: &[Change], mode: Mode) -> String {
    let count = |a: Action| changes.iter().filter(|c| c.action == a).count();
    let (create, update, unchanged, conflicts) = (count(Action::Create), count(Action::Update), count(Action::Unchanged), count(Action::Conflict));
    if mode == Mode::Apply {
        if create + update == 0 {
            return format!("Promoted {from} → {to}: nothing needed to change ({unchanged} unchanged).");
        }
        return format!("Promoted {from} → {to}: {create} created, {update} updated, {unchanged} unchanged.");
    }
    let mut text = format!(
        "Plan for {from} → {to}: {create} to create, {update} to update, {unchanged} unchanged, {conflicts} conflict{}. Nothing was written",
        if conflicts == 1 { "" } else { "s" }
    );
    text.push_str(if conflicts > 0 { "; nothing can be applied while there are conflicts." } else { "." });
    text
}

/// Plans an import of `bundle` into `env_name` and, in `Mode::Apply`, carries the plan out in
/// one transaction with its audit events. Conflicts stop an apply (409, each conflict named
/// with its path in the bundle) before anything is written; a plan shows them instead.
pub async fn import(db: &Db, actor: &Actor, env_name: &str, bundle: &Bundle, mode: Mode, options: Options) -> Result<Report> {
    let mut tx = db.begin().await?;
    let env = environments::find_in(&mut tx, env_name).await?;
    let (target_connections, target_integrations) = load_target(&mut tx, &env).await?;
    let Planned { changes, needs, ops, checklist } = plan(&env, bundle, mode, options, &target_connections, &target_integrations);
    let ignored_settings: Vec<IgnoredSettings> = bundle
        .connections
        .iter()
        .filter(|c| !c.ignored.is_empty())
        .map(|c| IgnoredSettings { connection: c.name.clone(), settings: c.ignored.clone() })
        .collect();
    let report = |changes: Vec<Change>| Report {
        mode,
        summary: summary(&bundle.source_environment, &env.name, &changes, mode),
        changes,
        needs_connection: needs.clone(),
        applied: mode == Mode::Apply,
        checklist: checklist.clone(),
        ignored_settings: ignored_settings.clone(),
    };
    if mode == Mode::Plan {
        return Ok(report(changes));
    }
    let conflicts: Vec<FieldError> =
        changes.iter().filter(|c| c.action == Action::Conflict).map(|c| FieldError::new(c.path.clone(), format!("{}: {}", c.name, c.detail))).collect();
    if !conflicts.is_empty() {
        let named: Vec<String> = changes.iter().filter(|c| c.action == Action::Conflict).map(|c| format!("{} {}", c.kind.as_str(), c.name)).collect();
        return Err(Error::Conflicts {
            code: "import_conflict",
            message: format!(
                "the bundle conflicts with {} in {} place{}: {}. Nothing was imported; see details for what to change (plan with mode=plan to review)",
                env.name,
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                named.join(", ")
            ),
            details: conflicts,
        });
    }
    if ops.is_empty() {
        // Nothing to do: nothing is written, not even an audit event.
        return Ok(report(changes));
    }
    apply(&mut tx, actor, &env, bundle, &ops).await.map_err(|e| {
        if e.is_unique_violation() {
            // Someone created the same name in the target while this import ran.
            Error::Conflict {
                code: "import_conflict",
                message: format!(
                    "a connection or integration of this bundle was created in {} while the import ran; nothing was imported. Plan again",
                    env.name
                ),
            }
        } else {
            e
        }
    })?;
    let count = |a: Action| changes.iter().filter(|c| c.action == a).count();
    let ignored: Map<String, Value> = ignored_settings.iter().map(|i| (i.connection.clone(), json!(i.settings))).collect();
    let detail = json!({
        "source_environment": bundle.source_environment,
        "digest": bundle.digest,
        "created": count(Action::Create),
        "updated": count(Action::Update),
        "unchanged": count(Action::Unchanged),
        "overwrite_settings": options.overwrite_settings,
        "create_placeholders": options.create_placeholders,
        "ignored_settings": ignored,
    });
    audit::record(&mut tx, actor, Event::new("promotion.import").environment(env.id, &env.name).detail(detail)).await?;
    tx.commit().await?;
    Ok(report(changes))
}

/// The ids of an environment's connections or integrations, by name key.
async fn ids_by_name(tx: &mut Tx<'_>, table: &str, env: &Environment) -> Result<BTreeMap<String, i64>> {
    let sql = match table {
        "connections" => "SELECT id, name_key FROM connections WHERE environment_id = $1",
        _ => "SELECT id, name_key FROM integrations WHERE environment_id = $1",
    };
    let mut ids = BTreeMap::new();
    for r in sqlx::query(sql).bind(env.id).fetch_all(&mut **tx).await? {
        ids.insert(r.try_get::<String, _>("name_key")?, r.try_get::<i64, _>("id")?);
    }
    Ok(ids)
}

const CONNECTION_COLUMNS: [&str; 9] = ["environment_id", "name", "name_key", "provider", "settings", "created_by", "updated_by", "created_at", "updated_at"];
const INTEGRATION_COLUMNS: [&str; 11] =
    ["environment_id", "name", "name_key", "provider", "objects", "description", "version", "created_by", "updated_by", "created_at", "updated_at"];

/// Makes the plan's changes inside `tx`: new connections and integrations a few hundred to a
/// statement, then updates, then bindings, then one audit event per change.
async fn apply(tx: &mut Tx<'_>, actor: &Actor, env: &Environment, bundle: &Bundle, ops: &[Op]) -> Result<()> {
    let t = now();
    let from = bundle.source_environment.as_str();
    let new_connections: Vec<&InConnection> = ops.iter().filter_map(|op| if let Op::CreateConnection(c) = op { Some(c) } else { None }).collect();
    for chunk in new_connections.chunks(crate::db::INSERT_BATCH) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(crate::db::multi_row_insert("connections", &CONNECTION_COLUMNS, chunk.len())));
        for c in chunk {
            q = q
                .bind(env.id)
                .bind(c.name.clone())
                .bind(c.name.to_lowercase())
                .bind(c.def.id)
                .bind(Value::Object(c.settings.clone()).to_string())
                .bind(actor.label.clone())
                .bind(actor.label.clone())
                .bind(t.clone())
                .bind(t.clone());
        }
        q.execute(&mut **tx).await?;
    }
    let new_integrations: Vec<&InIntegration> = ops.iter().filter_map(|op| if let Op::CreateIntegration(i) = op { Some(i) } else { None }).collect();
    for chunk in new_integrations.chunks(crate::db::INSERT_BATCH) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(crate::db::multi_row_insert("integrations", &INTEGRATION_COLUMNS, chunk.len())));
        for i in chunk {
            q = q
                .bind(env.id)
                .bind(i.name.clone())
                .bind(i.name.to_lowercase())
                .bind(i.provider.clone())
                .bind(i.objects_json.clone())
                .bind(i.description.clone())
                .bind(i.version.clone())
                .bind(actor.label.clone())
                .bind(actor.label.clone())
                .bind(t.clone())
                .bind(t.clone());
        }
        q.execute(&mut **tx).await?;
    }
    let needs_ids = ops.iter().any(|op| matches!(op, Op::Bind { .. }));
    let (connection_ids, integration_ids) =
        if needs_ids { (ids_by_name(tx, "connections", env).await?, ids_by_name(tx, "integrations", env).await?) } else { Default::default() };
    let id_in = |ids: &BTreeMap<String, i64>, table: &str, name: &str| {
        ids.get(&name.to_lowercase()).copied().ok_or_else(|| Error::Internal(format!("import: {name} vanished from {table} in {} during the import", env.name)))
    };
    let mut events = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::CreateConnection(c) => {
                let settings: Vec<&String> = c.settings.keys().collect();
                let detail = json!({"provider": c.def.id, "settings": settings, "secrets_set": [], "placeholder": true, "imported_from": from});
                events.push(Event::new("connection.create").environment(env.id, &env.name).object("connection", &c.name).detail(detail));
            }
            Op::UpdateConnection { id, name, settings, changed, obsolete } => {
                sqlx::query("UPDATE connections SET settings = $1, updated_by = $2, updated_at = $3 WHERE id = $4")
                    .bind(Value::Object(settings.clone()).to_string())
                    .bind(&actor.label)
                    .bind(&t)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                for field in obsolete {
                    crate::connections::remove_secret(tx, *id, field).await?;
                }
                // The latest check was of other settings: it no longer says anything.
                sqlx::query("DELETE FROM connection_health WHERE connection_id = $1").bind(id).execute(&mut **tx).await?;
                let detail = json!({"changed_settings": changed, "replaced_secrets": [], "removed_secrets": obsolete, "imported_from": from});
                events.push(Event::new("connection.update").environment(env.id, &env.name).object("connection", name).detail(detail));
            }
            Op::CreateIntegration(i) => {
                let detail = json!({"provider": i.provider, "objects": i.objects, "version": i.version, "imported_from": from});
                events.push(Event::new("integration.publish").environment(env.id, &env.name).object("integration", &i.name).detail(detail));
            }
            Op::UpdateIntegration { id, incoming: i } => {
                sqlx::query(
                    "UPDATE integrations SET provider = $1, objects = $2, description = $3, version = $4, updated_by = $5, updated_at = $6 WHERE id = $7",
                )
                .bind(&i.provider)
                .bind(&i.objects_json)
                .bind(&i.description)
                .bind(&i.version)
                .bind(&actor.label)
                .bind(&t)
                .bind(id)
                .execute(&mut **tx)
                .await?;
                let detail = json!({"provider": i.provider, "objects": i.objects, "version": i.version, "imported_from": from});
                events.push(Event::new("integration.update").environment(env.id, &env.name).object("integration", &i.name).detail(detail));
            }
            Op::Bind { integration, connection } => {
                let cid = id_in(&connection_ids, "connections", connection)?;
                let iid = id_in(&integration_ids, "integrations", integration)?;
                // Only an unbound integration is bound: the plan never replaces a binding.
                let done = sqlx::query(
                    "UPDATE integrations SET connection_id = $1, bound_by = $2, bound_at = $3, updated_by = $2, updated_at = $3 WHERE id = $4 AND connection_id IS NULL",
                )
                .bind(cid)
                .bind(&actor.label)
                .bind(&t)
                .bind(iid)
                .execute(&mut **tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(Error::Conflict {
                        code: "import_conflict",
                        message: format!("{integration} was bound in {} while the import ran; nothing was imported. Plan again", env.name),
                    });
                }
                let event = Event::new("binding.set").environment(env.id, &env.name).object("integration", integration);
                events.push(event.detail(json!({"connection": connection, "imported_from": from})));
            }
        }
    }
    audit::record_all(tx, actor, &events).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_bundle_is_a_valid_bundle() {
        let bundle = parse(sample_bundle("DEV", 30, 7).to_string().as_bytes()).unwrap();
        assert_eq!((bundle.integrations.len(), bundle.connections.len(), bundle.bindings.len()), (30, 7, 15));
        assert!(parse(sample_bundle("DEV", 3, 0).to_string().as_bytes()).unwrap().bindings.is_empty());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level_and_drops_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b": [ {"z": 1, "a": null} ], "a": "x" }"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":"x","b":[{"a":null,"z":1}]}"#);
    }

    #[test]
    fn the_digest_covers_everything_but_itself() {
        let mut v = json!({"format": FORMAT, "integrations": [], "digest": "ignored"});
        let d = digest_of(&v);
        assert_eq!(d.len(), 64);
        v["digest"] = json!("something else");
        assert_eq!(digest_of(&v), d, "the digest field is not part of what it covers");
        v["integrations"] = json!([{"name": "X"}]);
        assert_ne!(digest_of(&v), d);
    }

    fn sealed(mut v: Value) -> Vec<u8> {
        v["digest"] = json!(digest_of(&v));
        v.to_string().into_bytes()
    }

    fn fields(e: Error) -> Vec<String> {
        e.details().into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn every_problem_is_named_with_its_path() {
        let bundle = json!({
            "format": FORMAT, "format_version": 1, "source_environment": "DEV", "exported_at": "2026-01-01T00:00:00Z", "exported_by": "x",
            "integrations": [
                {"name": "A", "provider": "http"},
                {"name": "B", "provider": "nope"},
                {"name": "a", "provider": "http", "objects": [{"name": "X", "access": "admin"}]},
            ],
            "connections": [
                {"name": "C", "provider": "http", "settings": {"base_url": "https://x.example.com", "auth": "bearer"}},
                {"name": "D", "provider": "http", "settings": {}, "secrets": {"token": "t"}},
            ],
            "bindings": [{"integration": "A", "connection": "C"}, {"integration": "Z", "connection": "Q"}, {"integration": "A", "connection": "C"}],
        });
        let e = parse(&sealed(bundle)).unwrap_err();
        assert_eq!(
            fields(e),
            [
                "integrations[1].provider",
                "integrations[2].name",
                "integrations[2].objects[0].access",
                "connections[1].secrets",
                "connections[1].settings.auth",
                "bindings[1].integration",
                "bindings[1].connection",
                "bindings[2].integration",
            ]
        );
    }

    #[test]
    fn descriptors_are_valid_without_their_secrets() {
        let bundle = json!({
            "format": FORMAT, "format_version": 1, "source_environment": "DEV", "exported_at": "t", "exported_by": "x",
            "integrations": [{"name": "A", "provider": "http"}],
            "connections": [{"name": "C", "provider": "http", "settings": {"base_url": "https://x.example.com", "auth": "basic", "username": "u"}}],
            "bindings": [{"integration": "A", "connection": "C"}],
        });
        let b = parse(&sealed(bundle.clone())).unwrap();
        assert_eq!((b.integrations.len(), b.connections.len(), b.bindings.len()), (1, 1, 1));
        let mut tampered = bundle;
        tampered["digest"] = json!("0".repeat(64));
        assert_eq!(fields(parse(tampered.to_string().as_bytes()).unwrap_err()), ["digest"]);
        assert!(matches!(parse(b"not json"), Err(Error::BadRequest(_))));
    }
}
