//! The `dynamics365` provider: Dynamics 365 Customer Engagement, which runs on Dataverse: the
//! same environment URL, app registration, application user and Web API (`super::dataverse`),
//! in Dynamics 365's words. A provider of its own so that integrations and release tooling can
//! say which they mean.

use super::dataverse;
use super::microsoft::{self, DYNAMICS365 as R};
use super::{AdminHelp, Minting, ProviderDef};

pub static DYNAMICS365: ProviderDef = ProviderDef {
    id: "dynamics365",
    label: "Microsoft Dynamics 365",
    auth_modes: microsoft::SECRET_OR_CERTIFICATE,
    auth_mode: microsoft::auth_mode,
    fields: dataverse::FIELDS,
    check: microsoft::check_for::<R>,
    test: None,
    managed_secrets: microsoft::MANAGED,
    cached_secrets: &[microsoft::ACCESS_TOKEN],
    destination_settings: dataverse::DESTINATIONS,
    environment_settings: dataverse::ENVIRONMENT_SETTINGS,
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

static MINTING: Minting = microsoft::minting::<R>();
static ADMIN_HELP: AdminHelp = microsoft::admin_help::<R>();
