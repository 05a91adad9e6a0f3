//! The proxy: `ANY /proxy/v1/{env}/{integration}/{path…}`. An app sends its request to
//! connvault as if connvault were the system; connvault adds the bound connection's credential
//! and forwards the request to the connection's base URL (Salesforce's `instance_url`, the
//! SharePoint site, the Dataverse environment, the SAP service root, the Workato data center,
//! an `http` connection's base URL), so the app never holds the secret or even a token.
//!
//! - **Who may call**: an API key with the grant `proxy:read` (GET, HEAD) or `proxy:write`
//!   (every other method) on the environment, checked on every call by the broker: one query,
//!   or on SQLite none while nothing that query read has changed (a revoked key stops at once,
//!   on every instance).
//! - **Where it goes**: only to the connection's origin and under its base path. The path is
//!   checked as it arrived, before anything is sent: empty, `.` and `..` segments, backslashes,
//!   `@`, and escapes of `/ \ . % @` or control characters are refused with 400 ([`check_path`]);
//!   the URL made from it is checked again against the base ([`destination`]); everything goes
//!   through the outbound guard (no private addresses, no redirects followed).
//! - **What travels**: the caller's headers less hop-by-hop ones, its `Authorization` (the
//!   API key), its cookies and forwarding headers; the credential is added (bearer, basic, an
//!   API-key header), with the provider's session where it has one (SAP: the CSRF token and its
//!   cookies on writes, `sap-client` always). The system's `Set-Cookie` never comes back: its
//!   session belongs to the credential.
//! - **When the credential has expired**: a 401 (or the provider's own sign, SAP's 403 with
//!   `X-CSRF-Token: Required`) mints again once (single flight, the broker's locks) and sends
//!   the request once more; a second refusal is answered as it came and marks the connection
//!   failing. A request body is kept for that second try up to [`REPLAY_LIMIT`]; a larger one
//!   streams and cannot be sent again (the credential is still renewed for the next call, and
//!   the answer says so in `connvault-not-retried`).
//! - **Limits of the other side**: 429 and 503 with `Retry-After` pass through as they came;
//!   connvault never retries them.
//! - **Bodies stream both ways**, limited by `CONNVAULT_PROXY_MAX_REQUEST_BYTES` and
//!   `CONNVAULT_PROXY_MAX_RESPONSE_BYTES`.
//! - **Counted and audited**: every call counts toward `proxy.use` (per key, integration and
//!   minute); calls that fail on connvault's side, or whose renewed credential is refused, are
//!   events (`proxy.failure`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::json;
use url::Url;

use crate::access::Access;
use crate::api_keys;
use crate::audit::{self, Event};
use crate::broker::{Broker, Refresh, Served, Use};
use crate::config::Config;
use crate::connections;
use crate::error::{Error, Result};
use crate::outbound::OutboundError;
use crate::providers::{self, OnRequest, TestResult};
use crate::signing;

/// Where the proxy's paths begin.
pub const PREFIX: &str = "/proxy/v1/";
/// Request bodies up to this size are kept, so that the call can be sent again after the
/// credential was renewed; larger ones stream through once.
pub const REPLAY_LIMIT: u64 = 1 << 20;
/// Set on an answer the proxy passed on after a 401 without a second try (a streamed body).
pub const NOT_RETRIED: &str = "connvault-not-retried";

/// Headers that belong to one connection, not to the request (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];
/// The caller's headers that never travel on: its API key, its cookies, where it came from,
/// and what the HTTP client sets itself.
const NOT_FORWARDED: &[&str] =
    &["host", "authorization", "cookie", "content-length", "expect", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"];

/// The proxy's size limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_request: u64,
    pub max_response: u64,
}

impl Limits {
    pub fn from_config(c: &Config) -> Limits {
        Limits { max_request: c.proxy_max_request_bytes, max_response: c.proxy_max_response_bytes }
    }
}

/// What one proxied call needs.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub broker: &'a Broker,
    pub keys: api_keys::Handles<'a>,
    pub signing: signing::Handles<'a>,
    pub limits: Limits,
}

/// The caller's request, as it arrived.
pub struct Call {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Body,
    /// The API key from `Authorization: Bearer …`.
    pub key: String,
    pub addr: Option<IpAddr>,
}

