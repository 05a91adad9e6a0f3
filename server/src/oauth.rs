//! OAuth 2.0 token requests (RFC 6749 client credentials, with the RFC 7523 private-key JWT
//! client authentication), over the `oauth2` crate with [`Outbound`] as its HTTP client: the
//! crate builds the request and reads the answer, [`Http`] sends it through `Outbound::send`,
//! so the SSRF guard stays the only way out.
//!
//! Timeouts, failed connections and 5xx answers are retried a bounded number of times with
//! growing pauses ([`RETRY_PAUSES`]); a 4xx is the server's considered answer and is never
//! retried. Each attempt asks the caller for its credential again, so an assertion (with its
//! one-time `jti`) is never sent twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::outbound::{self, Outbound, OutboundError, OutboundResponse};
use crate::secret::SecretString;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The pause before each retry; attempts per call = pauses + 1.
pub const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

/// How the client authenticates at the token endpoint.
#[derive(Debug)]
pub enum ClientAuth<'a> {
    /// `client_secret` in the form body (`client_secret_post`).
    SecretInBody(&'a SecretString),
    /// HTTP Basic with the URL-encoded client id and secret (`client_secret_basic`).
    SecretBasic(&'a SecretString),
    /// `client_assertion_type` + `client_assertion` (`private_key_jwt`): a signed JWT, no secret.
    Assertion(String),
}

impl ClientAuth<'_> {
    /// The value that must never appear in a message.
    fn secret(&self) -> &str {
        match self {
            ClientAuth::SecretInBody(s) | ClientAuth::SecretBasic(s) => s.expose_secret(),
            ClientAuth::Assertion(a) => a,
        }
    }
}

/// What the token endpoint gave.
#[derive(Debug)]
pub struct Token {
    pub access_token: SecretString,
    /// As sent (`Bearer`, in any case).
    pub token_type: String,
    pub expires_in: Option<Duration>,
    /// Space-separated, when the server says.
    pub scope: Option<String>,
    /// A refresh token, when the answer has one (a code exchange; a refresh that rotates it).
    pub refresh_token: Option<SecretString>,
    /// The answer's other fields (the tokens left out): Salesforce's `instance_url` and `id`.
    pub extra: serde_json::Map<String, Value>,
}

/// Why there is no token. Messages never carry the secret or assertion sent (they are
/// scrubbed from whatever the server echoes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with an OAuth error (`{"error", "error_description", …}`); `body`
    /// is the whole answer, for the fields a provider adds (Entra: `error_codes`).
    Refused { status: u16, error: String, description: String, body: String },
    /// 5xx, after the retries.
    Unavailable { status: u16, attempts: usize },
    /// No answer (after the retries), or an address connvault refuses to call.
    Unreachable { error: OutboundError, attempts: usize },
    /// An answer that is not an OAuth token or error answer.
    Unexpected(String),
}

impl Failure {
    /// Whether asking again later, unchanged, may work.
    pub fn is_transient(&self) -> bool {
        matches!(self, Failure::Unavailable { .. }) || matches!(self, Failure::Unreachable { error, .. } if !error.is_refused())
    }

    /// The body of a refusal as JSON (`Null` for anything else).
    pub fn body_json(&self) -> Value {
        match self {
            Failure::Refused { body, .. } => serde_json::from_str(body).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

/// Whether this transport error may go away by itself (worth another attempt).
fn retryable(e: &OutboundError) -> bool {
    matches!(e, OutboundError::Timeout { .. } | OutboundError::Connect { .. } | OutboundError::ConnectionRefused { .. })
}

/// Why [`send_with_retries`] has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    Unavailable { status: u16, attempts: usize },
    Unreachable { error: OutboundError, attempts: usize },
}

/// Sends `build()` (rebuilt for each attempt), retrying timeouts, failed connections and 5xx
/// with [`RETRY_PAUSES`]; for the resource calls that follow a token request.
pub async fn send_with_retries(out: &Outbound, build: impl Fn() -> reqwest::Request) -> Result<OutboundResponse, SendFailure> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = attempts > RETRY_PAUSES.len();
        match out.send(build()).await {
            Ok(r) if r.status.is_server_error() && !last => tracing::debug!("HTTP {} from {}, retrying", r.status, r.url.host_str().unwrap_or_default()),
            Ok(r) if r.status.is_server_error() => return Err(SendFailure::Unavailable { status: r.status.as_u16(), attempts }),
            Ok(r) => return Ok(r),
            Err(e) if retryable(&e) && !last => tracing::debug!("outbound call failed, retrying: {e}"),
            Err(error) => return Err(SendFailure::Unreachable { error, attempts }),
        }
        tokio::time::sleep(RETRY_PAUSES[attempts - 1]).await;
    }
}

