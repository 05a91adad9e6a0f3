//! The `dynamics365` provider: Dynamics 365 Customer Engagement, which runs on Dataverse: the
//! same environment URL, app registration, application user and Web API (`super::dataverse`).
//! A provider of its own so that integrations and release tooling can say which they mean.

use serde_json::{Map, Value};

use super::dataverse;
use super::microsoft::{self, Resource};
use super::{AdminHelp, Key, MintFuture, Minted, Minting, ProviderDef, Secrets, VerifyFuture};
use crate::error::FieldError;
use crate::outbound::Outbound;

const RESOURCE: Resource = Resource::Dynamics365;

pub static DYNAMICS365: ProviderDef = ProviderDef {
    id: "dynamics365",
    label: "Microsoft Dynamics 365",
    fields: dataverse::FIELDS,
    check,
    test: None,
    managed_secrets: microsoft::MANAGED,
    cached_secrets: &[microsoft::ACCESS_TOKEN],
    destination_settings: dataverse::DESTINATIONS,
    retire_on_destination_change: Some(microsoft::retire),
    schema: || microsoft::schema(RESOURCE),
    minting: Some(&MINTING),
    credential: None,
    admin_help: Some(&ADMIN_HELP),
};

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
