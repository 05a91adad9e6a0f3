//! The outbox, for owners: emails kept because no mail server is configured, to read and pass
//! on. The whole message is downloaded from the REST API (`/api/v1/outbox/{id}`, same session).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::ssr::*;
use super::Fallible;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub at: String,
    pub to: String,
    pub subject: String,
    pub size: i64,
    pub attachments: Vec<String>,
    /// `outbox`, `queued`, `sent` or `failed`.
    pub delivery: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxPage {
    pub items: Vec<OutboxEntry>,
    /// Pass as `cursor` to see older messages.
    pub older: Option<String>,
    /// Where new emails go: `outbox`, or the mail server (never its credentials).
    pub delivery: String,
}

/// One message with its plain-text part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub entry: OutboxEntry,
    pub text: String,
}

#[cfg(feature = "ssr")]
fn entry(m: server::mail::OutboxItem) -> OutboxEntry {
    OutboxEntry {
        id: m.id,
        at: m.created_at,
        to: m.to,
        subject: m.subject,
        size: m.size,
        attachments: m.attachments,
        delivery: m.delivery,
        attempts: m.attempts,
        last_error: m.last_error,
    }
}

/// The signed-in owner's services (the outbox's messages carry one-time links).
#[cfg(feature = "ssr")]
async fn require_outbox_reader() -> Result<server::Services, super::AppError> {
    let (s, user) = require_user().await?;
    if !user.is_owner {
        return Err(fail(server::Error::Forbidden("the outbox is for owners: its emails carry one-time links".into())));
    }
    Ok(s)
}

/// The outbox, newest first, 50 at a time (owners only).
#[server(prefix = "/rpc", endpoint = "list_outbox")]
pub async fn list_outbox(#[server(default)] cursor: String) -> Fallible<OutboxPage> {
    let s = require_outbox_reader().await?;
    let feed = server::feed::Feed::Default { cursor: Some(cursor).filter(|c| !c.is_empty()) };
    let page = server::mail::list(&s.db, &feed, Some(50)).await.map_err(fail)?;
    Ok(OutboxPage { items: page.items.into_iter().map(entry).collect(), older: page.next_cursor, delivery: s.mailer.describe() })
}

/// One outbox message's text (owners only).
#[server(prefix = "/rpc", endpoint = "read_outbox")]
pub async fn read_outbox(id: i64) -> Fallible<OutboxMessage> {
    let s = require_outbox_reader().await?;
    let (item, text) = server::mail::text(&s.db, &s.vault, id).await.map_err(fail)?;
    Ok(OutboxMessage { entry: entry(item), text })
}