/// `oauth2`'s HTTP client: one request through [`Outbound::send`], remembering the answer's
/// status and body (the typed error answer of `oauth2` keeps only `error`, `error_description`
/// and `error_uri`).
pub struct Http<'a> {
    out: &'a Outbound,
    last: Mutex<Option<(StatusCode, Vec<u8>)>>,
}

impl<'a> Http<'a> {
    pub fn new(out: &'a Outbound) -> Http<'a> {
        Http { out, last: Mutex::new(None) }
    }

    /// The status and body of the last answer, if one came.
    pub fn last_answer(&self) -> Option<(StatusCode, Vec<u8>)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, OutboundError> {
        let (parts, body) = request.into_parts();
        let url = self.out.parse_url(&parts.uri.to_string())?;
        let mut outgoing = reqwest::Request::new(parts.method, url);
        *outgoing.headers_mut() = parts.headers;
        if let Some(auth) = outgoing.headers_mut().get_mut(reqwest::header::AUTHORIZATION) {
            auth.set_sensitive(true);
        }
        *outgoing.body_mut() = Some(body.into());
        let answer = self.out.send(outgoing).await?;
        if answer.truncated {
            return Err(OutboundError::TooLarge(answer.body.len()));
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((answer.status, answer.body.clone()));
        let mut response = http::Response::new(answer.body);
        *response.status_mut() = answer.status;
        *response.headers_mut() = answer.headers;
        Ok(response)
    }
}

impl<'c> AsyncHttpClient<'c> for Http<'_> {
    type Error = OutboundError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, OutboundError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// The grant a token request makes.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'g> {
    /// `grant_type=client_credentials` with these scopes.
    ClientCredentials { scopes: &'g [&'g str] },
    /// `grant_type=authorization_code`: the code the callback brought, the PKCE verifier of its
    /// sign-in and the redirect URI the authorize request named (RFC 6749 4.1.3, RFC 7636).
    Code { code: &'g str, verifier: &'g SecretString, redirect_uri: &'g str },
    /// `grant_type=refresh_token` (RFC 6749 section 6).
    Refresh { refresh_token: &'g SecretString },
}

impl Grant<'_> {
    /// Whether an attempt that failed this way may be made again. A client-credentials request
    /// may be repeated at will; a code or refresh token may be spent by a request whose answer
    /// was lost (then the repeat would be refused, and with rotation could cost the connection
    /// its refresh token), so those are repeated only when nothing reached the server.
    fn may_retry(&self, e: &OutboundError) -> bool {
        match self {
            Grant::ClientCredentials { .. } => retryable(e),
            _ => matches!(e, OutboundError::Connect { .. } | OutboundError::ConnectionRefused { .. }),
        }
    }

    fn retries_server_errors(&self) -> bool {
        matches!(self, Grant::ClientCredentials { .. })
    }
}

/// One client-credentials request (`grant_type=client_credentials`) to `token_url`, with
/// bounded retries. `auth` is asked for the credential before each attempt (sign a fresh
/// assertion there). Only `token_url` is called, through `out`.
pub async fn client_credentials<'s>(
    out: &Outbound,
    token_url: &str,
    client_id: &str,
    scopes: &[&str],
    auth: impl FnMut() -> Result<ClientAuth<'s>, Failure>,
) -> Result<Token, Failure> {
    request_token(out, token_url, client_id, Grant::ClientCredentials { scopes }, auth).await
}

