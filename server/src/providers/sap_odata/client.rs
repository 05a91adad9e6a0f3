//! SAP OData over [`Outbound`]: the live check (`GET {service}$metadata`, the EDMX counted by a
//! small hand parser: the version and the entity sets are all it needs), the CSRF fetch for
//! writes, the client-credentials token request, and what each refusal means in SAP's terms.

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, SET_COOKIE};
use reqwest::{Method, StatusCode};

use super::{Auth, Settings};
use crate::credential::Credential;
use crate::oauth::{self, ClientAuth, Failure};
use crate::outbound::{self, Outbound, OutboundError, OutboundResponse};
use crate::providers::{Minted, Refusal, Session, TestResult};
use crate::secret::SecretString;

/// The broker answer's fields for writes.
pub const CSRF_TOKEN: &str = "csrf_token";
pub const COOKIES: &str = "cookies";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long the broker hands out one CSRF token: SAP ends an idle security session after
/// 30 minutes by default (`http/security_session_timeout`), and the token with it.
pub const SESSION_MINUTES: i64 = 15;
/// How much of an error answer a result may quote.
const SNIPPET_CHARS: usize = 200;

/// What `$metadata` says about a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// `v2`, `v3` or `v4`.
    pub version: &'static str,
    pub entity_sets: usize,
}

/// One start tag: its local name (the namespace prefix dropped) and its attribute text.
struct Tag<'a> {
    name: &'a str,
    attributes: &'a str,
    /// The text after the tag, up to the next `<`.
    text: &'a str,
}

/// The start tags of an XML document, in order; comments, CDATA, processing instructions,
/// declarations and end tags are skipped. Attribute values may hold `>` (XML allows it), so
/// a tag ends at the first `>` outside quotes. Enough to count, not a validating parser.
fn start_tags(xml: &str) -> Vec<Tag<'_>> {
    let mut tags = Vec::new();
    let mut rest = xml;
    let skip = |rest: &str, open: &str, close: &str| rest.starts_with(open).then(|| rest.find(close).map(|e| e + close.len()));
    while let Some(i) = rest.find('<') {
        rest = &rest[i..];
        if let Some(end) = skip(rest, "<!--", "-->").or_else(|| skip(rest, "<![CDATA[", "]]>")).or_else(|| skip(rest, "<?", "?>")) {
            match end {
                Some(e) => rest = &rest[e..],
                None => break,
            }
            continue;
        }
        let mut quote = None;
        let Some(end) = rest.char_indices().skip(1).find_map(|(i, c)| {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '>') => return Some(i),
                _ => {}
            }
            None
        }) else {
            break;
        };
        let inner = &rest[1..end];
        rest = &rest[end + 1..];
        if inner.starts_with('/') || inner.starts_with('!') {
            continue;
        }
        let inner = inner.strip_suffix('/').unwrap_or(inner);
        let split = inner.find(|c: char| c.is_whitespace()).unwrap_or(inner.len());
        let (name, attributes) = inner.split_at(split);
        let name = name.rsplit(':').next().unwrap_or(name);
        let text = &rest[..rest.find('<').unwrap_or(rest.len())];
        tags.push(Tag { name, attributes, text });
    }
    tags
}

/// The value of the attribute whose local name is `name`.
fn attribute<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attributes;
    loop {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let end = after[1..].find(quote)? + 1;
        if key.rsplit(':').next() == Some(name) {
            return Some(&after[1..end]);
        }
        rest = &after[end + 1..];
    }
}

/// An EDMX document's OData version and number of entity sets; `None` when the body is not
/// EDMX (its first element is not `Edmx`).
pub fn parse_edmx(body: &[u8]) -> Option<Metadata> {
    let text = String::from_utf8_lossy(body);
    let tags = start_tags(&text);
    let root = tags.first().filter(|t| t.name == "Edmx")?;
    let version = match attribute(root.attributes, "Version").unwrap_or_default() {
        v if v.starts_with('4') => "v4",
        _ => match tags.iter().find(|t| t.name == "DataServices").and_then(|t| attribute(t.attributes, "DataServiceVersion")) {
            Some(v) if v.starts_with('3') => "v3",
            _ => "v2",
        },
    };
    Some(Metadata { version, entity_sets: tags.iter().filter(|t| t.name == "EntitySet").count() })
}

