//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! types' schemas (derived, or written next to the type where derive attributes cannot state a
//! rule). This module holds only what every operation shares: the document's header, the
//! security schemes, the error responses and a few schema helpers.

use std::sync::OnceLock;

use serde_json::{json, Value};
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, RefOr, Required};

pub use crate::schema::{fields, json_schema, not_blank, param, query, schema_ref, CONTROL, WS};
pub(crate) use crate::schema::{hand_schema, params_doc};

/// The error format, as every refusal answers it.
pub struct ErrorBody;

hand_schema!(ErrorBody, "Error", || json!({
    "type": "object",
    "additionalProperties": false,
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "additionalProperties": false,
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "description": "Stable snake_case code, e.g. validation_failed, not_found, connection_exists"},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["field", "message"],
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}}
                    }
                }
            }
        }
    }
}));

/// An error response with the Error body and `description`.
pub fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(RefOr::<Schema>::Ref(utoipa::openapi::Ref::from_schema_name("Error")))))
}

/// A response header, with the keywords OpenAPI's header object has beyond utoipa's (`required`).
pub fn header(schema: Value, description: Option<&str>, required: bool) -> Header {
    let mut h = Header::new(json_schema(schema));
    h.description = description.map(str::to_string);
    if required {
        h.extensions = Some([("required", Value::Bool(true))].into_iter().collect());
    }
    h
}

/// `Cache-Control: no-store`, required.
pub fn no_store() -> Header {
    header(json!({"const": "no-store"}), Some("no-store"), true)
}

/// Declares the shared error responses (`#/components/responses/NAME`).
macro_rules! error_responses {
    ($($ty:ident = $name:literal, $description:literal;)*) => {
        $(
            #[doc = $description]
            pub struct $ty;
            impl<'r> utoipa::ToResponse<'r> for $ty {
                fn response() -> (&'r str, RefOr<Response>) {
                    ($name, error_response($description).build().into())
                }
            }
        )*
        fn error_components() -> Vec<(String, RefOr<Response>)> {
            let mut all = vec![$({ let (n, r) = <$ty as utoipa::ToResponse>::response(); (n.to_string(), r) }),*];
            let (n, r) = <TooManyRequests as utoipa::ToResponse>::response();
            all.push((n.to_string(), r));
            all
        }
    };
}

error_responses! {
    ErrorResponse = "Error", "An error: what is wrong and what to do (`code`, `message`; `details` names each field or parameter at fault)";
    Unauthorized = "Unauthorized", "No credentials, or an API key that is unknown, revoked or expired";
    Forbidden = "Forbidden", "The caller may not do this here (role, grant, an API key used from an address it is not allowed from), or a state-changing call with a session cookie that did not come from connvault's own pages";
    NotFound = "NotFound", "No such environment or object (names are matched case-insensitively; a path segment that cannot be what the route expects, such as an id that is not a whole number, names nothing either)";
    BadRequest = "BadRequest", "The body is not JSON, or was sent without Content-Type: application/json";
    TooLarge = "TooLarge", "The body is larger than the operation accepts (2 MB; an import 10 MB)";
    Invalid = "Invalid", "A field or parameter is wrong: `details` names each one (`field` is the JSON path in the body, or the query parameter) and says what to fix";
    Conflict = "Conflict", "The request conflicts with what is stored (`code` says how, e.g. connection_exists)";
}

/// An error response of one operation: `operation_error!(Type, "Name", "description")`.
macro_rules! operation_error {
    ($vis:vis $ty:ident, $name:literal, $description:literal) => {
        $vis struct $ty;
        impl<'r> utoipa::ToResponse<'r> for $ty {
            fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::Response>) {
                ($name, $crate::api::doc::error_response($description).build().into())
            }
        }
    };
}
pub(crate) use operation_error;

/// 429 from the failed-authentication limit, with `Retry-After`.
pub struct TooManyRequests;

impl<'r> utoipa::ToResponse<'r> for TooManyRequests {
    fn response() -> (&'r str, RefOr<Response>) {
        let response = error_response("Too many failed sign-ins or API-key attempts from this client address (CONNVAULT_AUTH_FAILURE_LIMIT per 5 minutes, default 10), or, for admin requests (admin-request, certificate with send_request), too many emails about this connection or by this caller in the past hour (CONNVAULT_MAIL_PER_CONNECTION_PER_HOUR, default 5; CONNVAULT_MAIL_PER_PERSON_PER_HOUR, default 20); try again after Retry-After seconds")
            .header("Retry-After", header(json!({"type": "integer", "minimum": 1}), Some("Seconds to wait"), true))
            .build();
        ("TooManyRequests", response.into())
    }
}