/// One token request of any grant to `token_url`, with the retries the grant allows
/// ([`Grant::may_retry`]). Only `token_url` is called, through `out`.
pub async fn request_token<'s>(
    out: &Outbound,
    token_url: &str,
    client_id: &str,
    grant: Grant<'_>,
    mut auth: impl FnMut() -> Result<ClientAuth<'s>, Failure>,
) -> Result<Token, Failure> {
    let url = out.parse_url(token_url).map_err(|error| Failure::Unreachable { error, attempts: 0 })?;
    let token_url = TokenUrl::from_url(url);
    let redirect = match grant {
        Grant::Code { redirect_uri, .. } => {
            Some(RedirectUrl::new(redirect_uri.to_string()).map_err(|e| Failure::Unexpected(format!("the redirect URI {redirect_uri} is not a URL ({e})")))?)
        }
        _ => None,
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = attempts > RETRY_PAUSES.len();
        let credential = auth()?;
        let mut client = BasicClient::new(ClientId::new(client_id.to_string())).set_token_uri(token_url.clone());
        client = match &credential {
            ClientAuth::SecretInBody(s) => client.set_client_secret(ClientSecret::new(s.expose_secret().to_string())).set_auth_type(AuthType::RequestBody),
            ClientAuth::SecretBasic(s) => client.set_client_secret(ClientSecret::new(s.expose_secret().to_string())).set_auth_type(AuthType::BasicAuth),
            ClientAuth::Assertion(_) => client.set_auth_type(AuthType::RequestBody),
        };
        let assertion = match &credential {
            ClientAuth::Assertion(a) => vec![("client_assertion_type", JWT_BEARER_ASSERTION_TYPE), ("client_assertion", a.as_str())],
            _ => Vec::new(),
        };
        let http = Http::new(out);
        let result = match grant {
            Grant::ClientCredentials { scopes } => {
                let mut request = client.exchange_client_credentials();
                for scope in scopes {
                    request = request.add_scope(Scope::new(scope.to_string()));
                }
                for (k, v) in &assertion {
                    request = request.add_extra_param(*k, *v);
                }
                request.request_async(&http).await
            }
            Grant::Code { code, verifier, .. } => {
                let mut request = client
                    .exchange_code(AuthorizationCode::new(code.to_string()))
                    .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_string()));
                if let Some(r) = &redirect {
                    request = request.set_redirect_uri(std::borrow::Cow::Borrowed(r));
                }
                for (k, v) in &assertion {
                    request = request.add_extra_param(*k, *v);
                }
                request.request_async(&http).await
            }
            Grant::Refresh { refresh_token } => {
                let token = RefreshToken::new(refresh_token.expose_secret().to_string());
                let mut request = client.exchange_refresh_token(&token);
                for (k, v) in &assertion {
                    request = request.add_extra_param(*k, *v);
                }
                request.request_async(&http).await
            }
        };
        let answer = http.last_answer();
        let mut secrets = vec![credential.secret()];
        match grant {
            Grant::Code { code, verifier, .. } => secrets.extend([code, verifier.expose_secret()]),
            Grant::Refresh { refresh_token } => secrets.push(refresh_token.expose_secret()),
            Grant::ClientCredentials { .. } => {}
        }
        let status = answer.as_ref().map(|(s, _)| *s);
        match result {
            Ok(token) => {
                let body = answer.as_ref().map(|(_, b)| b.as_slice()).unwrap_or_default();
                return Ok(Token {
                    access_token: SecretString::new(token.access_token().secret().to_string()),
                    token_type: token_type_of(body),
                    expires_in: token.expires_in(),
                    scope: token.scopes().map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
                    refresh_token: token.refresh_token().map(|t| SecretString::new(t.secret().to_string())),
                    extra: extra_of(body),
                });
            }
            Err(_) if status.is_some_and(|s| s.is_server_error()) => {
                let status = status.map(|s| s.as_u16()).unwrap_or_default();
                if last || !grant.retries_server_errors() {
                    return Err(Failure::Unavailable { status, attempts });
                }
                tracing::debug!("token endpoint answered {status}, retrying");
            }
            Err(RequestTokenError::Request(e)) if grant.may_retry(&e) && !last => tracing::debug!("token request failed, retrying: {e}"),
            Err(RequestTokenError::Request(error)) => return Err(Failure::Unreachable { error, attempts }),
            Err(RequestTokenError::ServerResponse(e)) => {
                let body = answer.map(|(_, b)| outbound::scrub(&String::from_utf8_lossy(&b), &secrets)).unwrap_or_default();
                return Err(Failure::Refused {
                    status: status.map(|s| s.as_u16()).unwrap_or_default(),
                    error: e.error().to_string(),
                    description: outbound::scrub(e.error_description().map(String::as_str).unwrap_or_default(), &secrets),
                    body,
                });
            }
            Err(RequestTokenError::Parse(e, body)) => {
                let status = status.map(|s| s.as_u16()).unwrap_or_default();
                let what = if status == 200 { format!("the token answer lacks what OAuth requires ({e})") } else { format!("HTTP {status}") };
                return Err(Failure::Unexpected(format!("{what} with {}", outbound::snippet(&body, 120, &secrets))));
            }
            Err(RequestTokenError::Other(message)) => {
                let body = answer.map(|(_, b)| outbound::snippet(&b, 120, &secrets)).unwrap_or_default();
                let status = status.map(|s| format!("HTTP {s}: ")).unwrap_or_default();
                return Err(Failure::Unexpected(format!("{status}{message} {body}").trim_end().to_string()));
            }
        }
        tokio::time::sleep(RETRY_PAUSES[attempts - 1]).await;
    }
}

