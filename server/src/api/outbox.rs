//! `/api/v1/outbox`: the emails kept because no mail server is configured. For signed-in owners
//! only: the messages carry one-time links meant for one person, which no API key needs.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::doc::{Forbidden, IdPath, Invalid, NotFound, TooManyRequests, Unauthorized};
use super::principal::Principal;
use super::v1::{Path, Query};
use crate::error::{Error, Result};
use crate::feed::{FeedParams, Page};
use crate::mail::{self, OutboxItem};
use crate::services::Services;

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(download))
}

/// 200 of `download`: the message, as a download never cached.
struct Eml;

impl<'r> utoipa::ToResponse<'r> for Eml {
    fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::Response>) {
        let body = super::doc::json_schema(serde_json::json!({"type": "string", "format": "binary"}));
        let disposition = serde_json::json!({"type": "string", "pattern": "^attachment; filename=\"outbox-[0-9]+\\.eml\"$"});
        let response = utoipa::openapi::ResponseBuilder::new()
            .description("The message")
            .content("message/rfc822", utoipa::openapi::Content::new(Some(body)))
            .header("Cache-Control", super::doc::no_store())
            .header("Content-Disposition", super::doc::header(disposition, None, true))
            .build();
        ("Eml", response.into())
    }
}

fn require_owner(p: &Principal) -> Result<()> {
    match p {
        Principal::User(u, _) if u.is_owner => Ok(()),
        Principal::User(..) => Err(Error::Forbidden("the outbox is for owners: its emails carry one-time links".into())),
        Principal::Key(..) => Err(Error::Forbidden("the outbox is read by signed-in owners, not with API keys: its emails carry one-time links".into())),
    }
}

#[utoipa::path(
    get, path = "/outbox", operation_id = "listOutbox",
    summary = "Emails kept because no mail server is configured (CONNVAULT_SMTP_URL unset), newest first (default), or a change feed. Signed-in owners only: API keys get 403, because the messages carry one-time links",
    security(("session" = [])),
    params(FeedParams),
    responses(
        (status = 200, description = "One page of the outbox", body = inline(Page<OutboxItem>)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
/// Newest first, or a change feed.
async fn list(State(s): State<Services>, p: Principal, Query(q): Query<FeedParams>) -> Result<Json<Page<OutboxItem>>> {
    require_owner(&p)?;
    let (feed, limit) = q.parse()?;
    Ok(Json(mail::list(&s.db, &feed, limit).await?))
}

#[utoipa::path(
    get, path = "/outbox/{id}", operation_id = "downloadOutboxEml",
    summary = "The whole message as it would have been sent (`.eml`), with Content-Disposition: attachment and Cache-Control: no-store. Signed-in owners only",
    security(("session" = [])),
    params(IdPath),
    responses(
        (status = 200, response = inline(Eml)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
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