/// `(environment, integration, rest)` of a proxy path: the names decoded, the rest as it
/// arrived (still percent-encoded), without its leading `/`.
pub fn split(path: &str) -> Result<(String, String, &str)> {
    let usage = || Error::NotFound(format!("proxy paths are {PREFIX}{{environment}}/{{integration}}/{{path on the system}}"));
    let tail = path.strip_prefix(PREFIX).ok_or_else(usage)?;
    let mut parts = tail.splitn(3, '/');
    let mut name = || -> Result<String> {
        let raw = parts.next().filter(|p| !p.is_empty()).ok_or_else(usage)?;
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map(|n| n.into_owned())
            .map_err(|_| Error::BadRequest(format!("{raw:?} is not a valid name: it is not UTF-8 once decoded")))
    };
    let env = name()?;
    let integration = name()?;
    Ok((env, integration, parts.next().unwrap_or("")))
}

/// Refuses a path that could leave the connection's base (or mean different things to
/// connvault and to the system), saying what was found. `rest` is the path after the
/// integration, as it arrived.
pub fn check_path(rest: &str) -> std::result::Result<(), String> {
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() && i + 1 < segments.len() {
            return Err("the path has an empty segment (//): an address after // could name another host".into());
        }
        if *segment == "." || *segment == ".." {
            return Err(format!("the path has a {segment:?} segment: paths may not climb out of the connection's base URL"));
        }
    }
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err("the path has a backslash: some servers read it as /".into()),
            b'@' => return Err("the path has an @: in a URL it separates a user name from a host".into()),
            b if b < 0x21 || b == 0x7f => return Err("the path has a space or a control character: encode it".into()),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
                let Some(byte) = hex else {
                    return Err("the path has a % that does not start an escape (%XX)".into());
                };
                let what = match byte {
                    b'/' => Some("an encoded slash (%2F)"),
                    b'\\' => Some("an encoded backslash (%5C)"),
                    b'.' => Some("an encoded dot (%2E)"),
                    b'%' => Some("an encoded percent sign (%25), a double encoding"),
                    b'@' => Some("an encoded @ (%40)"),
                    b if b < 0x20 || b == 0x7f => Some("an encoded control character"),
                    _ => None,
                };
                if let Some(what) = what {
                    return Err(format!("the path has {what}: the system could decode it into another path"));
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The URL a call goes to: `base` (the connection's), then `rest`, then the caller's query
/// with `add` setting parameters of its own (a provider's session: SAP's `sap-client`). Refused
/// unless it stays on the base's origin and under its path.
pub fn destination(base: &str, rest: &str, query: Option<&str>, add: &[(&'static str, String)]) -> Result<Url> {
    let base = Url::parse(base).map_err(|e| Error::Internal(format!("the connection's base URL {base:?} does not parse: {e}")))?;
    let root = format!("{}{}", base.origin().ascii_serialization(), base.path().trim_end_matches('/'));
    let mut url = Url::parse(&format!("{root}/{rest}")).map_err(|e| Error::BadRequest(format!("the path does not make a valid URL: {e}")))?;
    match (query, add.is_empty()) {
        (q, true) => url.set_query(q.filter(|q| !q.is_empty())),
        (q, false) => {
            let kept: Vec<(String, String)> = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .into_owned()
                .filter(|(k, _)| !add.iter().any(|(name, _)| name == k))
                .collect();
            let mut pairs = url.query_pairs_mut();
            pairs.clear().extend_pairs(kept);
            for (name, value) in add {
                pairs.append_pair(name, value);
            }
        }
    }
    let under = format!("{}/", base.path().trim_end_matches('/'));
    if url.origin() != base.origin() || !(url.path() == base.path().trim_end_matches('/') || url.path().starts_with(&under)) {
        return Err(Error::BadRequest(format!("the path would leave the connection's base URL {root}")));
    }
    Ok(url)
}

/// The request body as it will be sent: kept (it can be sent again) or streamed once.
enum Outgoing {
    Kept(Bytes),
    Streamed(Body, Arc<AtomicBool>),
}

impl Outgoing {
    async fn of(headers: &HeaderMap, body: Body, limits: Limits) -> Result<Outgoing> {
        let too_large = || {
            Error::TooLarge(format!(
                "the request body is larger than the {} bytes the proxy forwards (CONNVAULT_PROXY_MAX_REQUEST_BYTES); nothing was sent",
                limits.max_request
            ))
        };
        // The length as the server read it (Content-Length, or none for a chunked body).
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        let length = axum::body::HttpBody::size_hint(&body).exact().or(declared);
        if length.is_some_and(|n| n > limits.max_request) {
            return Err(too_large());
        }
        match length {
            Some(n) if n <= REPLAY_LIMIT => {
                let bytes = axum::body::to_bytes(body, n as usize).await.map_err(|e| Error::BadRequest(format!("the request body could not be read: {e}")))?;
                Ok(Outgoing::Kept(bytes))
            }
            _ => Ok(Outgoing::Streamed(body, Arc::new(AtomicBool::new(false)))),
        }
    }

    /// The body for one attempt: the kept bytes again, or the stream (once).
    fn take(&mut self, limits: Limits) -> reqwest::Body {
        match self {
            Outgoing::Kept(bytes) => reqwest::Body::from(bytes.clone()),
            Outgoing::Streamed(body, tripped) => {
                let body = std::mem::replace(body, Body::empty());
                let tripped = tripped.clone();
                let mut seen = 0u64;
                let max = limits.max_request;
                reqwest::Body::wrap_stream(body.into_data_stream().map(move |chunk| {
                    let chunk = chunk.map_err(std::io::Error::other)?;
                    seen += chunk.len() as u64;
                    if seen > max {
                        tripped.store(true, Ordering::Relaxed);
                        return Err(std::io::Error::other("the request body is larger than the proxy forwards"));
                    }
                    Ok(chunk)
                }))
            }
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Outgoing::Kept(_))
    }

    fn tripped(&self) -> bool {
        matches!(self, Outgoing::Streamed(_, t) if t.load(Ordering::Relaxed))
    }
}

/// Forwards one call. Errors are connvault's own answers (JSON); everything the system says,
/// however it says it, is passed on as it came.
pub async fn forward(h: Handles<'_>, call: Call) -> Result<Response> {
    let Call { method, uri, headers, body, key, addr } = call;
    let access = if matches!(method, Method::GET | Method::HEAD) { Access::Read } else { Access::Write };
    let (env, integration, rest) = split(uri.path())?;
    check_path(rest).map_err(|why| Error::BadRequest(format!("{why}; nothing was sent")))?;
    let purpose = Use::Proxy(access);
    // A renewal asks for a credential newer than this moment: calls refused with the same
    // credential then share one mint, however late each gets to ask.
    let asked = chrono::Utc::now();
    let served = h.broker.for_key(h.keys, h.signing, &key, addr, &env, &integration, Refresh::Cached, purpose).await?;
    let outcome: Result<reqwest::Response> = async {
        let mut outgoing = Outgoing::of(&headers, body, h.limits).await?;
        let forwarded = forwardable(&headers);
        let first = send(h, &served, &method, rest, uri.query(), &forwarded, &mut outgoing).await?;
        if !renew(&served, &first) {
            return Ok(first);
        }
        // The credential (or the session beside it) has expired: mint again, single flight.
        let again = h.broker.for_key(h.keys, h.signing, &key, addr, &env, &integration, Refresh::After(asked), purpose).await;
        if !outgoing.replayable() {
            let mut first = first;
            let why = match again {
                Ok(_) => "the request body was streamed, so it could not be sent again; the credential has been renewed: send the request again",
                Err(_) => "the request body was streamed, so it could not be sent again, and the credential could not be renewed",
            };
            first.headers_mut().insert(HeaderName::from_static(NOT_RETRIED), HeaderValue::from_static(why));
            return Ok(first);
        }
        let again = again?;
        let second = send(h, &again, &method, rest, uri.query(), &forwarded, &mut outgoing).await?;
        if renew(&again, &second) {
            refused_twice(h, &again, second.status()).await?;
        }
        Ok(second)
    }
    .await;
    h.broker.count_call(&served.actor, &served.env, &served.integration);
    match outcome {
        Ok(answer) => respond(answer, h.limits),
        Err(e) => {
            let event = Event::new("proxy.failure")
                .outcome("failure")
                .environment(served.env.id, &served.env.name)
                .object("integration", &served.integration)
                .detail(json!({"connection": served.token.connection, "method": method.as_str(), "status": e.status().as_u16(), "detail": e.public_message()}));
            if let Err(audit_error) = audit::record_alone(h.signing.db, &served.actor, event).await {
                tracing::warn!("a proxy failure could not be audited: {audit_error}");
            }
            Err(e)
        }
    }
}

/// Whether an answer says the credential, or the provider's session beside it, is no longer
/// good.
fn renew(served: &Served, answer: &reqwest::Response) -> bool {
    answer.status() == StatusCode::UNAUTHORIZED
        || providers::get(&served.token.provider).and_then(|p| p.session).is_some_and(|s| (s.expired)(answer.status(), answer.headers()))
}

/// One attempt: the request to the connection's base URL with the credential of `served`.
async fn send(
    h: Handles<'_>,
    served: &Served,
    method: &Method,
    rest: &str,
    query: Option<&str>,
    forwarded: &HeaderMap,
    outgoing: &mut Outgoing,
) -> Result<reqwest::Response> {
    let token = &served.token;
    let base = token.instance_url.as_deref().ok_or_else(|| Error::Conflict {
        code: "connection_incomplete",
        message: format!("connection {} in {} has no base URL to call; set it up on its page", token.connection, served.env.name),
    })?;
    let write = !matches!(*method, Method::GET | Method::HEAD);
    let session = providers::get(&token.provider).and_then(|p| p.session);
    let on: OnRequest = session.map(|s| (s.on_request)(&token.settings, &token.extras, write)).unwrap_or_default();
    let url = destination(base, rest, query, &on.query)?;
    let mut request = reqwest::Request::new(method.clone(), url);
    *request.headers_mut() = forwarded.clone();
    let credential = token.credential();
    let unusable = |u: crate::credential::Unusable| Error::Conflict {
        code: "connection_incomplete",
        message: format!("connection {} in {} cannot be used: {}; {}", token.connection, served.env.name, u.detail, u.advice),
    };
    for (name, value) in credential.headers().map_err(unusable)? {
        request.headers_mut().insert(name, value);
    }
    for (name, value) in &on.headers {
        let mut v = HeaderValue::from_str(value.expose_secret())
            .map_err(|_| Error::Internal(format!("the {} session gave a {name} header that cannot be sent", token.provider)))?;
        v.set_sensitive(true);
        request.headers_mut().insert(HeaderName::from_static(name), v);
    }
    *request.body_mut() = Some(outgoing.take(h.limits));
    let host = request.url().host_str().unwrap_or_default().to_string();
    h.signing.outbound.stream(request).await.map_err(|e| {
        if outgoing.tripped() {
            return Error::TooLarge(format!(
                "the request body was larger than the {} bytes the proxy forwards (CONNVAULT_PROXY_MAX_REQUEST_BYTES); the call was cut off",
                h.limits.max_request
            ));
        }
        gateway(&host, &e)
    })
}

fn gateway(host: &str, e: &OutboundError) -> Error {
    let advice = e.advice().map(|a| format!(" What to do: {a}")).unwrap_or_default();
    Error::Gateway {
        code: if matches!(e, OutboundError::Timeout { .. }) { "system_timeout" } else { "system_unreachable" },
        message: format!("the call to {host} got no answer: {e}.{advice}"),
        timed_out: matches!(e, OutboundError::Timeout { .. }),
    }
}

/// The renewed credential was refused too: the connection is failing, in its latest check and
/// as an event; the answer goes back as it came.
async fn refused_twice(h: Handles<'_>, served: &Served, status: StatusCode) -> Result<()> {
    let result = TestResult::failed(
        format!("the system refused a freshly renewed credential on a proxied call ({status})"),
        "run Test connection on the connection's page: the user behind it may have lost access, or the system's admin revoked the app",
    );
    let mut tx = h.signing.db.begin().await?;
    connections::record_health(&mut tx, served.token.connection_id, &result, "proxy").await?;
    audit::record(
        &mut tx,
        &served.actor,
        Event::new("proxy.failure")
            .outcome("failure")
            .environment(served.env.id, &served.env.name)
            .object("integration", &served.integration)
            .detail(json!({"connection": served.token.connection, "status": status.as_u16(), "detail": result.detail})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The caller's headers that go on to the system.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    end_to_end(headers, NOT_FORWARDED)
}

/// `headers` without the hop-by-hop ones (those of [`HOP_BY_HOP`] and those a `Connection`
/// header names) and without `also`.
fn end_to_end(headers: &HeaderMap, also: &[&str]) -> HeaderMap {
    let named = named_in_connection(headers);
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || also.contains(&n) || named.iter().any(|c| c == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The header names a `Connection` header lists (hop-by-hop as well).
fn named_in_connection(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The system's answer, streamed back to the caller.
fn respond(answer: reqwest::Response, limits: Limits) -> Result<Response> {
    if answer.content_length().is_some_and(|n| n > limits.max_response) {
        return Err(Error::Gateway {
            code: "answer_too_large",
            message: format!(
                "the system's answer is {} bytes, more than the {} the proxy passes on (CONNVAULT_PROXY_MAX_RESPONSE_BYTES)",
                answer.content_length().unwrap_or_default(),
                limits.max_response
            ),
            timed_out: false,
        });
    }
    let status = answer.status();
    // The system's session cookies belong to the credential.
    let headers = end_to_end(answer.headers(), &["set-cookie"]);
    let max = limits.max_response;
    let seen = Arc::new(AtomicU64::new(0));
    let body = answer.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        if seen.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64 > max {
            tracing::warn!("a proxied answer passed CONNVAULT_PROXY_MAX_RESPONSE_BYTES ({max}) and was cut off");
            return Err(std::io::Error::other("the answer is larger than the proxy passes on"));
        }
        Ok(chunk)
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_base_are_refused() {
        let refused = [
            ("..", "\"..\" segment"),
            ("a/../b", "\"..\" segment"),
            ("./a", "\".\" segment"),
            ("a//b", "empty segment"),
            ("/evil.example.com/x", "empty segment"),
            ("https://evil.example.com/", "empty segment"),
            ("%2e%2e/secret", "encoded dot"),
            (".%2E/secret", "encoded dot"),
            ("a%2Fb", "encoded slash"),
            ("a%2fb", "encoded slash"),
            ("http:%2F%2Fevil.example.com", "encoded slash"),
            ("a\\b", "backslash"),
            ("a%5Cb", "encoded backslash"),
            ("@evil.example.com", "an @"),
            ("a%40evil.example.com", "encoded @"),
            ("%252e%252e/x", "double encoding"),
            ("a%00b", "control character"),
            ("a%0d%0aHost:%20x", "control character"),
            ("a%zz", "does not start an escape"),
            ("a%2", "does not start an escape"),
            ("a b", "space or a control"),
        ];
        for (path, why) in refused {
            let e = check_path(path).expect_err(path);
            assert!(e.contains(why), "{path}: {e}");
        }
        for fine in ["", "services/data/v60.0/query", "A_BusinessPartner('1000')", "sites/x/_api/web/lists/", "a%20b", "B%C3%BCcher", "x:y", "v1/"] {
            assert_eq!(check_path(fine), Ok(()), "{fine}");
        }
    }

    #[test]
    fn the_destination_stays_on_the_base() {
        let d = |base: &str, rest: &str, q: Option<&str>| destination(base, rest, q, &[]).map(|u| u.to_string());
        assert_eq!(d("https://na1.my.salesforce.com", "services/data/v60.0/query", Some("q=SELECT+Id+FROM+Account")).unwrap(), "https://na1.my.salesforce.com/services/data/v60.0/query?q=SELECT+Id+FROM+Account");
        assert_eq!(d("https://h.example.com/sap/opu/odata/sap/API_BP/", "A_BusinessPartner", None).unwrap(), "https://h.example.com/sap/opu/odata/sap/API_BP/A_BusinessPartner");
        assert_eq!(d("https://h.example.com/api/", "", None).unwrap(), "https://h.example.com/api/");
        assert_eq!(d("https://h.example.com/api", "", Some("")).unwrap(), "https://h.example.com/api/");
        // What check_path refuses is refused here too, by the parsed result.
        assert!(d("https://h.example.com/api/v1", "../admin", None).is_err());
        assert!(d("https://h.example.com/api/v1", "%2e%2e/admin", None).is_err());
        // The session's parameters replace the caller's.
        let u = destination("https://h.example.com/svc/", "Set", Some("sap-client=999&$top=2"), &[("sap-client", "100".into())]).unwrap();
        assert_eq!(u.query(), Some("%24top=2&sap-client=100"));
    }

    #[test]
    fn the_callers_credentials_and_hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer cvk_secret"),
            ("cookie", "cv_session=abc"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("host", "connvault.example.com"),
            ("x-forwarded-for", "10.0.0.1"),
            ("accept", "application/json"),
            ("sforce-query-options", "batchSize=200"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let out = forwardable(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept", "sforce-query-options"]);
    }

    #[test]
    fn names_are_decoded_and_the_rest_is_kept_as_it_came() {
        assert_eq!(split("/proxy/v1/DEV/Accounts/services/data/v60.0/query").unwrap(), ("DEV".into(), "Accounts".into(), "services/data/v60.0/query"));
        assert_eq!(split("/proxy/v1/DEV/My%20App/a%2Fb").unwrap(), ("DEV".into(), "My App".into(), "a%2Fb"));
        assert_eq!(split("/proxy/v1/DEV/Accounts").unwrap(), ("DEV".into(), "Accounts".into(), ""));
        assert!(matches!(split("/proxy/v1/DEV"), Err(Error::NotFound(_))));
        assert!(matches!(split("/proxy/v1//x/y"), Err(Error::NotFound(_))));
    }
}