/// The fields of a token answer beyond OAuth's own (Salesforce's `instance_url` and `id`), the
/// tokens left out.
fn extra_of(body: &[u8]) -> serde_json::Map<String, Value> {
    let mut map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => return serde_json::Map::new(),
    };
    for name in ["access_token", "refresh_token", "id_token", "token_type", "expires_in", "scope"] {
        map.remove(name);
    }
    map
}

/// The authorize URL of a sign-in (RFC 6749 4.1.1 with PKCE S256, RFC 7636): the browser is
/// sent there; `state` comes back to the callback. `extra` are the provider's own parameters
/// (those OAuth sets are refused by the provider's checks before they get here).
pub fn authorize_url(
    authorize_url: &str,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[String],
    state: &str,
    verifier: &SecretString,
    extra: &[(String, String)],
) -> Result<String, String> {
    let auth = AuthUrl::new(authorize_url.to_string()).map_err(|e| format!("the authorize URL {authorize_url} is not a URL ({e})"))?;
    let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|e| format!("the callback URL {redirect_uri} is not a URL ({e})"))?;
    let client = BasicClient::new(ClientId::new(client_id.to_string())).set_auth_uri(auth).set_redirect_uri(redirect);
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.expose_secret().to_string()));
    let mut request = client.authorize_url(|| CsrfToken::new(state.to_string())).set_pkce_challenge(challenge);
    for scope in scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    for (k, v) in extra {
        request = request.add_extra_param(k.clone(), v.clone());
    }
    Ok(request.url().0.to_string())
}

/// A new PKCE code verifier: 32 random bytes, base64url (43 characters, RFC 7636 4.1).
pub fn new_verifier() -> SecretString {
    crate::tokens::generate()
}

/// Revokes `token` at `revoke_url` (RFC 7009), the client authenticated as at the token
/// endpoint. A 200 means revoked (or already unknown there); anything else is the reason.
pub async fn revoke(out: &Outbound, revoke_url: &str, client_id: &str, auth: &ClientAuth<'_>, token: &SecretString, hint: &str) -> Result<(), String> {
    let url = out.parse_url(revoke_url).map_err(|e| e.to_string())?;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut body = format!("token={}&token_type_hint={hint}", enc(token.expose_secret()));
    let mut basic = None;
    match auth {
        ClientAuth::SecretBasic(secret) => {
            use base64::Engine;
            let pair = format!("{}:{}", enc(client_id), enc(secret.expose_secret()));
            basic = Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)));
        }
        ClientAuth::SecretInBody(secret) => body.push_str(&format!("&client_id={}&client_secret={}", enc(client_id), enc(secret.expose_secret()))),
        ClientAuth::Assertion(a) => {
            body.push_str(&format!("&client_id={}&client_assertion_type={}&client_assertion={}", enc(client_id), enc(JWT_BEARER_ASSERTION_TYPE), enc(a)))
        }
    }
    let build = || {
        let mut r = reqwest::Request::new(reqwest::Method::POST, url.clone());
        r.headers_mut().insert(reqwest::header::CONTENT_TYPE, reqwest::header::HeaderValue::from_static("application/x-www-form-urlencoded"));
        if let Some(b) = &basic {
            if let Ok(mut v) = reqwest::header::HeaderValue::from_str(b) {
                v.set_sensitive(true);
                r.headers_mut().insert(reqwest::header::AUTHORIZATION, v);
            }
        }
        *r.body_mut() = Some(body.clone().into());
        r
    };
    let secrets = [token.expose_secret(), auth.secret()];
    match send_with_retries(out, build).await {
        Ok(r) if r.status.is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {} from the revocation endpoint: {}", r.status.as_u16(), outbound::snippet(&r.body, 160, &secrets))),
        Err(SendFailure::Unavailable { status, attempts }) => Err(format!("the revocation endpoint answered HTTP {status} ({attempts} attempts)")),
        Err(SendFailure::Unreachable { error, .. }) => Err(format!("the revocation endpoint could not be reached: {error}")),
    }
}

/// `token_type` exactly as the server spelled it (`oauth2` folds it into an enum).
fn token_type_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("token_type").and_then(Value::as_str).map(str::to_string)).unwrap_or_default()
}
