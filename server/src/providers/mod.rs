//! The provider registry: which fields a connection of each provider has, which of them are
//! secret, how to validate them, and, for providers whose credential is minted, how to mint
//! it and whom to ask for help. Adding a provider means adding one module here and one line to
//! [`REGISTRY`]; shared code asks the provider and never names one (a test checks that).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{FieldError, Result};
use crate::outbound::Outbound;
use crate::secret::SecretString;

pub use crate::outcome::TestResult;

pub mod dataverse;
pub mod dynamics365;
pub mod http;
pub mod microsoft;
pub mod oauth2;
pub mod salesforce;
pub mod sap_odata;
pub mod sharepoint;
pub mod workato;

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Url,
    Email,
    Choice,
    Integer,
    /// A JSON object of text values (extra parameters), at most [`MAX_OBJECT_ENTRIES`].
    Object,
}

/// The most entries an `Object` setting may have.
pub const MAX_OBJECT_ENTRIES: usize = 20;

/// One field of a provider's connection form.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FieldSpec {
    pub name: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub kind: FieldKind,
    /// For `Choice`: the allowed values.
    pub choices: &'static [&'static str],
    pub secret: bool,
    /// `Some((setting, values))`: the field is required (and only allowed) when `setting` has one
    /// of `values`. `None`: always applicable.
    pub when: Option<(&'static str, &'static [&'static str])>,
    /// Whether the field must be present when it applies.
    pub required: bool,
}

impl FieldSpec {
    /// A value typed as text (a form field, a command-line `--setting`) in the field's JSON
    /// form: a whole number for an `Integer`, the object for an `Object` (JSON text); what does
    /// not read as that stays text, for the checks to refuse with their reason.
    pub fn value_from_text(&self, text: &str) -> Value {
        match self.kind {
            FieldKind::Integer => text.trim().parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(text)),
            FieldKind::Object => serde_json::from_str::<Value>(text).ok().filter(Value::is_object).unwrap_or_else(|| Value::from(text)),
            _ => Value::from(text),
        }
    }

    pub fn applies(&self, settings: &Map<String, Value>) -> bool {
        match self.when {
            None => true,
            Some((setting, values)) => settings.get(setting).and_then(Value::as_str).is_some_and(|v| values.contains(&v)),
        }
    }
}

/// How a connection authenticates: the small closed set of modes every provider is data over
/// (as Nango's provider catalog sits on its auth modes). Shared code decides by the mode, never
/// by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// A stored secret sent as it is: a bearer token, basic credentials, a header, an API key.
    Static,
    /// OAuth 2.0 client credentials, the client authenticated by a secret (in the body or as
    /// HTTP Basic).
    ClientSecret,
    /// OAuth 2.0 client credentials, the client authenticated by a private-key JWT assertion
    /// signed with the connection's certificate (RFC 7523 section 2.2).
    ClientAssertion,
    /// The JWT bearer grant (RFC 7523 section 2.1): an assertion signed with the connection's
    /// certificate is the grant (Salesforce).
    JwtBearer,
    /// OAuth 2.0 authorization code with PKCE (RFC 6749 4.1, RFC 7636): a person signs in at
    /// the provider, connvault keeps the refresh token and refreshes the access token.
    AuthorizationCode,
}

impl AuthMode {
    /// Whether connvault signs with a certificate and key it keeps for the connection.
    pub fn signs(self) -> bool {
        matches!(self, AuthMode::ClientAssertion | AuthMode::JwtBearer)
    }

    /// Whether the run-time credential comes from a token endpoint (else it is the stored secret).
    pub fn minted(self) -> bool {
        self != AuthMode::Static
    }

    /// Whether the connection authenticates with a secret someone typed (which may expire).
    pub fn uses_typed_secret(self) -> bool {
        matches!(self, AuthMode::Static | AuthMode::ClientSecret)
    }

    /// Whether a person signs in to connect (`ProviderDef::authorization`).
    pub fn signs_in(self) -> bool {
        self == AuthMode::AuthorizationCode
    }
}

