//! The `sharepoint` provider: SharePoint Online REST on one site, app-only through an Entra ID
//! app registration with a certificate connvault issues (SharePoint refuses app-only tokens
//! obtained with a client secret). The shared Microsoft parts are in `super::microsoft`.

use super::microsoft::{self, ADMIN_EMAIL, AUTHORITY_URL, CLIENT_ID, SHAREPOINT as R, TENANT};
use super::{AdminHelp, AuthMode, FieldKind, FieldSpec, Minting, ProviderDef};

pub static SHAREPOINT: ProviderDef = ProviderDef {
    id: "sharepoint",
    label: "SharePoint Online",
    auth_modes: &[AuthMode::ClientAssertion],
    auth_mode: |_| AuthMode::ClientAssertion,
    fields: &[
        FieldSpec {
            name: "site_url",
            label: "Site URL",
            help: "The site's address, e.g. https://contoso.sharepoint.com/sites/Sales",
            kind: FieldKind::Url,
            choices: &[],
            secret: false,
            when: None,
            required: true,
        },
        TENANT,
        CLIENT_ID,
        ADMIN_EMAIL,
        AUTHORITY_URL,
    ],
    check: microsoft::check_for::<R>,
    test: None,
    managed_secrets: microsoft::MANAGED,
    cached_secrets: &[microsoft::ACCESS_TOKEN],
    destination_settings: &["site_url", "authority_url"],
    // Every setting: the site, its tenant, the app registered there and its admin.
    environment_settings: &["site_url", "tenant", "client_id", "admin_email", "authority_url"],
    schema: microsoft::schema_for::<R>,
    minting: Some(&MINTING),
    credential: None,
    admin_help: Some(&ADMIN_HELP),
    credential_help: None,
    details: None,
    authorization: None,
    session: None,
    secret_expiry: None,
    form: microsoft::FORM,
};

/// Always a certificate.
static MINTING: Minting = microsoft::minting::<R>();
static ADMIN_HELP: AdminHelp = microsoft::admin_help::<R>();
