//! The `sharepoint` provider: SharePoint Online REST on one site, app-only through an Entra ID
//! app registration with a certificate connvault issues (SharePoint refuses app-only tokens
//! obtained with a client secret). The shared Microsoft parts are in `super::microsoft`.

use serde_json::{Map, Value};

use super::microsoft::{self, Resource, ADMIN_EMAIL, AUTHORITY_URL, CLIENT_ID, TENANT};
use super::{AdminHelp, FieldKind, FieldSpec, Key, MintFuture, Minted, Minting, ProviderDef, Secrets, VerifyFuture};
use crate::error::FieldError;
use crate::outbound::Outbound;

const RESOURCE: Resource = Resource::SharePoint;

pub static SHAREPOINT: ProviderDef = ProviderDef {
    id: "sharepoint",
    label: "SharePoint Online",
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
    check,
    test: None,
    managed_secrets: microsoft::MANAGED,
    cached_secrets: &[microsoft::ACCESS_TOKEN],
    destination_settings: &["site_url", "authority_url"],
    retire_on_destination_change: Some(microsoft::retire),
    schema: || microsoft::schema(RESOURCE),
    minting: Some(&MINTING),
    credential: None,
    admin_help: Some(&ADMIN_HELP),
};

static MINTING: Minting = Minting {
    signs: |_| true,
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