/// What a provider is: its id, its fields, and its own checks beyond the field specs.
#[derive(Debug)]
pub struct ProviderDef {
    pub id: &'static str,
    pub label: &'static str,
    pub fields: &'static [FieldSpec],
    /// The auth modes its connections may use, and which one a connection's settings choose
    /// (one of them). A provider mints (`minting`) exactly when it offers a minted mode, and
    /// has a static `credential` exactly when it offers `Static`.
    pub auth_modes: &'static [AuthMode],
    pub auth_mode: fn(&Map<String, Value>) -> AuthMode,
    /// Extra checks on settings that are already well-typed (e.g. URL shape rules).
    pub check: fn(&Map<String, Value>) -> Vec<FieldError>,
    /// The live check behind "test connection", if the provider has one. It gets the stored
    /// settings, the opened secrets that apply to them, and the outbound client (the only way
    /// to call out). The caller scrubs secret values from the result and audits it.
    pub test: Option<TestFn>,
    /// Secret fields that connvault itself keeps for the connection (e.g. Salesforce's private
    /// key and its cached session). People never send them in `secrets`; they are not form
    /// fields, survive every settings change, and are sealed like any other secret.
    pub managed_secrets: &'static [&'static str],
    /// Managed secrets that are only a cache of what the settings produce (a session token):
    /// dropped whenever a setting changes, so nothing minted for the old settings is reused.
    pub cached_secrets: &'static [&'static str],
    /// The settings that say where the connection's credential goes (a base URL, a login URL,
    /// an audience, a token URL, an authority, a service root). A change of any of them drops
    /// the stored secrets (managed ones too) unless the same change supplies new ones, and an
    /// import never makes it (promise 17): whoever re-points a connection must bring the
    /// secret for the new place. The first is what the connections list shows as the target.
    pub destination_settings: &'static [&'static str],
    /// The settings that belong to one environment: where the credential goes (every
    /// destination setting) and whose it is (a user name, a consumer key, a tenant and client
    /// ID, an admin's email, a client, a Workato environment). Promotion never carries,
    /// compares or overwrites them: an export leaves them out, an import ignores them in an
    /// older bundle, and a placeholder it creates has only the other, shared settings (a
    /// session lifetime, the choice of auth mode), for the target's people to set up there.
    pub environment_settings: &'static [&'static str],
    /// The JSON Schema of a new connection of this provider, for the OpenAPI document: its
    /// `required` list and the `settings` and `secrets` properties, with every rule of the field
    /// specs and of `check` that a schema can state (`name`, `provider` and the object's
    /// strictness are added by `NewConnection`'s schema).
    pub schema: fn() -> Value,
    /// For providers whose run-time credential is minted (a token endpoint, signed with a key
    /// connvault keeps or with a typed secret): how. The token broker, the live check and the
    /// certificate lifecycle (`crate::signing`) run on it.
    pub minting: Option<&'static Minting>,
    /// For providers whose run-time credential is a stored secret (a static credential: bearer,
    /// basic, header, API key): the credential these settings and secrets make. The broker
    /// hands it out; the live check sends it.
    pub credential: Option<CredentialFn>,
    /// For providers whose admin is asked by email with a certificate and a one-time link.
    pub admin_help: Option<&'static AdminHelp>,
    /// For providers whose callers need more than the credential, fetched with it per
    /// connection (SAP's CSRF token and the cookies it belongs to, for writes): added to the
    /// broker's token answer.
    pub session: Option<&'static SessionExtras>,
    /// For providers whose typed secrets the system's admin may enter instead, through a
    /// one-time link (`crate::credential_requests`): whom to ask and the steps to give them.
    pub credential_help: Option<&'static CredentialHelp>,
    /// What the connection page may show about the other side, read with the stored
    /// credential (Workato: the workspace's collaborators and their roles per environment).
    pub details: Option<DetailsFn>,
    /// For providers whose connections a person authorizes by signing in
    /// (`AuthMode::AuthorizationCode`, run by `crate::connect`).
    pub authorization: Option<&'static Authorization>,
    /// The setting that holds the date (YYYY-MM-DD) the typed secret expires, for providers
    /// whose secret's expiry is known (an Entra client secret): while the connection's auth mode
    /// uses a typed secret, connvault warns before that date (`crate::expiry`).
    pub secret_expiry: Option<&'static str>,
    /// How the connection form offers some of the fields (named URLs, advanced fields folded
    /// away); the rules stay the field specs'.
    pub form: FormHints,
}

/// How the connection form shows some of a provider's fields. Only the form reads it: the
/// settings and their rules are the field specs', whatever the form offers.
#[derive(Debug, Clone, Copy)]
pub struct FormHints {
    /// URL settings offered as a choice of named values before "another URL" (Salesforce's
    /// login URL: Production, Sandbox, My Domain…).
    pub presets: &'static [Presets],
    /// Settings that fold away under "Advanced settings" (open when one of them has a value).
    pub advanced: &'static [&'static str],
}

impl FormHints {
    /// Every field shown as it is.
    pub const NONE: FormHints = FormHints { presets: &[], advanced: &[] };
}

/// The named values of one URL setting.
#[derive(Debug, Clone, Copy)]
pub struct Presets {
    pub field: &'static str,
    /// `(label, URL)`, the first one the default of a new connection.
    pub values: &'static [(&'static str, &'static str)],
    /// The choice that asks for the URL itself, e.g. "My Domain or another URL…".
    pub other: &'static str,
}

/// Connecting by signing in: where the person is sent, how the code that comes back is
/// redeemed, what a refusal means, and how the refresh token is revoked. The refresh itself is
/// the provider's `Minting::exchange`, which finds the refresh token among the secrets under
/// `refresh_field`.
#[derive(Debug)]
pub struct Authorization {
    /// What the button says: "Connect with Salesforce".
    pub button: &'static str,
    /// The managed secret that holds the refresh token.
    pub refresh_field: &'static str,
    /// The authorize request these settings make.
    pub request: fn(&Map<String, Value>) -> AuthorizeRequest,
    /// `redeem(outbound, settings, typed secrets, code, verifier, redirect_uri)`: the code
    /// exchange; the `Minted` carries the refresh token.
    pub redeem: RedeemFn,
    /// A refusal the provider sent back to the callback (`error`, `error_description`), in
    /// words with what to do; `callback_url` is the exact URL the app must have registered.
    pub explain: fn(settings: &Map<String, Value>, error: &str, description: &str, callback_url: &str) -> TestResult,
    /// Revokes a refresh token at the provider (RFC 7009), for providers with an endpoint for
    /// it (these settings may have none: `None`).
    pub revoke: RevokeFn,
    /// How long a refresh token may go unused before it should be refreshed anyway, for
    /// providers whose refresh tokens expire when idle (a setting).
    pub keep_alive: fn(&Map<String, Value>) -> Option<chrono::Duration>,
}

/// Where a sign-in goes: the provider's authorize URL, the client, the scopes and any extra
/// parameters.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub authorize_url: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub extra: Vec<(String, String)>,
}

pub type RedeemFn = for<'a> fn(&'a Outbound, &'a Map<String, Value>, &'a Secrets, &'a str, &'a SecretString, &'a str) -> MintFuture<'a>;
pub type RevokeFuture<'a> = Pin<Box<dyn Future<Output = Option<std::result::Result<(), String>>> + Send + 'a>>;
/// `revoke(outbound, settings, typed secrets, refresh token)`: `None` when these settings have
/// no revocation endpoint.
pub type RevokeFn = for<'a> fn(&'a Outbound, &'a Map<String, Value>, &'a Secrets, &'a SecretString) -> RevokeFuture<'a>;

