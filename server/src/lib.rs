//! connvault's server side. Everything that runs only on the server lives here: configuration,
//! storage, the sealing of secrets, providers, audit and the REST API. It knows nothing about
//! the UI; the `app` crate calls into it.

pub mod access;
pub mod api;
pub mod api_keys;
pub mod assertion;
pub mod audit;
pub mod backup;
pub mod broker;
pub mod certs;
pub mod config;
pub mod connections;
pub mod credential;
pub mod db;
pub mod entra;
pub mod environments;
pub mod error;
pub mod feed;
pub mod integrations;
pub mod keyring;
pub mod logging;
pub mod mail;
pub mod oauth;
pub mod outbound;
pub mod promotion;
pub mod providers;
pub mod ratelimit;
pub mod rotate;
pub mod seal;
pub mod secret;
pub mod serve;
pub mod services;
pub mod sessions;
pub mod signing;
pub mod startup;
pub mod tokens;
pub mod users;

pub use error::{Error, Result};
pub use services::Services;
