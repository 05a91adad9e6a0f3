//! `/api/v1/environments/{env}/webhooks`: subscriptions to an environment's events, their
//! delivery logs, "send again", secret rotation and a test event. Grant resource `webhooks`
//! (developers read, administrators write).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::doc::{BadRequest, DeliveryPath, EnvPath, Forbidden, Invalid, NotFound, TooLarge, TooManyRequests, Unauthorized, WebhookPath};
use super::principal::Principal;
use super::v1::{env_for, Body, Path, Query};
use crate::access::{Access, Resource};
use crate::error::Result;
use crate::services::Services;
use crate::webhooks::{self, Delivery, NewWebhook, Webhook, WebhookPatch, WithSecret};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(deliveries))
        .routes(routes!(retry))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
}

#[utoipa::path(
    get, path = "/environments/{env}/webhooks", operation_id = "listWebhooks",
    summary = "The environment's webhook subscriptions (never their secrets)",
    params(EnvPath),
    responses(
        (status = 200, description = "Subscriptions, oldest first", body = Vec<Webhook>),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
async fn list(State(s): State<Services>, p: Principal, Path(env): Path<String>) -> Result<Json<Vec<Webhook>>> {
    let env = env_for(&s, &p, &env, Resource::Webhooks, Access::Read).await?;
    Ok(Json(webhooks::list(&s.db, &env).await?))
}

#[utoipa::path(
    post, path = "/environments/{env}/webhooks", operation_id = "createWebhook",
    summary = "Subscribe a URL to the environment's events; the answer holds the signing secret whsec_…, the only time it is shown",
    description = "Deliveries are POSTed as Standard Webhooks: webhook-id, webhook-timestamp and webhook-signature (v1,<base64 HMAC-SHA256 of \"id.timestamp.body\">) headers. The URL must be https and pass the outbound guard.",
    params(EnvPath),
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Created, with its secret", body = WithSecret),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = TooLarge), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn create(State(s): State<Services>, p: Principal, Path(env): Path<String>, Body(new): Body<NewWebhook>) -> Result<(StatusCode, Json<WithSecret>)> {
    let env = env_for(&s, &p, &env, Resource::Webhooks, Access::Write).await?;
    Ok((StatusCode::CREATED, Json(webhooks::create(&s.db, &s.vault, &s.outbound, &p.actor(), &env, &new).await?)))
}

#[utoipa::path(
    get, path = "/environments/{env}/webhooks/{id}", operation_id = "getWebhook",
    summary = "One webhook subscription",
    params(WebhookPath),
    responses(
        (status = 200, description = "The subscription", body = Webhook),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
async fn get_one(State(s): State<Services>, p: Principal, Path((env, id)): Path<(String, i64)>) -> Result<Json<Webhook>> {
    let env = env_for(&s, &p, &env, Resource::Webhooks, Access::Read).await?;
    Ok(Json(webhooks::get(&s.db, &env, id).await?))
}

#[utoipa::path(
    patch, path = "/environments/{env}/webhooks/{id}", operation_id = "updateWebhook",
    summary = "Change a subscription's URL, events, description or enabled state (enabling it again clears its failure state)",
    params(WebhookPath),
    request_body = WebhookPatch,
    responses(
        (status = 200, description = "Changed", body = Webhook),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = TooLarge), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn update(State(s): State<Services>, p: Principal, Path((env, id)): Path<(String, i64)>, Body(patch): Body<WebhookPatch>) -> Result<Json<Webhook>> {
    let env = env_for(&s, &p, &env, Resource::Webhooks, Access::Write).await?;
    Ok(Json(webhooks::update(&s.db, &s.outbound, &p.actor(), &env, id, &patch).await?))
}

#[utoipa::path(
    delete, path = "/environments/{env}/webhooks/{id}", operation_id = "deleteWebhook",
    summary = "Delete a subscription and its delivery log",
    params(WebhookPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
async fn delete(State(s): State<Services>, p: Principal, Path((env, id)): Path<(String, i64)>) -> Result<StatusCode> {
    let env = env_for(&s, &p, &env, Resource::Webhooks, Access::Write).await?;
    webhooks::delete(&s.db, &p.actor(), &env, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?limit=` of the delivery log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LogParams {
    /// At most this many deliveries, newest first (1 to 500; default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[utoipa::path(
    get, path = "/environments/{env}/webhooks/{id}/deliveries", operation_id = "listWebhookDeliveries",
    summary = "The delivery log: each event sent to this subscription, its state and every attempt (status, latency, the start of the answer)",
    params(WebhookPath, LogParams),
    responses(
        (status = 200, description = "Deliveries, newest first", body = Vec<Delivery>),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 422, response = Invalid),
        (status = 429, response = TooManyRequests),
    )
)]
async fn deliveries(State(s): State<Services>, p: Principal, Path((env, id)): Path<(String, i64)>, Query(q): Query<LogParams>) -> Result<Json<Vec<Delivery>>> {
    let env = env_for(&s, &p, &env, Resource::Webhooks, Access::Read).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(crate::error::Error::field("limit", format!("{limit} is out of range: ask for 1 to 500 deliveries")));
    }
    Ok(Json(webhooks::deliveries(&s.db, &env, id, limit).await?))
}

#[utoipa::path(
    post, path = "/environments/{env}/webhooks/{id}/deliveries/{delivery_id}/retry", operation_id = "retryWebhookDelivery",
    summary = "Send one delivery again (same webhook-id, fresh attempts)",
    params(DeliveryPath),
    responses(
        (status = 202, description = "Queued", body = Delivery),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
async fn retry(State(s): State<Services>, p: Principal, Path((env, id, delivery)): Path<(String, i64, i64)>) -> Result<(StatusCode, Json<Delivery>)> {
    let env = env_for(&s, &p, &env, Resource::Webhooks, Access::Write).await?;
    Ok((StatusCode::ACCEPTED, Json(webhooks::retry(&s.db, &p.actor(), &env, id, delivery).await?)))
}

#[utoipa::path(
    post, path = "/environments/{env}/webhooks/{id}/rotate-secret", operation_id = "rotateWebhookSecret",
    summary = "A new signing secret (in the answer, shown once); the previous one keeps signing beside it for 24 hours",
    params(WebhookPath),
    responses(
        (status = 200, description = "Rotated, with the new secret", body = WithSecret),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
async fn rotate_secret(State(s): State<Services>, p: Principal, Path((env, id)): Path<(String, i64)>) -> Result<Json<WithSecret>> {
    let env = env_for(&s, &p, &env, Resource::Webhooks, Access::Write).await?;
    Ok(Json(webhooks::rotate_secret(&s.db, &s.vault, &p.actor(), &env, id).await?))
}

#[utoipa::path(
    post, path = "/environments/{env}/webhooks/{id}/test", operation_id = "testWebhook",
    summary = "Send a webhook.test event to this subscription",
    params(WebhookPath),
    responses(
        (status = 202, description = "Queued", body = Delivery),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
async fn send_test(State(s): State<Services>, p: Principal, Path((env, id)): Path<(String, i64)>) -> Result<(StatusCode, Json<Delivery>)> {
    let env = env_for(&s, &p, &env, Resource::Webhooks, Access::Write).await?;
    Ok((StatusCode::ACCEPTED, Json(webhooks::send_test(&s.db, &p.actor(), &env, id).await?)))
}
