//! The `dataverse` provider: the Dataverse Web API of one environment, through an Entra ID app
//! registration and its application user in that environment; signed with a certificate
//! connvault issues (the default) or a client secret. Dynamics 365 runs on Dataverse and
//! shares these fields (`super::dynamics365`).

use super::microsoft::{self, ADMIN_EMAIL, AUTHORITY_URL, CLIENT_ID, DATAVERSE as R, TENANT};
use super::{AdminHelp, FieldKind, FieldSpec, Minting, ProviderDef};

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
        // Not needed to save the connection: the Entra admin may enter it (Request credentials).
        required: false,
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
    auth_modes: microsoft::SECRET_OR_CERTIFICATE,
    auth_mode: microsoft::auth_mode,
    fields: FIELDS,
    check: microsoft::check_for::<R>,
    test: None,
    managed_secrets: microsoft::MANAGED,
    cached_secrets: &[microsoft::ACCESS_TOKEN],
    destination_settings: DESTINATIONS,
    environment_settings: ENVIRONMENT_SETTINGS,
    schema: microsoft::schema_for::<R>,
    minting: Some(&MINTING),
    credential: None,
    admin_help: Some(&ADMIN_HELP),
    credential_help: Some(&microsoft::SECRET_HELP),
    details: None,
    authorization: None,
    session: None,
    secret_expiry: Some("client_secret_expires_on"),
    form: microsoft::FORM,
};

pub const DESTINATIONS: &[&str] = &["environment_url", "authority_url"];
/// The environment, its tenant, the app registered there, its admin and its secret's expiry;
/// the choice of certificate or secret is shared.
pub const ENVIRONMENT_SETTINGS: &[&str] = &["environment_url", "tenant", "client_id", "admin_email", "authority_url", "client_secret_expires_on"];

/// A certificate, or a client secret with `auth` = `secret`.
static MINTING: Minting = microsoft::minting::<R>();
static ADMIN_HELP: AdminHelp = microsoft::admin_help::<R>();