/// A table the connection page shows (`ProviderDef::details`), in the provider's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Details {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Where it came from, or what is left out.
    #[schema(required = true)]
    pub note: Option<String>,
}

pub type DetailsFuture<'a> = Pin<Box<dyn Future<Output = std::result::Result<Details, TestResult>> + Send + 'a>>;
/// `details(outbound, settings, typed secrets)`: the table, or why it cannot be read.
pub type DetailsFn = for<'a> fn(&'a Outbound, &'a Map<String, Value>, &'a Secrets) -> DetailsFuture<'a>;

/// Asking a system's admin for the secrets people would otherwise type: an email with the
/// steps this provider declares and a one-time link where the admin enters every secret field
/// that applies to the connection's settings (and may set the few settings they own).
#[derive(Debug)]
pub struct CredentialHelp {
    /// Who is asked, e.g. "Workato workspace admin".
    pub admin: &'static str,
    /// Settings the admin may set or correct with the secrets (a user name, a client ID):
    /// never one that decides where the credential goes.
    pub owned_settings: &'static [&'static str],
    /// The steps for this connection, in order: what to create, with which role or privilege,
    /// for which environment.
    pub steps: fn(&Map<String, Value>) -> Vec<String>,
}

/// Per-connection session extras a provider fetches with its credential. The broker caches
/// them per connection (for `valid_for`, while the connection and its credential stay the
/// same) and fetches them again when a caller forces a refresh.
#[derive(Debug)]
pub struct SessionExtras {
    /// The answer fields it may add, as `(name, description)`, for the OpenAPI document.
    pub fields: &'static [(&'static str, &'static str)],
    pub fetch: SessionFn,
    /// How the session goes on a request the proxy forwards: `(settings, fields, write)` →
    /// headers and query parameters to add (SAP: `X-CSRF-Token` and the cookies it belongs to
    /// on writes, `sap-client` on every call).
    pub on_request: fn(&Map<String, Value>, &[(&'static str, SecretString)], bool) -> OnRequest,
    /// Whether an answer says the session is no longer good although the credential may be
    /// (SAP: 403 with `X-CSRF-Token: Required`): the proxy fetches it again and retries once,
    /// as it does after a 401.
    pub expired: fn(::http::StatusCode, &::http::HeaderMap) -> bool,
}

/// What a provider's session adds to a proxied request; query parameters replace the caller's
/// of the same name.
#[derive(Debug, Default)]
pub struct OnRequest {
    pub headers: Vec<(&'static str, SecretString)>,
    pub query: Vec<(&'static str, String)>,
}

/// What a session fetch gave: the answer fields (a subset of `SessionExtras::fields`; none
/// when the service needs none) and how long they may be handed out.
#[derive(Debug, Clone)]
pub struct Session {
    pub fields: Vec<(&'static str, SecretString)>,
    pub valid_for: chrono::Duration,
}

pub type SessionFuture<'a> = Pin<Box<dyn Future<Output = std::result::Result<Session, Refusal>> + Send + 'a>>;
/// `fetch(outbound, settings, credential)`: the credential the broker is about to hand out.
pub type SessionFn = for<'a> fn(&'a Outbound, &'a Map<String, Value>, &'a crate::credential::Credential) -> SessionFuture<'a>;

/// How a provider mints its run-time credential.
#[derive(Debug)]
pub struct Minting {
    /// What must be filled in before a token can be asked for, as `(detail, advice)`: a
    /// Salesforce consumer key, an Entra tenant and client ID.
    pub not_ready: fn(&Map<String, Value>) -> Option<(String, String)>,
    /// One token request.
    pub exchange: ExchangeFn,
    /// After a token: the call that says whom it acts as (userinfo, the site, WhoAmI).
    pub verify: VerifyFn,
    /// How long a token lives when the answer does not say (Salesforce: the session lifetime).
    pub default_lifetime: fn(&Map<String, Value>) -> chrono::Duration,
    /// The managed secret holding the signing key in use, the one of a rotation that has not
    /// worked yet, and the token cache.
    pub key_field: &'static str,
    pub pending_key_field: &'static str,
    pub token_field: &'static str,
}

/// The key a signing provider signs with: the parsed private key and its certificate.
pub struct Key<'a> {
    pub signer: &'a crate::assertion::AssertionSigner,
    pub certificate_der: &'a [u8],
}

/// A token the provider gave.
#[derive(Debug)]
pub struct Minted {
    pub access_token: SecretString,
    pub token_type: String,
    /// Where the credential is used (Salesforce's instance, the SharePoint site, the Dataverse
    /// environment).
    pub instance_url: String,
    /// From the answer's `expires_in`, when it has one.
    pub expires_in: Option<chrono::Duration>,
    pub scope: Option<String>,
    /// Who the token acts as, when the token answer says (Salesforce's org and user ids).
    pub org_id: Option<String>,
    pub user_id: Option<String>,
    /// A refresh token (a code exchange, or a refresh that rotates it): kept sealed.
    pub refresh_token: Option<SecretString>,
}

/// Whom a token acts as, from the provider's verifying call.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub org_id: Option<String>,
    pub user_id: Option<String>,
    pub username: Option<String>,
    /// "connected to org … as …", for the test result.
    pub summary: String,
}

/// Why there is no token: what to show, and whether asking again later, unchanged, may work
/// (then the broker backs off instead of calling it a configuration problem).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub result: TestResult,
    pub transient: bool,
}

/// `credential(settings, secrets)`: the static credential, or why it cannot be used.
pub type CredentialFn = fn(&Map<String, Value>, &Secrets) -> std::result::Result<crate::credential::Credential, crate::credential::Unusable>;

pub type MintFuture<'a> = Pin<Box<dyn Future<Output = std::result::Result<Minted, Refusal>> + Send + 'a>>;
/// `exchange(outbound, settings, typed secrets, key)`: the key is `Some` exactly when the
/// settings' auth mode signs.
pub type ExchangeFn = for<'a> fn(&'a Outbound, &'a Map<String, Value>, &'a Secrets, Option<Key<'a>>) -> MintFuture<'a>;
pub type VerifyFuture<'a> = Pin<Box<dyn Future<Output = std::result::Result<Identity, Refusal>> + Send + 'a>>;
pub type VerifyFn = for<'a> fn(&'a Outbound, &'a Map<String, Value>, &'a Minted) -> VerifyFuture<'a>;

/// A provider whose admin connvault asks by email: the certificate to register, the steps, and
/// a one-time link through which the admin sends back what they created.
#[derive(Debug)]
pub struct AdminHelp {
    /// Who is asked, e.g. "Salesforce admin".
    pub admin: &'static str,
    /// The settings the admin's answer fills in (each a field of the provider), in order.
    pub answer_fields: &'static [&'static str],
    /// The status once an answer is in but not tested yet, e.g. `consumer_key_received`.
    pub answered_state: &'static str,
    /// The request email.
    pub email: fn(&RequestFacts<'_>) -> crate::mail::Email,
    /// What the admin's page shows about the connection, as `(label, value)`.
    pub link_facts: fn(&Map<String, Value>) -> Vec<(&'static str, String)>,
}

/// What goes into one request to an admin.
pub struct RequestFacts<'a> {
    /// Who asks (shown as "NAME requests your help …").
    pub requester: &'a str,
    pub to: &'a str,
    pub connection: &'a str,
    pub environment: &'a str,
    pub settings: &'a Map<String, Value>,
    /// `PUBLIC_URL/oauth/callback`.
    pub callback_url: &'a str,
    pub link: &'a str,
    pub expires_at: &'a str,
    pub certificate_pem: &'a str,
    pub certificate_file: &'a str,
    /// Upper-case hex, as the Entra portal shows it.
    pub thumbprint_sha1: &'a str,
}

/// Opened secret fields of one connection, by field name.
pub type Secrets = BTreeMap<String, SecretString>;
pub type TestFuture<'a> = Pin<Box<dyn Future<Output = TestResult> + Send + 'a>>;
pub type TestFn = for<'a> fn(&'a Outbound, &'a Map<String, Value>, &'a Secrets) -> TestFuture<'a>;

