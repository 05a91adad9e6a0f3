//! `/api/v1/environments/{env}/export` and `/import`: promotion bundles (see the API contract
//! and `crate::promotion`). Export needs `promotion` read in the source environment, import
//! `promotion` write in the target.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::doc::{operation_error, params_doc, query, BadRequest, EnvPath, Forbidden, NotFound, TooLarge, TooManyRequests, Unauthorized};
use super::principal::Principal;
use super::v1::{env_for, Path, Query};
use crate::access::{Access, Resource};
use crate::error::{Error, FieldError, Result};
use crate::promotion::{self, Bundle, Mode, Options, Report, MAX_BUNDLE_BYTES};
use crate::services::Services;

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(export)).routes(
        // Explicit, and larger than the default: a bundle of a big environment is still one
        // request, while anything past this is refused before it is read.
        routes!(import).layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)),
    )
}

/// 200 of `export`: the bundle, never cached.
struct Exported;

impl<'r> utoipa::ToResponse<'r> for Exported {
    fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::Response>) {
        let response = utoipa::openapi::ResponseBuilder::new()
            .description("The bundle")
            .content("application/json", utoipa::openapi::Content::new(Some(super::doc::json_schema(super::doc::schema_ref::<Bundle>()))))
            .header("Cache-Control", super::doc::no_store())
            .build();
        ("Exported", response.into())
    }
}

/// The query of `import` (read by `options`).
struct ImportOptions;

params_doc!(ImportOptions, || {
    use serde_json::json;
    use utoipa::openapi::path::ParameterIn;
    vec![
        super::doc::param(
            "mode",
            ParameterIn::Query,
            true,
            json!({"type": "string", "enum": ["plan", "apply"]}),
            Some("plan writes nothing; apply makes the changes, or none when any conflicts"),
        ),
        query(
            "overwrite_settings",
            json!({"type": "boolean", "default": false}),
            "Change a target connection's shared settings where they differ from the bundle's (otherwise a conflict). Never changes a provider, and never an environment setting (where the credential goes, whose it is): those are not compared at all.",
        ),
        query(
            "create_placeholders",
            json!({"type": "boolean", "default": false}),
            "Create the connections the target lacks, so that their integrations can be bound: a name, a provider and the shared settings only (no secrets, no environment settings), marked not set up until the target's administrator sets them up there (see checklist).",
        ),
    ]
});

// 409 of `import`: what an apply would overwrite.
operation_error!(ImportConflict, "ImportConflict", "import_conflict: applying would overwrite something the target decided (settings, provider, a binding); details name each conflict by its path in the bundle. Nothing was written.");

// 422 of `import`: what is wrong with the bundle.
operation_error!(
    BundleInvalid,
    "BundleInvalid",
    "The bundle is wrong (format, version, digest, an item): details name each problem by its path, e.g. integrations[3].provider. Nothing was written."
);

#[utoipa::path(
    get, path = "/environments/{env}/export", operation_id = "exportEnvironment",
    summary = "Promotion bundle (format_version 2): integrations, connection descriptors (shared settings only: never a secret, never a setting of one environment) and bindings by connection name, each list by name. Needs promotion read.",
    params(EnvPath),
    responses(
        (status = 200, response = inline(Exported)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
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

#[utoipa::path(
    post, path = "/environments/{env}/import", operation_id = "importBundle",
    summary = "Plan or apply a promotion bundle. Validated completely before anything is read or written; apply is one transaction (all or nothing, audited) and idempotent. Needs promotion write.",
    params(EnvPath, ImportOptions),
    request_body(content = Bundle, description = "A bundle from an export, at most 10 MB"),
    responses(
        (status = 200, description = "The plan, or what was applied", body = Report),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = inline(ImportConflict)), (status = 413, response = TooLarge),
        (status = 422, response = inline(BundleInvalid)), (status = 429, response = TooManyRequests),
    )
)]
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