/// Whether an answer is an HTML page (a sign-in page, a portal) rather than data.
pub fn is_html(response: &OutboundResponse) -> bool {
    let content_type = response.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let start: String = String::from_utf8_lossy(&response.body).trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']).chars().take(15).collect();
    let start = start.to_ascii_lowercase();
    content_type.starts_with("text/html") || start.starts_with("<!doctype html") || start.starts_with("<html")
}

/// SAP's own words in an error answer: the `message` of an OData error (XML or JSON), or the
/// `faultstring` of SAP Business Accelerator Hub's gateway.
pub fn sap_message(body: &[u8]) -> Option<String> {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let m = &json["error"]["message"];
        let text = m["value"].as_str().or(m.as_str()).or(json["fault"]["faultstring"].as_str())?;
        return Some(text.to_string());
    }
    let text = String::from_utf8_lossy(body);
    let tags = start_tags(&text);
    let message = tags.iter().find(|t| t.name == "message")?.text.trim();
    let decoded = message.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&");
    (!decoded.is_empty()).then_some(decoded)
}

/// `service_root + path` with `?sap-client=` when the connection names a client.
pub fn service_url(out: &Outbound, s: &Settings, path: &str) -> Result<reqwest::Url, OutboundError> {
    let mut url = out.parse_url(&format!("{}{path}", s.service_root))?;
    if let Some(client) = &s.sap_client {
        url.query_pairs_mut().append_pair("sap-client", client);
    }
    Ok(url)
}

/// A GET of `path` under the service root with the credential and `X-CSRF-Token: Fetch` (SAP
/// answers a token to any GET that asks): the URL called and SAP's answer, refused in SAP's
/// terms unless it is a 2xx that is not an HTML page (`instead` says what the page came
/// instead of).
async fn get_fetching_csrf(
    out: &Outbound,
    s: &Settings,
    path: &str,
    accept: &'static str,
    credential: &Credential,
    instead: &str,
) -> Result<(String, OutboundResponse), Refusal> {
    let url = service_url(out, s, path).map_err(|e| Refusal { result: e.into(), transient: false })?;
    let shown = url.to_string();
    let mut request = reqwest::Request::new(Method::GET, url);
    credential.apply(&mut request).map_err(|u| Refusal { result: TestResult::failed(u.detail, u.advice), transient: false })?;
    request.headers_mut().insert(ACCEPT, HeaderValue::from_static(accept));
    request.headers_mut().insert(CSRF_HEADER, HeaderValue::from_static("Fetch"));
    let response = out.send(request).await.map_err(|e| Refusal { transient: !e.is_refused(), result: e.into() })?;
    if !response.status.is_success() {
        return Err(refused(s, &shown, &response, &credential.sensitive().iter().map(String::as_str).collect::<Vec<_>>()));
    }
    if is_html(&response) {
        return Err(Refusal { result: sign_in_page(&shown, &format!("answered with an HTML page instead of {instead}")), transient: false });
    }
    Ok((shown, response))
}

/// The CSRF token of an answer (`None` when SAP gave none or asks for one) and the cookies it
/// set, as one `Cookie` header value.
pub fn csrf_of(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let token = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("required"));
    let cookies: Vec<&str> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next().map(str::trim))
        .filter(|c| c.split_once('=').is_some_and(|(name, _)| !name.trim().is_empty()))
        .collect();
    (token.map(str::to_string), (!cookies.is_empty()).then(|| cookies.join("; ")))
}