pub static REGISTRY: &[&ProviderDef] =
    &[&http::HTTP, &salesforce::SALESFORCE, &sharepoint::SHAREPOINT, &dataverse::DATAVERSE, &dynamics365::DYNAMICS365, &sap_odata::SAP_ODATA, &workato::WORKATO, &oauth2::OAUTH2];

pub fn get(id: &str) -> Option<&'static ProviderDef> {
    REGISTRY.iter().copied().find(|p| p.id == id)
}

pub fn ids() -> Vec<&'static str> {
    REGISTRY.iter().map(|p| p.id).collect()
}

/// The schema of a provider id: one of the registry's.
pub fn id_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::json_schema(json!({"type": "string", "enum": ids()}))
}

pub const MAX_SETTING_LEN: usize = 2048;
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// The schema of a secret's value as people send it (see `connections::check_secret_values`).
pub fn secret_value_schema() -> Value {
    json!({"type": "string", "writeOnly": true, "pattern": crate::schema::not_blank(), "description": "Not blank; at most 64 KiB (UTF-8)"})
}

impl ProviderDef {
    /// Settings in their stored form: whole numbers sent as `5.0` become `5` (before
    /// [`ProviderDef::validate`], whose checks read integers).
    pub fn normalize(&self, settings: &mut Map<String, Value>) {
        for (key, value) in settings.iter_mut() {
            if self.field(key).is_some_and(|f| matches!(f.kind, FieldKind::Integer)) {
                if let Some(n) = as_whole_number(value).filter(|_| !value.is_i64()) {
                    *value = Value::from(n);
                }
            }
        }
    }

    pub fn field(&self, name: &str) -> Option<&'static FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Validates a complete connection: `settings` as they will be stored, `secret_fields` the
    /// names of secret fields that will be set (already stored or supplied now).
    pub fn validate(&self, settings: &Map<String, Value>, secret_fields: &BTreeSet<String>) -> Vec<FieldError> {
        self.validate_as(settings, Some(secret_fields))
    }

    /// Validates the shared settings of a connection as a promotion bundle carries them
    /// (without its environment settings and secrets, which the target fills in): every rule
    /// of [`ProviderDef::validate`] except that environment settings and secrets may be missing.
    pub fn validate_shared(&self, settings: &Map<String, Value>) -> Vec<FieldError> {
        self.validate_as(settings, None)
    }

