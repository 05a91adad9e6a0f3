//! The handles a running server shares: configuration, database, vault, outbound client,
//! mailer, broker and limiters. Built once by `startup::open`; request handlers get them from
//! the router's state and pass domain functions the handles those need.

use std::sync::Arc;

use crate::broker::Broker;
use crate::config::Config;
use crate::db::Db;
use crate::mail::Mailer;
use crate::outbound::Outbound;
use crate::ratelimit::Limiter;
use crate::seal::Vault;

/// Everything a request handler needs.
#[derive(Clone, Debug)]
pub struct Services {
    pub config: Arc<Config>,
    pub db: Db,
    pub vault: Vault,
    /// Failed sign-ins and API-key authentications per client address.
    pub limiter: Limiter,
    /// Failed sign-ins per account, from any address.
    pub account_limiter: Limiter,
    /// The only way to make outbound calls on a user's behalf (see `outbound`).
    pub outbound: Outbound,
    /// The token broker's cache, single-flight locks, back-off and usage counts.
    pub broker: Broker,
    /// When each API key's use was last written (see `api_keys::touch`).
    pub key_use: crate::api_keys::KeyUse,
    /// Email: through CONNVAULT_SMTP_URL's server, or into the outbox without one.
    pub mailer: Mailer,
}

impl Services {
    /// The handles of the certificate lifecycle, the live checks and the token broker.
    pub fn signing(&self) -> crate::signing::Handles<'_> {
        crate::signing::Handles { db: &self.db, vault: &self.vault, outbound: &self.outbound, mailer: &self.mailer, config: &self.config }
    }

    /// The handles of sign-in, first-run setup and invitations.
    pub fn sessions(&self) -> crate::sessions::Handles<'_> {
        crate::sessions::Handles { db: &self.db, limiter: &self.limiter, account_limiter: &self.account_limiter, config: &self.config }
    }

    /// The handles of backups and restores.
    pub fn backup(&self) -> crate::backup::Handles<'_> {
        crate::backup::Handles { db: &self.db, vault: &self.vault, config: &self.config }
    }

    /// The handles that check a presented API key.
    pub fn keys(&self) -> crate::api_keys::Handles<'_> {
        crate::api_keys::Handles { db: &self.db, limiter: &self.limiter, key_use: &self.key_use }
    }
}
