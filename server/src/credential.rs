//! The one credential type: what a connection hands out at run time (scheme, value, expiry,
//! base URL, extra headers) and how it goes on an outgoing request. Providers build it: a
//! static credential from typed secrets (`ProviderDef::credential`), a minted token from the
//! broker. The live check, the broker's answer and (next) the proxy all use it.

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use zeroize::Zeroizing;

use crate::secret::SecretString;

/// How the value is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer VALUE`.
    Bearer,
    /// `Authorization: Basic VALUE`, VALUE being base64 of `user:password`.
    Basic,
    /// `NAME: VALUE` (an API key in a header the API names).
    Header(String),
}

/// A credential ready to be used.
#[derive(Debug, Clone)]
pub struct Credential {
    pub scheme: Scheme,
    pub value: SecretString,
    /// When it stops working, if it is known (a minted token's expiry).
    pub expires_at: Option<DateTime<Utc>>,
    /// Where it is used (an API's base URL, Salesforce's instance, the SharePoint site).
    pub base_url: Option<String>,
    /// Other headers the service needs with it.
    pub extra_headers: Vec<(String, SecretString)>,
}

/// Why a credential cannot go on a request, in words that name what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub detail: String,
    pub advice: String,
}

impl Credential {
    pub fn bearer(token: SecretString) -> Credential {
        Credential { scheme: Scheme::Bearer, value: token, expires_at: None, base_url: None, extra_headers: Vec::new() }
    }

    /// Basic authentication for `username` and `password` (encoded here, once).
    pub fn basic(username: &str, password: &SecretString) -> Credential {
        let pair = Zeroizing::new(format!("{username}:{}", password.expose_secret()));
        let value = SecretString::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
        Credential { scheme: Scheme::Basic, value, expires_at: None, base_url: None, extra_headers: Vec::new() }
    }

    pub fn header(name: &str, value: SecretString) -> Credential {
        Credential { scheme: Scheme::Header(name.to_string()), value, expires_at: None, base_url: None, extra_headers: Vec::new() }
    }

    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Credential {
        self.base_url = Some(base_url.into());
        self
    }

    pub fn with_expiry(mut self, expires_at: Option<DateTime<Utc>>) -> Credential {
        self.expires_at = expires_at;
        self
    }

    /// The `token_type` of the broker's answer: `Bearer`, `Basic` or `Header`.
    pub fn token_type(&self) -> &'static str {
        match self.scheme {
            Scheme::Bearer => "Bearer",
            Scheme::Basic => "Basic",
            Scheme::Header(_) => "Header",
        }
    }

    /// For `Header` credentials: the header that carries the value.
    pub fn header_name(&self) -> Option<&str> {
        match &self.scheme {
            Scheme::Header(name) => Some(name),
            _ => None,
        }
    }

    /// The headers this credential adds, values marked sensitive (never logged by the HTTP
    /// stack). Refused with a reason when a name or value cannot be sent.
    pub fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, Unusable> {
        let value = |text: &str, what: &str| -> Result<HeaderValue, Unusable> {
            let mut v = HeaderValue::from_str(text).map_err(|_| Unusable {
                detail: format!("the {what} contains characters that cannot be sent in an HTTP header"),
                advice: format!("replace the {what}: it must be printable text on one line"),
            })?;
            v.set_sensitive(true);
            Ok(v)
        };
        let secret = self.value.expose_secret();
        let first = match &self.scheme {
            Scheme::Bearer => (AUTHORIZATION, value(&Zeroizing::new(format!("Bearer {secret}")), "token")?),
            Scheme::Basic => (AUTHORIZATION, value(&Zeroizing::new(format!("Basic {secret}")), "password")?),
            Scheme::Header(name) => {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Unusable {
                    detail: "the header name is not a valid HTTP header name".into(),
                    advice: "set the header name to e.g. X-API-Key".into(),
                })?;
                (name, value(secret, "token")?)
            }
        };
        let mut headers = vec![first];
        for (name, v) in &self.extra_headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Unusable { detail: format!("{name:?} is not a valid HTTP header name"), advice: "fix the provider's header name".into() })?;
            headers.push((name, value(v.expose_secret(), "header value")?));
        }
        Ok(headers)
    }

    /// Puts the credential on `request` (replacing any header of the same name).
    pub fn apply(&self, request: &mut reqwest::Request) -> Result<(), Unusable> {
        for (name, value) in self.headers()? {
            request.headers_mut().insert(name, value);
        }
        Ok(())
    }

    /// The texts a response or error message must never repeat: the value, and the header
    /// value that carried it.
    pub fn sensitive(&self) -> Vec<String> {
        let secret = self.value.expose_secret().to_string();
        let mut out = vec![secret.clone()];
        match self.scheme {
            Scheme::Bearer => out.push(format!("Bearer {secret}")),
            Scheme::Basic => out.push(format!("Basic {secret}")),
            Scheme::Header(_) => {}
        }
        out.extend(self.extra_headers.iter().map(|(_, v)| v.expose_secret().to_string()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_applies_itself_to_a_request() {
        let url = reqwest::Url::parse("https://api.example.com/v1").unwrap();
        let mut r = reqwest::Request::new(reqwest::Method::GET, url.clone());
        Credential::bearer(SecretString::new("tok".into())).apply(&mut r).unwrap();
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer tok");
        assert!(r.headers()[AUTHORIZATION].is_sensitive());

        let mut r = reqwest::Request::new(reqwest::Method::GET, url.clone());
        let basic = Credential::basic("ann", &SecretString::new("p:w".into()));
        basic.apply(&mut r).unwrap();
        assert_eq!(r.headers()[AUTHORIZATION], "Basic YW5uOnA6dw==");
        assert_eq!(basic.token_type(), "Basic");

        let mut r = reqwest::Request::new(reqwest::Method::GET, url.clone());
        let mut key = Credential::header("X-API-Key", SecretString::new("k1".into()));
        key.extra_headers.push(("X-Extra".into(), SecretString::new("e".into())));
        key.apply(&mut r).unwrap();
        assert_eq!((r.headers()["x-api-key"].to_str().unwrap(), r.headers()["x-extra"].to_str().unwrap()), ("k1", "e"));
        assert_eq!(key.header_name(), Some("X-API-Key"));
        assert!(key.sensitive().contains(&"k1".to_string()));

        let bad = Credential::bearer(SecretString::new("a\nb".into()));
        assert!(bad.headers().unwrap_err().advice.contains("one line"));
        let bad = Credential::header("not a header", SecretString::new("x".into()));
        assert!(bad.headers().unwrap_err().advice.contains("X-API-Key"));
    }
}