    /// `secret_fields` `None`: only the shared settings are judged (see `validate_shared`).
    fn validate_as(&self, settings: &Map<String, Value>, secret_fields: Option<&BTreeSet<String>>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let names = || self.fields.iter().filter(|f| !f.secret).map(|f| f.name).collect::<Vec<_>>().join(", ");
        for (key, value) in settings {
            let Some(spec) = self.field(key) else {
                errors.push(FieldError::new(
                    format!("settings.{key}"),
                    format!("{} connections have no setting {key:?}; known settings: {}", self.label, names()),
                ));
                continue;
            };
            if spec.secret {
                errors.push(FieldError::new(format!("settings.{key}"), format!("{key} is a secret: send it in secrets, not in settings")));
                continue;
            }
            if !spec.applies(settings) {
                let (s, vals) = spec.when.expect("conditional field");
                errors.push(FieldError::new(format!("settings.{key}"), format!("{key} only applies when {s} is {}; remove it", vals.join(" or "))));
                continue;
            }
            if let Some(message) = check_value(spec, value) {
                errors.push(FieldError::new(format!("settings.{key}"), message));
            }
        }
        for spec in self.fields.iter().filter(|f| f.required && f.applies(settings)) {
            if spec.secret {
                if secret_fields.is_some_and(|set| !set.contains(spec.name)) {
                    errors.push(FieldError::new(format!("secrets.{}", spec.name), format!("{} is required{}", spec.label, when_text(spec))));
                }
            } else if !settings.contains_key(spec.name) && (secret_fields.is_some() || !self.is_environment_setting(spec.name)) {
                errors.push(FieldError::new(format!("settings.{}", spec.name), format!("{} is required{}", spec.label, when_text(spec))));
            }
        }
        for name in secret_fields.into_iter().flatten().filter(|n| !self.is_managed(n)) {
            match self.field(name) {
                Some(spec) if spec.secret && spec.applies(settings) => {}
                Some(spec) if spec.secret => {
                    let (s, vals) = spec.when.expect("conditional field");
                    errors.push(FieldError::new(format!("secrets.{name}"), format!("{name} only applies when {s} is {}; remove it", vals.join(" or "))));
                }
                Some(_) => errors.push(FieldError::new(format!("secrets.{name}"), format!("{name} is not secret: send it in settings"))),
                None => {
                    let known: Vec<_> = self.fields.iter().filter(|f| f.secret).map(|f| f.name).collect();
                    errors.push(FieldError::new(
                        format!("secrets.{name}"),
                        format!("{} connections have no secret {name:?}; known secrets: {}", self.label, known.join(", ")),
                    ));
                }
            }
        }
        // The provider's own checks too, at once, for the fields that have no mistake yet (they
        // read what they can and leave the rest to the checks above).
        let more: Vec<FieldError> = (self.check)(settings).into_iter().filter(|e| !errors.iter().any(|x| x.field == e.field)).collect();
        errors.extend(more);
        errors
    }

    /// Secret fields that no longer apply to `settings` (e.g. `token` after switching to basic
    /// auth): an update removes them.
    pub fn obsolete_secrets<'a>(&self, settings: &Map<String, Value>, stored: impl Iterator<Item = &'a String>) -> Vec<String> {
        stored.filter(|name| !self.is_managed(name) && !self.field(name).is_some_and(|s| s.secret && s.applies(settings))).cloned().collect()
    }

    /// The destination settings whose value differs between `old` and `new` (URLs compared as
    /// parsed, so `HTTPS://Host/` and `https://host` are the same place; a setting that appears
    /// or disappears is a change).
    pub fn destination_changes(&self, old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<&'static str> {
        self.destination_settings.iter().copied().filter(|name| destination_key(old.get(*name)) != destination_key(new.get(*name))).collect()
    }

    pub fn is_managed(&self, name: &str) -> bool {
        self.managed_secrets.contains(&name)
    }

    /// Whether a setting belongs to one environment (`environment_settings`).
    pub fn is_environment_setting(&self, name: &str) -> bool {
        self.environment_settings.contains(&name)
    }

    /// The settings that are not environment settings: what promotion carries and compares.
    pub fn shared_settings(&self, settings: &Map<String, Value>) -> Map<String, Value> {
        settings.iter().filter(|(k, _)| !self.is_environment_setting(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// What a connection still lacks before it is set up in its environment; empty once it
    /// is. It lacks the required settings that apply and are missing; a connection with every
    /// required setting but nothing of its environment (no environment setting, no secret: a
    /// placeholder of a provider whose settings all have defaults) lacks its typed secrets, or
    /// else its environment settings. A placeholder that promotion creates is never set up.
    pub fn setup_missing(&self, settings: &Map<String, Value>, secret_fields: &BTreeSet<String>) -> Vec<&'static FieldSpec> {
        let missing: Vec<&'static FieldSpec> =
            self.fields.iter().filter(|f| !f.secret && f.required && f.applies(settings) && !settings.contains_key(f.name)).collect();
        if !missing.is_empty() {
            return missing;
        }
        let own = settings.keys().any(|k| self.is_environment_setting(k)) || secret_fields.iter().any(|f| !self.cached_secrets.contains(&f.as_str()));
        if own || self.environment_settings.is_empty() {
            return Vec::new();
        }
        let secrets = self.typed_secrets(settings);
        if secrets.is_empty() {
            self.environment_settings.iter().filter_map(|n| self.field(n)).filter(|f| f.applies(settings)).collect()
        } else {
            secrets
        }
    }

    /// Refuses managed secrets in what people send: they are set by connvault only.
    pub fn refuse_managed<T>(&self, supplied: &BTreeMap<String, T>) -> Vec<FieldError> {
        supplied
            .keys()
            .filter(|name| self.is_managed(name))
            .map(|name| FieldError::new(format!("secrets.{name}"), format!("{name} is kept by connvault itself and cannot be sent; {}", self.managed_hint())))
            .collect()
    }

    fn managed_hint(&self) -> &'static str {
        if self.minting.is_some_and(|m| self.is_managed(m.key_field)) {
            "issue or upload the certificate and key through /certificate"
        } else {
            "it is set by connvault"
        }
    }

    /// The minting of these settings, if their auth mode is a minted one (a provider may offer
    /// a static mode beside a minted one: SAP OData's basic or API key beside client credentials).
    pub fn minting_for(&self, settings: &Map<String, Value>) -> Option<&'static Minting> {
        self.minting.filter(|_| (self.auth_mode)(settings).minted())
    }

    /// The secret fields a person types for these settings (those that apply; never the ones
    /// connvault keeps itself).
    pub fn typed_secrets(&self, settings: &Map<String, Value>) -> Vec<&'static FieldSpec> {
        self.fields.iter().filter(|f| f.secret && !self.is_managed(f.name) && f.applies(settings)).collect()
    }

    /// The minting of a provider whose settings sign with a key connvault keeps.
    pub fn signing(&self, settings: &Map<String, Value>) -> Option<&'static Minting> {
        self.minting_for(settings).filter(|_| (self.auth_mode)(settings).signs())
    }
}