/// The document's header, security schemes and shared responses; the paths come from the router
/// (`super::api_router`), each operation from its handler's annotation.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "connvault API",
        version = "1",
        description = "Connections and credentials per environment. Authenticate with `Authorization: Bearer <API key>`; a signed-in browser session works too (state-changing calls must come from connvault's own pages). Secrets are write-only: they are accepted in `secrets` and never returned."
    ),
    servers((url = "/")),
    security(("apiKey" = []), ("session" = [])),
    components(schemas(ErrorBody)),
    modifiers(&Shared)
)]
struct Base;

struct Shared;

impl utoipa::Modify for Shared {
    fn modify(&self, doc: &mut OpenApi) {
        // Only what `info(...)` says (not the crate's license and authors).
        doc.info.license = None;
        doc.info.contact = None;
        let components = doc.components.get_or_insert_with(Default::default);
        let mut bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("cvk_… API key")).build();
        bearer.bearer_format = None;
        components.add_security_scheme("apiKey", SecurityScheme::Http(bearer));
        components.add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("cv_session"))));
        components.responses.extend(error_components());
    }
}

/// The whole document (generated once).
pub fn document() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = <Base as utoipa::OpenApi>::openapi();
        let (_, routes) = super::api_router().split_for_parts();
        doc.merge(routes);
        doc
    })
}

/// The document as served at `/api/v1/openapi.json`.
pub fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_pretty_json().expect("the OpenAPI document serializes"))
}

fn env_param() -> Parameter {
    param("env", ParameterIn::Path, true, json!({"type": "string"}), Some("Environment name, matched case-insensitively"))
}

/// `{env}`.
pub struct EnvPath;
params_doc!(EnvPath, || vec![env_param()]);

/// `{env}` and a connection's `{name}`.
pub struct ConnectionPath;
params_doc!(ConnectionPath, || vec![
    env_param(),
    param("name", ParameterIn::Path, true, json!({"type": "string"}), Some("Connection name, matched case-insensitively"))
]);

/// `{env}` and an integration's `{name}`.
pub struct IntegrationPath;
params_doc!(IntegrationPath, || vec![
    env_param(),
    param("name", ParameterIn::Path, true, json!({"type": "string"}), Some("Integration name, matched case-insensitively"))
]);

/// `{id}`, a record's id.
pub struct IdPath;
params_doc!(IdPath, || vec![param("id", ParameterIn::Path, true, json!({"type": "integer", "format": "int64"}), None)]);

/// Any JSON object.
pub struct AnyObject;
hand_schema!(AnyObject, "AnyObject", || json!({"type": "object"}));

/// Marks the request body of `operation_id` optional (an empty body takes the defaults).
/// utoipa makes a body optional only when it is declared as `Option<T>`, and then its schema
/// also allows `null`, which these operations refuse (a body, when sent, is a JSON object).
pub fn optional_body<S>(mut routes: utoipa_axum::router::UtoipaMethodRouter<S>, operation_id: &str) -> utoipa_axum::router::UtoipaMethodRouter<S> {
    let mut found = false;
    for item in routes.1.paths.values_mut() {
        for op in [&mut item.post, &mut item.put, &mut item.patch].into_iter().flatten() {
            if op.operation_id.as_deref() == Some(operation_id) {
                if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                    body.required = Some(Required::False);
                    found = true;
                }
            }
        }
    }
    assert!(found, "no operation {operation_id} with a request body");
    routes
}

/// `{env}` and a webhook's `{id}`.
pub struct WebhookPath;
params_doc!(WebhookPath, || vec![env_param(), param("id", ParameterIn::Path, true, json!({"type": "integer", "format": "int64"}), Some("The webhook's id"))]);

/// `{env}`, a webhook's `{id}` and one of its deliveries' `{delivery_id}`.
pub struct DeliveryPath;
params_doc!(DeliveryPath, || vec![
    env_param(),
    param("id", ParameterIn::Path, true, json!({"type": "integer", "format": "int64"}), Some("The webhook's id")),
    param("delivery_id", ParameterIn::Path, true, json!({"type": "integer", "format": "int64"}), Some("The delivery's id"))
]);
