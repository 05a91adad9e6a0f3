//! What the stand-ins (`connvault dev-salesforce`, `connvault dev-microsoft`: local doubles of a
//! provider's token endpoint and API, for demos and tests) share: reading an assertion, JSON
//! and HTML answers, escaping, random text. Nothing here runs in `connvault serve`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::Value;

/// A compact JWT as sent, decoded but not verified: the stand-in checks the signature itself
/// against the certificate registered with it.
pub struct Jwt<'a> {
    pub header: Value,
    pub claims: Value,
    /// `header.claims`, as signed.
    pub signing_input: &'a str,
    /// The signature, base64url as sent.
    pub signature: &'a str,
}

/// Three base64url parts, the first two JSON objects, the last not empty; else `None`.
pub fn parse_jwt(token: &str) -> Option<Jwt<'_>> {
    let token = token.trim();
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, claims) = signing_input.split_once('.')?;
    if claims.contains('.') || signature.is_empty() {
        return None;
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value = serde_json::from_slice(&b64.decode(header).ok()?).ok()?;
    let claims: Value = serde_json::from_slice(&b64.decode(claims).ok()?).ok()?;
    (header.is_object() && claims.is_object()).then_some(Jwt { header, claims, signing_input, signature })
}

/// A JSON answer with the provider's content type, never cached (as token endpoints answer).
pub fn json_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An HTML page (a stand-in's own admin page), never cached.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub use crate::mail::escape_html;

/// Equal, in time that does not depend on where they differ.
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `n` characters drawn from `alphabet`.
pub fn random_chars(n: usize, alphabet: &[u8]) -> String {
    (0..n).map(|_| alphabet[rand::random_range(0..alphabet.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn malformed_assertions_do_not_parse() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let h = b64(r#"{"alg":"PS256"}"#);
        let c = b64(r#"{"iss":"x"}"#);
        assert!(parse_jwt(&format!("{h}.{c}.c2ln")).is_some());
        for bad in [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c".into(),
            format!("{h}.{c}."),
            format!("{h}.{c}.x.y"),
            format!("{h}.{}.c2ln", b64("[1,2]")),
            format!("{h}.{}.c2ln", b64("not json")),
            format!("{}.{c}.c2ln", b64("1")),
            format!("{h}.{c}=.c2ln"),
        ] {
            assert!(parse_jwt(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape_html(r#"<a href="x">&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn comparison_is_exact() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "abcd"));
    }
}