/// A destination setting's value in comparable form: a URL as parsed (scheme and host in lower
/// case, default port dropped) without a trailing `/`; anything else as its JSON text.
fn destination_key(value: Option<&Value>) -> Option<String> {
    let value = value?;
    let Some(text) = value.as_str() else { return Some(value.to_string()) };
    match url::Url::parse(text.trim()) {
        Ok(url) => Some(url.as_str().trim_end_matches('/').to_string()),
        Err(_) => Some(text.trim().to_string()),
    }
}

impl ProviderDef {
    /// The JSON Schema of a new connection of this provider (see `NewConnection`'s schema): the
    /// provider's own settings schemas (`schema`), every secret field's value, and what the field
    /// specs say: which fields are required, and which apply only when a setting has some value
    /// (an `if`/`then` rule per value of that setting).
    pub fn connection_schema(&self) -> Value {
        let settings_props = (self.schema)();
        let secret_fields: Vec<&FieldSpec> = self.fields.iter().filter(|f| f.secret).collect();
        let always =
            |secret: bool| -> Vec<&str> { self.fields.iter().filter(|f| f.secret == secret && f.required && f.when.is_none()).map(|f| f.name).collect() };
        let mut settings = json!({"type": "object", "additionalProperties": false, "properties": settings_props});
        if !always(false).is_empty() {
            settings["required"] = json!(always(false));
        }
        let secrets = if secret_fields.is_empty() {
            // Nothing people may send: the provider's secrets are kept by connvault itself.
            json!({"type": "object", "maxProperties": 0, "writeOnly": true})
        } else {
            let props: Map<String, Value> = secret_fields.iter().map(|f| (f.name.to_string(), secret_value_schema())).collect();
            let mut secrets = json!({"type": "object", "additionalProperties": false, "properties": props});
            if !always(true).is_empty() {
                secrets["required"] = json!(always(true));
            }
            secrets
        };
        let mut required = vec!["name", "provider", "settings"];
        if self.fields.iter().any(|f| f.secret && f.required) {
            required.push("secrets");
        }
        let mut schema = json!({"required": required, "properties": {"settings": settings, "secrets": secrets}});
        let rules = self.conditional_rules();
        if !rules.is_empty() {
            schema["allOf"] = Value::Array(rules);
        }
        schema
    }

    /// For each setting that other fields depend on (`when`), one rule per value it can take:
    /// then the fields that apply are required (when `required`) and the others refused.
    fn conditional_rules(&self) -> Vec<Value> {
        let mut rules = Vec::new();
        let mut settings: Vec<&str> = self.fields.iter().filter_map(|f| f.when.map(|(s, _)| s)).collect();
        settings.dedup();
        for setting in settings {
            let Some(spec) = self.field(setting) else { continue };
            for value in spec.choices {
                let dependent = self.fields.iter().filter(|f| f.when.is_some_and(|(s, _)| s == setting));
                let (applies, refused): (Vec<&FieldSpec>, Vec<&FieldSpec>) = dependent.partition(|f| f.when.is_some_and(|(_, vals)| vals.contains(value)));
                let part = |secret: bool| {
                    let mut rule = Map::new();
                    let required: Vec<&str> = applies.iter().filter(|f| f.secret == secret && f.required).map(|f| f.name).collect();
                    if !required.is_empty() {
                        rule.insert("required".into(), json!(required));
                    }
                    let refused: Vec<Value> = refused.iter().filter(|f| f.secret == secret).map(|f| json!({"required": [f.name]})).collect();
                    if !refused.is_empty() {
                        rule.insert("not".into(), json!({"anyOf": refused}));
                    }
                    Value::Object(rule)
                };
                let mut then = json!({"properties": {"settings": part(false), "secrets": part(true)}});
                if applies.iter().any(|f| f.secret && f.required) {
                    then["required"] = json!(["secrets"]);
                }
                rules.push(json!({
                    "if": {"properties": {"settings": {"properties": {setting: {"const": value}}, "required": [setting]}}, "required": ["settings"]},
                    "then": then
                }));
            }
            if !spec.required {
                // Left out, the setting has none of the values: every field that depends on it
                // is refused (`FieldSpec::applies`).
                let dependent: Vec<&FieldSpec> = self.fields.iter().filter(|f| f.when.is_some_and(|(s, _)| s == setting)).collect();
                let refused = |secret: bool| -> Value {
                    let names: Vec<Value> = dependent.iter().filter(|f| f.secret == secret).map(|f| json!({"required": [f.name]})).collect();
                    if names.is_empty() {
                        json!({})
                    } else {
                        json!({"not": {"anyOf": names}})
                    }
                };
                rules.push(json!({
                    "if": {"properties": {"settings": {"not": {"required": [setting]}}}, "required": ["settings"]},
                    "then": {"properties": {"settings": refused(false), "secrets": refused(true)}}
                }));
            }
        }
        rules
    }
}

/// Patterns for the OpenAPI document, spelling out what the checks here accept.
pub mod patterns {
    pub use crate::schema::{CONTROL, WS};

