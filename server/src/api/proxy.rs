//! `ANY /proxy/v1/{env}/{integration}/{path…}`: the HTTP side of [`crate::proxy`]. Outside the
//! OpenAPI document: its answers are the system's, not connvault's.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::principal;
use crate::error::Error;
use crate::proxy::{self, Call, Handles, Limits};
use crate::services::Services;

/// Authenticates the API key (only a key: the proxy is for apps) and forwards the call.
pub async fn forward(State(s): State<Services>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let key = match principal::bearer(&parts.headers) {
        Ok(Some(key)) => key.to_string(),
        Ok(None) => {
            return Error::Unauthorized("send an API key with the proxy grant: Authorization: Bearer <API key>".into()).into_response();
        }
        Err(e) => return e.into_response(),
    };
    let addr = principal::client_addr(&parts, &s);
    let h = Handles { broker: &s.broker, keys: s.keys(), signing: s.signing(), limits: Limits::from_config(&s.config) };
    let call = Call { method: parts.method, uri: parts.uri, headers: parts.headers, body, key, addr };
    proxy::forward(h, call).await.unwrap_or_else(IntoResponse::into_response)
}
