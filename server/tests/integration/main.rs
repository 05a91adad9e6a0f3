//! connvault's integration tests, one binary (as crates.io keeps its own): every module links the
//! server crate once, instead of one binary per file each linking it again. Every test that
//! touches storage runs on SQLite and, when `CONNVAULT_TEST_POSTGRES_URL` names a server (as
//! `make test` arranges), on PostgreSQL too: see `common::backends`.
//!
//! Run one module or test by name: `cargo test -p server --test integration -- salesforce::`.

mod common;

mod access;
mod api;
mod audit_trail;
mod backup;
mod bundle_props;
mod contract;
mod credential_requests;
mod entra;
mod feeds;
mod flow;
mod integrations;
mod jobs;
mod key_rotation;
mod limits;
mod mail;
mod microsoft;
mod model;
mod outbound;
mod people;
mod promotion;
mod proxy;
mod salesforce;
mod sap_odata;
mod security;
mod sign_in;
mod standin;
mod vault_promises;
mod workato;