    /// A port number, 0 to 65535, without leading zeros.
    pub const PORT: &str = "(?:0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
    /// A host name as the URL checks accept it: dot-separated labels, the last one starting
    /// with a letter.
    pub const HOST: &str = "(?:[A-Za-z0-9]{1,63}\\.)*[A-Za-z][A-Za-z0-9]{0,62}";

    /// [`super::looks_like_email`]: the whole address (the lengths are separate patterns).
    pub const EMAIL: &str = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+";

    /// An email address as [`super::looks_like_email`] accepts it, `padding` (a character
    /// class, or empty) allowed around it.
    pub fn email(padding: &str) -> serde_json::Value {
        let pad = if padding.is_empty() { String::new() } else { format!("[{padding}]*") };
        serde_json::json!({
            "type": "string",
            "pattern": format!("^{pad}{EMAIL}{pad}$"),
            "allOf": [{"pattern": format!("^{pad}[^@]{{1,64}}@")}, {"pattern": format!("@[^@{padding}]{{1,254}}{pad}$")}]
        })
    }

    /// A word in any mix of upper and lower case (`[Hh][Oo][Ss][Tt]`).
    pub fn any_case(word: &str) -> String {
        word.chars().map(|c| if c.is_ascii_alphabetic() { format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()) } else { c.to_string() }).collect()
    }
}

/// A JSON number without a fraction, as an integer: JSON does not tell 5 from 5.0.
fn as_whole_number(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
}

fn when_text(spec: &FieldSpec) -> String {
    match spec.when {
        Some((s, vals)) => format!(" when {s} is {}", vals.join(" or ")),
        None => String::new(),
    }
}

fn check_value(spec: &FieldSpec, value: &Value) -> Option<String> {
    match spec.kind {
        FieldKind::Object => {
            let Some(map) = value.as_object() else { return Some(format!("{} must be a JSON object of text values, e.g. {{\"prompt\": \"consent\"}}", spec.label)) };
            if map.len() > MAX_OBJECT_ENTRIES {
                return Some(format!("{} has {} entries; at most {MAX_OBJECT_ENTRIES}", spec.label, map.len()));
            }
            for (k, v) in map {
                let ok_key = (1..=100).contains(&k.chars().count()) && !k.chars().any(|c| c.is_control() || c.is_whitespace());
                if !ok_key {
                    return Some(format!("{}: {k:?} is not a parameter name (1 to 100 characters, no spaces)", spec.label));
                }
                match v.as_str() {
                    Some(t) if t.chars().count() <= MAX_SETTING_LEN && !t.chars().any(char::is_control) => {}
                    _ => return Some(format!("{}: the value of {k} must be text without control characters, at most {MAX_SETTING_LEN} characters", spec.label)),
                }
            }
            None
        }
        FieldKind::Integer => match as_whole_number(value) {
            Some(_) => None,
            None => Some(format!("{} must be a whole number", spec.label)),
        },
        _ => {
            let Some(text) = value.as_str() else { return Some(format!("{} must be text", spec.label)) };
            if text.trim().is_empty() {
                return Some(format!("{} must not be empty", spec.label));
            }
            if text.chars().count() > MAX_SETTING_LEN {
                return Some(format!("{} is longer than {MAX_SETTING_LEN} characters", spec.label));
            }
            if text.chars().any(char::is_control) {
                return Some(format!("{} must not contain control characters", spec.label));
            }
            match spec.kind {
                FieldKind::Choice if !spec.choices.contains(&text) => Some(format!("{} must be one of: {}", spec.label, spec.choices.join(", "))),
                FieldKind::Url => check_url(text).err(),
                FieldKind::Email if !looks_like_email(text) => Some(format!("{} must be an email address such as admin@example.com", spec.label)),
                _ => None,
            }
        }
    }
}

/// An absolute http(s) URL without embedded credentials.
pub fn check_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a valid URL ({e}); expected e.g. https://api.example.com"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("must start with https:// (or http://), not {}://", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host, e.g. https://api.example.com".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password: put credentials in the secret fields".into());
    }
    Ok(url)
}

/// An email address connvault can send to, as the OpenAPI document spells it: `local@domain`,
/// ASCII only; the local part dot-separated words of letters, digits and !#$%&'*+/=?^_`{|}~-
/// (at most 64 characters), the domain two or more labels of letters, digits and inner hyphens
/// (each at most 63 characters, all at most 254). Checked before saving, so that an address
/// that was accepted is never refused when the email goes out.
pub fn looks_like_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else { return false };
    let atom = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b));
    let label = |l: &str| (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-') && !l.ends_with('-');
    local.len() <= 64
        && local.split('.').all(atom)
        && domain.len() <= 254
        && domain.contains('.')
        && domain.split('.').all(label)
        // The mail library is the last word: an address saved here must be one it can send to.
        && text.parse::<lettre::Address>().is_ok()
}

/// Items in words: "a", "a and b", "a, b and c".
pub fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [rest @ .., last] => format!("{} and {}", rest.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", "), last.as_ref()),
    }
}

/// What a connection that is not set up lacks (`ProviderDef::setup_missing`), in words, and
/// what to do: "fill in its Login URL and Integration username".
pub fn setup_advice(missing: &[&FieldSpec]) -> String {
    let labels: Vec<&str> = missing.iter().map(|f| f.label).collect();
    format!("{} {}", if missing.iter().all(|f| f.secret) { "set its" } else { "fill in its" }, and_list(&labels))
}

