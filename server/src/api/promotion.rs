//! `/api/v1/environments/{env}/export` and `/import`: promotion bundles (see the API contract
//! and `crate::promotion`). Export needs `promotion` read in the source environment, import
//! `promotion` write in the target.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::principal::Principal;
use super::v1::{env_for, Path, Query};
use crate::access::{Access, Resource};
use crate::error::{Error, FieldError, Result};
use crate::promotion::{self, Mode, Options, Report, MAX_BUNDLE_BYTES};
use crate::startup::Services;

pub fn router() -> Router<Services> {
    Router::new().route("/environments/{env}/export", get(export)).route(
        "/environments/{env}/import",
        // Explicit, and larger than the default: a bundle of a big environment is still one
        // request, while anything past this is refused before it is read.
        post(import).layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)),
    )
}

/// The bundle, never cached by intermediaries (it describes an environment's setup).
async fn export(State(s): State<Services>, p: Principal, Path(env): Path<String>) -> Result<Response> {
    let env = env_for(&s, &p, &env, Resource::Promotion, Access::Read).await?;
    let bundle = promotion::export(&s.db, &p.actor(), &env.name).await?;
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], Json(bundle)).into_response())
}

/// Reads `mode`, `overwrite_settings` and `create_placeholders`; anything else is a mistake
/// worth pointing out (an option misspelt would otherwise be silently ignored).
fn options(q: &BTreeMap<String, String>) -> Result<(Mode, Options)> {
    let mut errors = Vec::new();
    for key in q.keys().filter(|k| !matches!(k.as_str(), "mode" | "overwrite_settings" | "create_placeholders")) {
        errors.push(FieldError::new(key.clone(), "is not an import option; the options are mode, overwrite_settings and create_placeholders"));
    }
    let mode = match q.get("mode").map(String::as_str) {
        Some("plan") => Some(Mode::Plan),
        Some("apply") => Some(Mode::Apply),
        other => {
            let given = other.map(|v| format!(" (not {v:?})")).unwrap_or_default();
            errors.push(FieldError::new("mode", format!("say mode=plan to see what would change, or mode=apply to do it{given}")));
            None
        }
    };
    let mut flag = |name: &str| match q.get(name).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            errors.push(FieldError::new(name, format!("is true or false, not {other:?}")));
            false
        }
    };
    let options = Options { overwrite_settings: flag("overwrite_settings"), create_placeholders: flag("create_placeholders") };
    match mode {
        Some(mode) if errors.is_empty() => Ok((mode, options)),
        _ => Err(Error::Validation(errors)),
    }
}

/// 200 with the plan (mode=plan) or what was done (mode=apply); 409 `import_conflict` when an
/// apply would overwrite something, 422 when the bundle itself is wrong, 413 past 10 MB.
async fn import(
    State(s): State<Services>,
    p: Principal,
    Path(env): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Report>> {
    let env = env_for(&s, &p, &env, Resource::Promotion, Access::Write).await?;
    let (mode, options) = options(&q)?;
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Error::TooLarge(format!(
                "the bundle is larger than {} MB, the most an import accepts; a bundle holds names and settings only, so check that this is one",
                MAX_BUNDLE_BYTES / (1024 * 1024)
            )))
        }
        Err(e) => return Err(Error::BadRequest(format!("the body could not be read: {}", e.body_text()))),
    };
    let bundle = promotion::parse(&body)?;
    Ok(Json(promotion::import(&s.db, &p.actor(), &env.name, &bundle, mode, options).await?))
}
