//! `/api/v1/outbox`: the emails kept because no mail server is configured. For signed-in owners
//! only: the messages carry one-time links meant for one person, which no API key needs.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::principal::Principal;
use super::v1::{Path, Query};
use crate::error::{Error, Result};
use crate::feed::{FeedParams, Page};
use crate::mail::{self, OutboxItem};
use crate::startup::Services;

pub fn router() -> Router<Services> {
    Router::new().route("/outbox", get(list)).route("/outbox/{id}", get(download))
}

fn require_owner(p: &Principal) -> Result<()> {
    match p {
        Principal::User(u, _) if u.is_owner => Ok(()),
        Principal::User(..) => Err(Error::Forbidden("the outbox is for owners: its emails carry one-time links".into())),
        Principal::Key(..) => Err(Error::Forbidden("the outbox is read by signed-in owners, not with API keys: its emails carry one-time links".into())),
    }
}

/// Newest first, or a change feed.
async fn list(State(s): State<Services>, p: Principal, Query(q): Query<FeedParams>) -> Result<Json<Page<OutboxItem>>> {
    require_owner(&p)?;
    let (feed, limit) = q.parse()?;
    Ok(Json(mail::list(&s.db, &feed, limit).await?))
}

/// The whole message, to open in a mail program or forward.
async fn download(State(s): State<Services>, p: Principal, Path(id): Path<i64>) -> Result<Response> {
    require_owner(&p)?;
    let (item, eml) = mail::eml(&s.db, &s.vault, id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "message/rfc822".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"outbox-{}.eml\"", item.id)),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        eml,
    )
        .into_response())
}