/// The secret fields supplied in a request, as a set of names (values stay where they are).
pub fn names<T>(secrets: &BTreeMap<String, T>) -> BTreeSet<String> {
    secrets.keys().cloned().collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Providers are data over the auth modes: a provider mints exactly when it offers a
    /// minted mode, has a static credential exactly when it offers `Static`, asks an admin only
    /// for a mode that signs, and every choice of its settings picks a mode it offers.
    #[test]
    fn providers_are_data_over_the_auth_modes() {
        use super::{AuthMode, REGISTRY};
        use serde_json::{json, Map, Value};
        for p in REGISTRY {
            assert!(!p.auth_modes.is_empty(), "{}: no auth mode", p.id);
            assert_eq!(p.minting.is_some(), p.auth_modes.iter().any(|m| m.minted()), "{}: minting and the minted modes", p.id);
            assert_eq!(p.credential.is_some(), p.auth_modes.contains(&AuthMode::Static), "{}: a static credential and Static", p.id);
            assert_eq!(p.test.is_some() || p.minting.is_some(), true, "{}: a live check", p.id);
            assert_eq!(p.authorization.is_some(), p.auth_modes.iter().any(|m| m.signs_in()), "{}: sign-in and AuthorizationCode", p.id);
            if let Some(a) = p.authorization {
                assert!(p.is_managed(a.refresh_field) && !p.cached_secrets.contains(&a.refresh_field), "{}: the refresh token is kept, not a cache", p.id);
            }
            if let Some(help) = p.credential_help {
                assert!(p.fields.iter().any(|f| f.secret && !p.is_managed(f.name)), "{}: a credential request needs a secret to ask for", p.id);
                for name in help.owned_settings {
                    let f = p.field(name).unwrap_or_else(|| panic!("{}: owned setting {name} is not a field", p.id));
                    assert!(!f.secret && !p.destination_settings.contains(name), "{}: the admin may not set {name}", p.id);
                }
            }
            if let Some(help) = p.admin_help {
                assert!(p.auth_modes.iter().any(|m| m.signs()), "{}: an admin request needs a certificate to send", p.id);
                for name in help.answer_fields {
                    assert!(p.is_environment_setting(name), "{}: what the admin answers ({name}) belongs to their environment", p.id);
                }
            }
            // Environment settings: every one a setting of the provider; every destination among
            // them (promotion never carries where a credential goes: promise 17), and every
            // setting a credential request lets the target's admin set.
            for name in p.environment_settings {
                let f = p.field(name).unwrap_or_else(|| panic!("{}: environment setting {name} is not a field", p.id));
                assert!(!f.secret, "{}: environment setting {name} is a secret (secrets never travel anyway)", p.id);
            }
            for name in p.destination_settings {
                assert!(p.is_environment_setting(name), "{}: destination setting {name} must be an environment setting", p.id);
            }
            if let Some(name) = p.secret_expiry {
                let f = p.field(name).unwrap_or_else(|| panic!("{}: the secret's expiry {name} is not a field", p.id));
                assert!(!f.secret && p.is_environment_setting(name), "{}: a secret's expiry belongs to its environment, in the clear", p.id);
                assert!(p.auth_modes.iter().any(|m| m.uses_typed_secret()), "{}: an expiring secret needs a mode that uses one", p.id);
            }
            for name in p.credential_help.map_or(&[][..], |h| h.owned_settings) {
                assert!(p.is_environment_setting(name), "{}: the admin's own setting {name} must be an environment setting", p.id);
            }
            // Every value of every choice field (and none), alone: the mode must be one offered,
            // and `signing` must agree with it.
            let mut cases = vec![Map::new()];
            for f in p.fields.iter().filter(|f| matches!(f.kind, super::FieldKind::Choice)) {
                cases.extend(f.choices.iter().map(|c| Map::from_iter([(f.name.to_string(), json!(c))])));
            }
            let mut seen = std::collections::BTreeSet::new();
            for settings in &cases {
                let mode = (p.auth_mode)(settings);
                assert!(p.auth_modes.contains(&mode), "{}: {settings:?} chose {mode:?}, not offered", p.id);
                assert_eq!(p.signing(settings).is_some(), mode.signs(), "{}: {settings:?}", p.id);
                seen.insert(format!("{mode:?}"));
            }
            assert_eq!(seen.len(), p.auth_modes.len(), "{}: every offered mode is reachable from the settings ({seen:?})", p.id);
            let _: Value = serde_json::to_value(p.auth_modes).unwrap();
        }
        let modes = |id: &str| super::get(id).unwrap().auth_modes.to_vec();
        assert_eq!(modes("http"), [AuthMode::Static]);
        assert!(REGISTRY.iter().any(|p| p.auth_modes.contains(&AuthMode::JwtBearer)));
        assert!(REGISTRY.iter().any(|p| p.auth_modes == [AuthMode::ClientAssertion, AuthMode::ClientSecret]));
    }

    /// Shared code asks the provider (`ProviderDef`) and never names one: a provider's id as a
    /// string may appear only in its own module (`providers/ID.rs` or `providers/ID/`). `http`
    /// is left out: it is also a URL scheme.
    #[test]
    fn shared_code_never_names_a_provider() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        for dir in ["server/src", "app/src"] {
            rust_files(&root.join(dir), &mut files);
        }
        assert!(files.len() > 40, "found the sources: {}", files.len());
        let mut found = Vec::new();
        for id in super::ids().into_iter().filter(|id| *id != "http") {
            let own = [root.join(format!("server/src/providers/{id}.rs")), root.join(format!("server/src/providers/{id}"))];
            for file in files.iter().filter(|f| !own.iter().any(|o| f.starts_with(o))) {
                let text = std::fs::read_to_string(file).unwrap();
                for (n, line) in text.lines().enumerate() {
                    if line.contains(&format!("\"{id}\"")) {
                        found.push(format!("{}:{}: {}", file.strip_prefix(root).unwrap().display(), n + 1, line.trim()));
                    }
                }
            }
        }
        assert!(found.is_empty(), "provider ids in shared code (ask the ProviderDef instead):\n{}", found.join("\n"));
    }
}
