//! The `dataverse` provider: the Dataverse Web API of one environment, through an Entra ID app
//! registration and its application user in that environment; signed with a certificate
//! connvault issues (the default) or a client secret. Dynamics 365 runs on Dataverse and
//! shares these fields (`super::dynamics365`).

use serde_json::{Map, Value};

use super::microsoft::{self, Resource, ADMIN_EMAIL, AUTHORITY_URL, CLIENT_ID, TENANT};
use super::{AdminHelp, FieldKind, FieldSpec, Key, MintFuture, Minted, Minting, ProviderDef, Secrets, VerifyFuture};
use crate::error::FieldError;
use crate::outbound::Outbound;

const RESOURCE: Resource = Resource::Dataverse;

/// The fields of a Dataverse environment connection (Dynamics 365 uses the same).
pub const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "environment_url",
        label: "Environment URL",
        help: "From the Power Platform admin center (Environments → the environment → Environment URL), e.g. https://contoso.crm4.dynamics.com",
        kind: FieldKind::Url,
        choices: &[],
        secret: false,
        when: None,
        required: true,
    },
    TENANT,
    CLIENT_ID,
    FieldSpec {
        name: "auth",
        label: "Authentication",
        help: "certificate: connvault issues one and asks the admin to register it (recommended); secret: paste a client secret",
        kind: FieldKind::Choice,
        choices: microsoft::AUTH,
        secret: false,
        when: None,
        required: false,
    },
    FieldSpec {
        name: "client_secret",
        label: "Client secret",
        help: "The secret's Value (shown once when it is created under Certificates & secrets), not its Secret ID",
        kind: FieldKind::Text,
        choices: &[],
        secret: true,
        when: Some(("auth", &["secret"])),
        required: true,
    },
    FieldSpec {
        name: "client_secret_expires_on",
        label: "Client secret expires on",
        help: "YYYY-MM-DD, from the Expires column; connvault warns before it runs out",
        kind: FieldKind::Text,
        choices: &[],
        secret: false,
        when: Some(("auth", &["secret"])),
        required: false,
    },
    ADMIN_EMAIL,
    AUTHORITY_URL,
];

pub static DATAVERSE: ProviderDef = ProviderDef {
    id: "dataverse",
    label: "Microsoft Dataverse",
    fields: FIELDS,
    check,
    test: None,
    managed_secrets: microsoft::MANAGED,
    cached_secrets: &[microsoft::ACCESS_TOKEN],
    destination_settings: DESTINATIONS,
    retire_on_destination_change: Some(microsoft::retire),
    schema: || microsoft::schema(RESOURCE),
    minting: Some(&MINTING),
    credential: None,
    admin_help: Some(&ADMIN_HELP),
};

pub const DESTINATIONS: &[&str] = &["environment_url", "authority_url"];

static MINTING: Minting = Minting {
    signs: microsoft::signs,
    not_ready: microsoft::not_ready,
    exchange,
    verify,
    default_lifetime: microsoft::lifetime,
    key_field: microsoft::PRIVATE_KEY,
    pending_key_field: microsoft::PENDING_PRIVATE_KEY,
    token_field: microsoft::ACCESS_TOKEN,
};

static ADMIN_HELP: AdminHelp = AdminHelp {
    admin: "Microsoft Entra admin",
    answer_fields: microsoft::ANSWER_FIELDS,
    answered_state: "app_ids_received",
    email: |f| microsoft::email(f, RESOURCE),
    link_facts: |settings| microsoft::link_facts(settings, RESOURCE),
};

fn check(settings: &Map<String, Value>) -> Vec<FieldError> {
    microsoft::check(settings, RESOURCE)
}

fn exchange<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets, key: Option<Key<'a>>) -> MintFuture<'a> {
    Box::pin(microsoft::exchange(out, settings, secrets, key, RESOURCE))
}

fn verify<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, minted: &'a Minted) -> VerifyFuture<'a> {
    Box::pin(microsoft::verify(out, settings, minted, RESOURCE))
}