/// "Test connection": `GET {service}$metadata` (with sap-client) with `credential`, asking for
/// a CSRF token on the way. Host, credential and the service's activation are checked in one
/// request. `Ok` is a result that worked (it may carry advice about writes).
pub async fn check_service(out: &Outbound, s: &Settings, credential: &Credential) -> Result<TestResult, Refusal> {
    let (shown, response) = get_fetching_csrf(out, s, "$metadata", "application/xml", credential, "the service's metadata").await?;
    let Some(metadata) = parse_edmx(&response.body) else {
        let content_type = response.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("no content type").to_string();
        return Err(Refusal {
            result: TestResult::failed(
                format!(
                    "{shown} answered {} but not with OData metadata ({content_type}): {}",
                    response.status,
                    outbound::snippet(&response.body, 80, &credential.sensitive().iter().map(String::as_str).collect::<Vec<_>>())
                ),
                "set the service URL to the service root, e.g. https://host/sap/opu/odata/sap/API_BUSINESS_PARTNER/ (connvault adds $metadata)",
            ),
            transient: false,
        });
    };
    let at_least = if response.truncated { "at least " } else { "" };
    let sets =
        if metadata.entity_sets == 1 && at_least.is_empty() { "1 entity set".to_string() } else { format!("{at_least}{} entity sets", metadata.entity_sets) };
    let answers = format!("service {} answers (OData {}, {sets})", s.service_name(), metadata.version);
    Ok(match csrf_of(&response.headers) {
        (Some(_), _) => TestResult::passed(format!("{answers}; writes get a CSRF token")),
        (None, _) => TestResult {
            ok: true,
            detail: format!("{answers}; SAP sent no CSRF token, so writes will be refused with 403 unless CSRF protection is off for this service"),
            advice: Some(
                "reads work. For writes SAP must send a CSRF token to a GET with X-CSRF-Token: Fetch: check that a proxy or API gateway in front of the \
                 service passes the X-CSRF-Token header and the cookies through"
                    .into(),
            ),
        },
    })
}

/// The broker's session extras: a CSRF token and its cookies, fetched with a GET of the
/// service root. No token is not an error: a service without CSRF protection needs none.
pub async fn fetch_session(out: &Outbound, s: &Settings, credential: &Credential) -> Result<Session, Refusal> {
    let (_, response) = get_fetching_csrf(out, s, "", "application/json", credential, "a CSRF token").await?;
    let (token, cookies) = csrf_of(&response.headers);
    let mut fields = Vec::new();
    if let Some(token) = token {
        fields.push((CSRF_TOKEN, SecretString::new(token)));
        if let Some(cookies) = cookies {
            fields.push((COOKIES, SecretString::new(cookies)));
        }
    }
    Ok(Session { fields, valid_for: chrono::Duration::minutes(SESSION_MINUTES) })
}

/// An HTML page or a redirect elsewhere: single sign-on in front of the service.
fn sign_in_page(url: &str, what: &str) -> TestResult {
    TestResult::failed(
        format!("{url} {what} (a sign-in page: single sign-on stands in front of the service)"),
        "connvault cannot log on through a browser sign-in: use a communication user (basic), an API key or OAuth client credentials on the \
         service's technical endpoint (on S/4HANA Cloud the -api host, e.g. https://my300000-api.s4hana.ondemand.com), or ask the basis team to \
         exempt the service path from single sign-on",
    )
}

/// What an error status of the service means, in SAP's terms.
fn refused(s: &Settings, url: &str, response: &OutboundResponse, sensitive: &[&str]) -> Refusal {
    let status = response.status;
    let quote = match sap_message(&response.body) {
        Some(m) => format!(": {}", outbound::snippet(m.as_bytes(), SNIPPET_CHARS, sensitive)),
        None => String::new(),
    };
    let failed = |detail: String, advice: &str| Refusal { result: TestResult::failed(detail, advice), transient: false };
    if status.is_redirection() {
        let target = response.location().map(|l| l.origin().ascii_serialization()).unwrap_or_else(|| "another address".into());
        return Refusal { result: sign_in_page(url, &format!("answered {status}, redirecting to {target}")), transient: false };
    }
    match status {
        StatusCode::UNAUTHORIZED => {
            let advice = match s.auth {
                Auth::Basic => {
                    "check the user name and replace the password with the current one (a communication user's password is set in its communication \
                     system or in SU01; too many wrong passwords lock the user, and SU01 shows it)"
                }
                Auth::ApiKey => {
                    "replace the API key with the one SAP Business Accelerator Hub shows under your profile (Show API Key); it is sent in the APIKey header"
                }
                Auth::OAuth => {
                    "the token was issued but this service does not accept it: check that the token URL and client belong to the same subaccount or \
                     system as the service, and that the OAuth client is assigned to the service's communication arrangement"
                }
            };
            failed(format!("SAP refused the {} ({status}){quote}", s.auth.what()), advice)
        }
        StatusCode::FORBIDDEN => failed(
            format!("SAP accepted the {} but refused access to service {} ({status}){quote}", s.auth.what(), s.service_name()),
            "the communication arrangement or the user's role lacks this service: add the communication scenario that contains it to the \
             arrangement (S/4HANA Cloud), or give the user a role whose S_SERVICE authorization includes it (PFCG on-premise)",
        ),
        StatusCode::NOT_FOUND => failed(
            format!("{url} answered {status}: no OData service at that path{quote}"),
            "check the path of the service URL (…/sap/opu/odata/sap/SERVICE_NAME/, the name in capitals as in the API's documentation), and that the \
             basis team activated the service in transaction /IWFND/MAINT_SERVICE (on S/4HANA Cloud a communication arrangement publishes it)",
        ),
        StatusCode::TOO_MANY_REQUESTS => {
            Refusal { result: TestResult::failed(format!("SAP is limiting requests ({status}){quote}"), "wait a little, then test again"), transient: true }
        }
        code if code.is_server_error() => Refusal {
            result: TestResult::failed(
                format!("the SAP system is failing ({status}){quote}"),
                "the credentials could not be checked: test again later; the basis team finds the error in /IWFND/ERROR_LOG",
            ),
            transient: true,
        },
        _ => failed(
            format!("{url} did not accept the request ({status}){quote}"),
            "check the service URL: SAP was reached, but it does not serve a GET of the service's metadata there",
        ),
    }
}

/// One client-credentials request to the token URL, the client ID and secret as HTTP Basic
/// (as XSUAA expects), with `oauth`'s bounded retries.
pub async fn exchange(out: &Outbound, s: &Settings, secret: Option<&SecretString>) -> Result<Minted, Refusal> {
    let Some(secret) = secret else {
        return Err(Refusal {
            result: TestResult::failed("no client secret is set", "paste the OAuth client's secret (clientsecret of the service key) into this connection"),
            transient: false,
        });
    };
    match oauth::client_credentials(out, &s.token_url, &s.client_id, &[], || Ok(ClientAuth::SecretBasic(secret))).await {
        Ok(token) => Ok(Minted {
            access_token: token.access_token,
            token_type: "Bearer".into(),
            instance_url: s.service_root.clone(),
            expires_in: token.expires_in.and_then(|d| chrono::Duration::from_std(d).ok()),
            scope: token.scope,
            org_id: None,
            user_id: None,
            refresh_token: None,
        }),
        Err(f) => Err(Refusal { transient: f.is_transient(), result: explain_token_failure(s, &f) }),
    }
}

/// What a refusal of the token endpoint means.
pub fn explain_token_failure(s: &Settings, f: &Failure) -> TestResult {
    match f {
        Failure::Refused { status, error, description, .. } => {
            let said = if description.is_empty() { format!("{status} {error}") } else { format!("{status} {error}: {description}") };
            match error.as_str() {
                _ if error == "invalid_client" || *status == 401 => TestResult::failed(
                    format!("the token endpoint refused client {} or its secret ({said})", s.client_id),
                    "check the client ID and replace the client secret with the current one (clientid and clientsecret of the service key, or the \
                     OAuth 2.0 client of the communication arrangement)",
                ),
                "unauthorized_client" => TestResult::failed(
                    format!("client {} may not use the client credentials grant ({said})", s.client_id),
                    "allow the client_credentials grant type for this OAuth client (XSUAA: the service instance's oauth2-configuration grant-types)",
                ),
                "unsupported_grant_type" => TestResult::failed(
                    format!("the token endpoint does not offer client credentials ({said})"),
                    "check the token URL: it must be the OAuth 2.0 token endpoint of the service key's url (…/oauth/token)",
                ),
                _ => TestResult::failed(format!("the token endpoint refused the request ({said})"), "check the token URL, the client ID and the client secret"),
            }
        }
        Failure::Unavailable { status, attempts } => TestResult::failed(
            format!("the token endpoint is failing (HTTP {status}, {attempts} attempts)"),
            "test again later; if it persists, the identity service is down",
        ),
        Failure::Unreachable { error, .. } => {
            TestResult { ok: false, detail: format!("token URL: {error}"), advice: error.advice().or_else(|| Some("check the token URL".into())) }
        }
        Failure::Unexpected(what) => TestResult::failed(
            format!("{} did not answer like an OAuth 2.0 token endpoint ({what})", s.token_url),
            "check the token URL: XSUAA's is the service key's url plus /oauth/token, e.g. https://SUBDOMAIN.authentication.eu10.hana.ondemand.com/oauth/token",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx" xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
 <edmx:DataServices m:DataServiceVersion="2.0">
  <Schema Namespace="API_BUSINESS_PARTNER" xml:lang="en">
   <!-- <EntitySet Name="Commented"/> -->
   <EntityType Name="A_BusinessPartnerType" sap:label="Partner > Person"><Key><PropertyRef Name="BusinessPartner"/></Key></EntityType>
   <EntityContainer Name="API_BUSINESS_PARTNER_Entities" m:IsDefaultEntityContainer="true">
    <EntitySet Name="A_BusinessPartner" EntityType="API_BUSINESS_PARTNER.A_BusinessPartnerType" sap:label='a > b'/>
    <EntitySet Name="A_BusinessPartnerAddress" EntityType="API_BUSINESS_PARTNER.A_BusinessPartnerAddressType"></EntitySet>
    <EntitySetX Name="NotOne"/>
    <AssociationSet Name="assoc"/>
   </EntityContainer>
  </Schema>
 </edmx:DataServices>
</edmx:Edmx>"#;

    #[test]
    fn edmx_is_counted() {
        assert_eq!(parse_edmx(V2.as_bytes()), Some(Metadata { version: "v2", entity_sets: 2 }));
        let v4 = r#"<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0"><edmx:DataServices><Schema><EntityContainer Name="C"><EntitySet Name="A"/><Singleton Name="S"/></EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"#;
        assert_eq!(parse_edmx(v4.as_bytes()), Some(Metadata { version: "v4", entity_sets: 1 }));
        let v3 = V2.replace(r#"m:DataServiceVersion="2.0""#, r#"m:DataServiceVersion="3.0""#);
        assert_eq!(parse_edmx(v3.as_bytes()).unwrap().version, "v3");
        assert_eq!(parse_edmx(b"<html><body>Logon</body></html>"), None);
        assert_eq!(parse_edmx(b"{\"d\":{}}"), None);
        assert_eq!(parse_edmx(b""), None);
        // Cut in the middle of a tag: what is whole is counted.
        let cut = &V2[..V2.find("A_BusinessPartnerAddress").unwrap()];
        assert_eq!(parse_edmx(cut.as_bytes()).unwrap().entity_sets, 1);
    }

    #[test]
    fn attributes_are_read_by_local_name() {
        assert_eq!(attribute(r#" m:DataServiceVersion="2.0" x='y'"#, "DataServiceVersion"), Some("2.0"));
        assert_eq!(attribute(r#" a = 'q"uote' Version="4.01""#, "Version"), Some("4.01"));
        assert_eq!(attribute(r#" Version"#, "Version"), None);
    }

    #[test]
    fn sap_messages_are_found_in_xml_and_json() {
        let xml = br#"<?xml version="1.0"?><error xmlns="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"><code>/IWFND/MED/170</code><message xml:lang="en">No service found for namespace &apos;&apos;, name &apos;API_X&apos;</message></error>"#;
        assert_eq!(sap_message(xml).as_deref(), Some("No service found for namespace '', name 'API_X'"));
        assert_eq!(sap_message(br#"{"error":{"code":"X","message":{"lang":"en","value":"Nope"}}}"#).as_deref(), Some("Nope"));
        assert_eq!(sap_message(br#"{"fault":{"faultstring":"Invalid ApiKey"}}"#).as_deref(), Some("Invalid ApiKey"));
        assert_eq!(sap_message(b"plain"), None);
    }

    #[test]
    fn the_csrf_token_and_its_cookies_are_read_from_the_answer() {
        let mut h = HeaderMap::new();
        assert_eq!(csrf_of(&h), (None, None));
        h.insert(CSRF_HEADER, HeaderValue::from_static("Required"));
        assert_eq!(csrf_of(&h).0, None);
        h.insert(CSRF_HEADER, HeaderValue::from_static("tok=="));
        h.append(SET_COOKIE, HeaderValue::from_static("SAP_SESSIONID_ABC_100=s1%3d; path=/; secure; HttpOnly"));
        h.append(SET_COOKIE, HeaderValue::from_static("sap-usercontext=sap-client=100; path=/"));
        assert_eq!(csrf_of(&h), (Some("tok==".into()), Some("SAP_SESSIONID_ABC_100=s1%3d; sap-usercontext=sap-client=100".into())));
    }
}
