//! The one way connvault makes outbound HTTP calls on a user's behalf (a connection test, later
//! a provider's token endpoint). Promise 15: such calls cannot be pointed at internal addresses.
//!
//! The address check runs on the addresses actually connected to:
//! - host names go through [`GuardedResolver`], which resolves and then refuses the whole name if
//!   any of its addresses is internal (so a name that resolves to 10.0.0.1, or that is rebound to
//!   it between two lookups, never gets a connection);
//! - IP literals (which the HTTP client connects to without asking the resolver) are checked
//!   before anything is sent; the URL parser has already turned the numeric spellings of a host
//!   (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`) into the address they mean;
//! - every redirect target is checked the same way. At most [`MAX_REDIRECTS`] redirects are
//!   followed, and only within the same origin (scheme, host and port): credentials (including a
//!   key in a header of the user's choosing) never travel to another host. A redirect elsewhere
//!   is not followed; the caller gets the 3xx answer itself.
//!
//! Only http and https, no user name or password in URLs, no proxies (a proxy would connect on
//! our behalf, out of the check's reach). Time limits: [`CONNECT_TIMEOUT`] to connect,
//! [`TOTAL_TIMEOUT`] in all; at most [`MAX_BODY`] of an answer is read.
//!
//! `CONNVAULT_ALLOW_LOOPBACK=1` lets calls reach loopback (127.0.0.0/8, ::1) for tests and local
//! demos; private, link-local and every other internal range stay refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};

use crate::config::Config;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of an answer is read; the rest is dropped (see [`OutboundResponse::truncated`]).
pub const MAX_BODY: usize = 1024 * 1024;
pub const MAX_REDIRECTS: usize = 5;
pub const USER_AGENT: &str = concat!("connvault/", env!("CARGO_PKG_VERSION"));

/// What an outbound call may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A public address: allowed.
    Public,
    /// 127.0.0.0/8, ::1 (and ::ffff:127.x.y.z): allowed only with `CONNVAULT_ALLOW_LOOPBACK`.
    Loopback,
    /// Everything else that is not the public internet: always refused. The text names the range.
    Internal(&'static str),
}

fn v4_in(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn v6_in(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

/// Classifies one IPv4 address.
pub fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "\"this network\" (0.0.0.0/8)"),
        ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT (100.64.0.0/10)"),
        ([169, 254, 0, 0], 16, "link-local (169.254.0.0/16, cloud metadata)"),
        ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments (192.0.0.0/24)"),
        ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99.0/24)"),
        ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
        ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
        ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
        ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
        ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
        ([240, 0, 0, 0], 4, "reserved or broadcast (240.0.0.0/4)"),
    ];
    if ip.is_loopback() {
        return Loopback;
    }
    RANGES.iter().find(|(net, prefix, _)| v4_in(ip, *net, *prefix)).map_or(Public, |(_, _, what)| Internal(what))
}

/// Classifies one address. IPv6 forms that embed an IPv4 address are judged by that address
/// (IPv4-mapped ones keep their class; NAT64, 6to4 and IPv4-compatible forms of a non-public
/// address are internal: they are not loopback on this machine).
pub fn classify(ip: IpAddr) -> AddressClass {
    use AddressClass::*;
    let ip = match ip {
        IpAddr::V4(v4) => return classify_v4(v4),
        IpAddr::V6(v6) => v6,
    };
    if ip.is_loopback() {
        return Loopback;
    }
    if ip.is_unspecified() {
        return Internal("unspecified (::)");
    }
    let embedded = |v4: Ipv4Addr, what: &'static str| if classify_v4(v4) == Public { Public } else { Internal(what) };
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast (ff00::/8)"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local (fe80::/10)"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local (fec0::/10)"),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local (fc00::/7)"),
        ([0x0064, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use NAT64 (64:ff9b:1::/48)"),
        ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only (100::/64)"),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo tunnel (2001::/32)"),
        ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32, "documentation (2001:db8::/32)"),
        ([0x2001, 0x0010, 0, 0, 0, 0, 0, 0], 28, "ORCHID (2001:10::/28)"),
    ];
    if let Some((_, _, what)) = RANGES.iter().find(|(net, prefix, _)| v6_in(ip, *net, *prefix)) {
        return Internal(what);
    }
    if v6_in(ip, [0, 0, 0, 0, 0xffff, 0, 0, 0], 96) {
        return embedded(low32, "IPv4-translated form of an internal IPv4 address (::ffff:0:0:0/96)");
    }
    if v6_in(ip, [0x0064, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return embedded(low32, "NAT64 form of an internal IPv4 address (64:ff9b::/96)");
    }
    if v6_in(ip, [0, 0, 0, 0, 0, 0, 0, 0], 96) {
        return embedded(low32, "IPv4-compatible form of an internal IPv4 address (::/96)");
    }
    if v6_in(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return embedded(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32), "6to4 form of an internal IPv4 address (2002::/16)");
    }
    Public
}

/// Why an outbound call did not get an answer. Each message says what happened in plain words;
/// [`OutboundError::advice`] says what to do about it. No message carries a secret: requests
/// carry credentials only in headers, which no message repeats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("the URL is not valid ({0})")]
    InvalidUrl(String),
    #[error("only http:// and https:// addresses can be called, not {0}://")]
    Scheme(String),
    #[error("the URL contains a user name or password; credentials belong in the connection's secret fields")]
    Userinfo,
    #[error(
        "this address is internal ({}, {range}); outbound calls to internal addresses are refused; an operator can allow loopback for local testing \
         with CONNVAULT_ALLOW_LOOPBACK=1",
        where_is(host, addr)
    )]
    Internal { host: String, addr: IpAddr, range: String },
    #[error("the host {host} could not be found (DNS lookup failed: {message})")]
    Dns { host: String, message: String },
    #[error("{host} refused the connection (nothing is listening on that port)")]
    ConnectionRefused { host: String },
    #[error("could not connect to {host} ({message})")]
    Connect { host: String, message: String },
    #[error("the secure (TLS) connection to {host} failed ({message})")]
    Tls { host: String, message: String },
    #[error("{host} did not answer in time (connvault waits {} s to connect and {} s in all)", seconds(*connect_ms), seconds(*total_ms))]
    Timeout { host: String, connect_ms: u64, total_ms: u64 },
    #[error("the server redirected more than {0} times")]
    TooManyRedirects(usize),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the answer could not be read ({0})")]
    BadAnswer(String),
    #[error("the call failed ({0})")]
    Other(String),
}

/// 5000 → "5", 1500 → "1.5".
fn seconds(ms: u64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

/// `10.0.0.1`, or `intranet.example.com resolves to 10.0.0.1`.
fn where_is(host: &str, addr: &IpAddr) -> String {
    if host.trim_matches(['[', ']']) == addr.to_string() {
        addr.to_string()
    } else {
        format!("{host} resolves to {addr}")
    }
}

impl OutboundError {
    /// What the user (or the operator) can do about it.
    pub fn advice(&self) -> Option<String> {
        Some(match self {
            OutboundError::InvalidUrl(_) | OutboundError::Scheme(_) | OutboundError::Userinfo => {
                "correct the URL: an absolute https:// (or http://) address such as https://api.example.com".into()
            }
            OutboundError::Internal { addr, .. } => {
                let loopback = if classify(*addr) == AddressClass::Loopback {
                    "; for local testing an operator can set CONNVAULT_ALLOW_LOOPBACK=1"
                } else {
                    "; private, link-local and other internal ranges are always refused"
                };
                format!("use the service's public address (a host name that resolves to a public IP address){loopback}")
            }
            OutboundError::Dns { .. } => "check the host name in the URL for typos, and that the connvault server can resolve public DNS names".into(),
            OutboundError::ConnectionRefused { .. } => "check the port in the URL and that the service is running".into(),
            OutboundError::Connect { .. } => "check that the service is reachable from the connvault server (network, firewall)".into(),
            OutboundError::Tls { .. } => "check that the URL uses the right scheme (https:// only where the service speaks TLS) and that the service's \
                                          certificate is valid for this host name and issued by a trusted authority"
                .into(),
            OutboundError::Timeout { .. } => {
                "check that the address is reachable from the connvault server (a firewall may drop the connection) and that the service is not overloaded"
                    .into()
            }
            OutboundError::TooManyRedirects(_) => "point the URL at the final address instead of one that redirects".into(),
            OutboundError::TooLarge(_) | OutboundError::BadAnswer(_) | OutboundError::Other(_) => return None,
        })
    }

    /// Whether the call was refused by connvault itself, before anything was sent.
    pub fn is_refused(&self) -> bool {
        matches!(self, OutboundError::InvalidUrl(_) | OutboundError::Scheme(_) | OutboundError::Userinfo | OutboundError::Internal { .. })
    }
}

/// Checks one address against the policy.
pub fn check_ip(host: &str, ip: IpAddr, allow_loopback: bool) -> Result<(), OutboundError> {
    match classify(ip) {
        AddressClass::Public => Ok(()),
        AddressClass::Loopback if allow_loopback => Ok(()),
        AddressClass::Loopback => Err(OutboundError::Internal { host: host.into(), addr: ip, range: "loopback".into() }),
        AddressClass::Internal(range) => Err(OutboundError::Internal { host: host.into(), addr: ip, range: range.into() }),
    }
}

/// Checks a URL before anything is sent: scheme, no credentials, and (for IP literals, in any
/// of their spellings) the address.
pub fn check_url(url: &Url, allow_loopback: bool) -> Result<(), OutboundError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboundError::Scheme(url.scheme().into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundError::Userinfo);
    }
    match url.host() {
        None => Err(OutboundError::InvalidUrl("it names no host".into())),
        Some(url::Host::Ipv4(ip)) => check_ip(&ip.to_string(), IpAddr::V4(ip), allow_loopback),
        Some(url::Host::Ipv6(ip)) => check_ip(&ip.to_string(), IpAddr::V6(ip), allow_loopback),
        Some(url::Host::Domain(name)) => match name.trim_end_matches('.').parse::<IpAddr>() {
            // Not reached for http(s) (the parser turns these into IP hosts), kept for safety.
            Ok(ip) => check_ip(name, ip, allow_loopback),
            Err(_) => Ok(()),
        },
    }
}

/// Parses and checks a URL (see [`check_url`]).
pub fn parse_url(text: &str, allow_loopback: bool) -> Result<Url, OutboundError> {
    let url = Url::parse(text).map_err(|e| OutboundError::InvalidUrl(e.to_string()))?;
    check_url(&url, allow_loopback)?;
    Ok(url)
}

/// Resolves names with the system resolver, then refuses a name if any of its addresses is
/// internal. The addresses it returns are the ones connected to.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_loopback: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let dns = |message: String| -> Box<dyn std::error::Error + Send + Sync> { Box::new(OutboundError::Dns { host: host.clone(), message }) };
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await.map_err(|e| dns(e.to_string()))?.collect();
            if addrs.is_empty() {
                return Err(dns("no addresses".into()));
            }
            for a in &addrs {
                check_ip(&host, a.ip(), allow_loopback)?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// How an [`Outbound`] client behaves; [`OutboundOptions::from_config`] gives the defaults.
#[derive(Debug, Clone, Copy)]
pub struct OutboundOptions {
    pub allow_loopback: bool,
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    pub max_body: usize,
    /// For [`Outbound::stream`] (the proxy): the longest wait for the answer's head or the
    /// next part of a body; there is no total limit.
    pub idle_timeout: Duration,
}

impl OutboundOptions {
    pub fn from_config(config: &Config) -> OutboundOptions {
        OutboundOptions {
            allow_loopback: config.allow_loopback,
            connect_timeout: CONNECT_TIMEOUT,
            total_timeout: TOTAL_TIMEOUT,
            max_body: MAX_BODY,
            idle_timeout: config.proxy_timeout,
        }
    }
}

/// An answer, with at most `max_body` bytes of its body.
#[derive(Debug)]
pub struct OutboundResponse {
    pub status: StatusCode,
    /// Where the answer came from (after same-origin redirects).
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The body was longer than the limit and has been cut.
    pub truncated: bool,
}

impl OutboundResponse {
    /// The body as JSON; an answer that was cut is refused rather than half-parsed.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, OutboundError> {
        if self.truncated {
            return Err(OutboundError::TooLarge(self.body.len()));
        }
        serde_json::from_slice(&self.body).map_err(|e| OutboundError::BadAnswer(format!("not the JSON expected: {e}")))
    }

    /// The `Location` of a redirect that was not followed, if any.
    pub fn location(&self) -> Option<Url> {
        let value = self.headers.get(reqwest::header::LOCATION)?.to_str().ok()?;
        self.url.join(value).ok()
    }
}

/// The outbound HTTP client. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    /// The proxy's: redirects are not followed but handed to the caller, and there is no total
    /// time limit (a large download may take long), only `idle_timeout` between reads.
    streaming: reqwest::Client,
    options: OutboundOptions,
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host() == b.host() && a.port_or_known_default() == b.port_or_known_default()
}

impl Outbound {
    pub fn new(config: &Config) -> Result<Outbound, OutboundError> {
        Outbound::with_options(OutboundOptions::from_config(config))
    }

    pub fn with_options(options: OutboundOptions) -> Result<Outbound, OutboundError> {
        let allow_loopback = options.allow_loopback;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(OutboundError::TooManyRedirects(MAX_REDIRECTS));
            }
            if let Err(e) = check_url(attempt.url(), allow_loopback) {
                return attempt.error(e);
            }
            match attempt.previous().last() {
                Some(prev) if same_origin(prev, attempt.url()) => attempt.follow(),
                _ => attempt.stop(),
            }
        });
        let built = |b: reqwest::ClientBuilder| {
            b.connect_timeout(options.connect_timeout)
                .no_proxy()
                .dns_resolver(GuardedResolver { allow_loopback })
                .build()
                .map_err(|e| OutboundError::Other(format!("the HTTP client could not be set up: {}", innermost(&e))))
        };
        let client = built(reqwest::Client::builder().user_agent(USER_AGENT).timeout(options.total_timeout).redirect(redirects))?;
        let streaming = built(reqwest::Client::builder().read_timeout(options.idle_timeout).redirect(reqwest::redirect::Policy::none()))?;
        Ok(Outbound { client, streaming, options })
    }

    pub fn options(&self) -> &OutboundOptions {
        &self.options
    }

    /// Parses and checks a URL under this client's policy.
    pub fn parse_url(&self, text: &str) -> Result<Url, OutboundError> {
        parse_url(text, self.options.allow_loopback)
    }

    /// Sends `request` (built with `reqwest::Request::new`) and reads at most `max_body` bytes
    /// of the answer. Nothing is sent to a refused address.
    pub async fn send(&self, request: reqwest::Request) -> Result<OutboundResponse, OutboundError> {
        check_url(request.url(), self.options.allow_loopback)?;
        let host = request.url().host_str().unwrap_or_default().to_string();
        let mut response = self.client.execute(request).await.map_err(|e| self.explain(&host, &e))?;
        let (status, url, headers) = (response.status(), response.url().clone(), response.headers().clone());
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.explain(&host, &e))? {
            let room = self.options.max_body - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(OutboundResponse { status, url, headers, body, truncated })
    }

    /// Sends `request` and hands back the answer with its body unread, for the proxy to
    /// stream on. The same address checks as [`Outbound::send`]; redirects are not followed;
    /// the caller's `User-Agent` is kept. Errors while reading the body are the caller's to
    /// explain with [`Outbound::explain`].
    pub async fn stream(&self, request: reqwest::Request) -> Result<reqwest::Response, OutboundError> {
        check_url(request.url(), self.options.allow_loopback)?;
        let host = request.url().host_str().unwrap_or_default().to_string();
        self.streaming.execute(request).await.map_err(|e| self.explain(&host, &e))
    }

    /// Turns the client's error into a typed one, looking through its chain of causes.
    pub fn explain(&self, host: &str, e: &reqwest::Error) -> OutboundError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut timed_out = e.is_timeout();
        while let Some(c) = cause {
            if let Some(ours) = c.downcast_ref::<OutboundError>() {
                return ours.clone();
            }
            if let Some(tls) = c.downcast_ref::<rustls::Error>() {
                return OutboundError::Tls { host: host.into(), message: tls.to_string() };
            }
            // An io::Error hides what it wraps from `source()`: look inside it instead.
            let mut next = c.source();
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => return OutboundError::ConnectionRefused { host: host.into() },
                    std::io::ErrorKind::TimedOut => timed_out = true,
                    _ => {}
                }
                if let Some(inner) = io.get_ref() {
                    next = Some(inner);
                }
            }
            cause = next;
        }
        if timed_out {
            return OutboundError::Timeout {
                host: host.into(),
                connect_ms: self.options.connect_timeout.as_millis() as u64,
                total_ms: self.options.total_timeout.as_millis() as u64,
            };
        }
        if e.is_connect() {
            return OutboundError::Connect { host: host.into(), message: innermost(e) };
        }
        if e.is_body() || e.is_decode() {
            return OutboundError::BadAnswer(innermost(e));
        }
        OutboundError::Other(innermost(e))
    }
}

/// The deepest cause's message: the plain reason, without the URL that reqwest adds.
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Below this length a secret (or one of its encodings) is redacted only where it stands as a
/// word of its own: replaced inside other words, a short secret would be revealed by the
/// redaction itself (`x` turned `api.example.com` into `api.e[redacted]ample.com`).
pub const SHORT_SECRET: usize = 12;

/// `text` with each occurrence of `word` that is not part of a longer word (letters and
/// digits on neither side) replaced by `[redacted]`.
fn replace_words(text: &str, word: &str) -> String {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back().or_else(|| out.chars().next_back());
        let after = rest[at + word.len()..].chars().next();
        out.push_str(&rest[..at]);
        if alnum(before) || alnum(after) {
            out.push_str(word);
        } else {
            out.push_str("[redacted]");
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// Replaces every occurrence of each secret, and of the encodings a server might echo it back
/// in (base64, URL encoding, JSON escaping), with `[redacted]`; short ones only where they
/// stand as words of their own (see [`SHORT_SECRET`]).
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    let mut forms: Vec<String> = Vec::new();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        forms.push(s.to_string());
        forms.push(base64::engine::general_purpose::STANDARD.encode(s));
        forms.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s));
        forms.push(url::form_urlencoded::byte_serialize(s.as_bytes()).collect());
        let json = serde_json::to_string(s).unwrap_or_default().trim_matches('"').to_string();
        forms.push(json.replace('/', "\\/"));
        forms.push(json);
    }
    // Longest first, so a secret that contains another is removed whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    for f in forms.iter().filter(|f| !f.is_empty()) {
        out = if f.chars().count() < SHORT_SECRET { replace_words(&out, f) } else { out.replace(f.as_str(), "[redacted]") };
    }
    out
}

/// A short, printable excerpt of a body for a message: secrets scrubbed first (so a cut cannot
/// leave part of one), control characters and runs of white space folded, at most `max` chars.
pub fn snippet(body: &[u8], max: usize, secrets: &[&str]) -> String {
    let text = scrub(&String::from_utf8_lossy(body), secrets);
    let folded = text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    let folded = scrub(&folded, secrets);
    if folded.chars().count() <= max {
        folded
    } else {
        format!("{}…", folded.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classification_table() {
        let refused = [
            "127.0.0.1",
            "127.255.255.254",
            "::1",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "2001:db8::1",
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
        ];
        for text in refused {
            let ip: IpAddr = text.parse().unwrap();
            assert!(check_ip(text, ip, false).is_err(), "{text} must be refused");
            let loopback_allowed = check_ip(text, ip, true).is_ok();
            let is_loopback = text.starts_with("127.") || text == "::1" || text == "::ffff:127.0.0.1";
            assert_eq!(loopback_allowed, is_loopback, "{text}: only loopback is allowed with CONNVAULT_ALLOW_LOOPBACK");
        }
        for text in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(classify(ip), AddressClass::Public, "{text}");
            assert!(check_ip(text, ip, false).is_ok(), "{text} must be allowed");
        }
    }

    #[test]
    fn every_spelling_of_an_internal_host_is_refused_before_sending() {
        let refused = [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://127.1/",
            "http://127.0.1/",
            "http://017700000001/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
            "http://[64:ff9b::127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://[fd00:ec2::254]/",
            "https://10.0.0.1:8443/",
            "http://0/",
            "http://0.0.0.0:80/",
            "http://[::]/",
            "http://192.168.0.1./",
        ];
        for text in refused {
            let result = parse_url(text, false);
            assert!(matches!(result, Err(OutboundError::Internal { .. })), "{text}: {result:?}");
        }
        for (text, expected) in
            [("ftp://example.com/", "only http"), ("https://user:pw@example.com/", "user name or password"), ("file:///etc/passwd", "only http")]
        {
            let err = parse_url(text, false).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        assert!(parse_url("http://127.0.0.1:8080/", true).is_ok());
        assert!(parse_url("http://2130706433/", true).is_ok(), "loopback in any spelling, when allowed");
        assert!(parse_url("http://10.0.0.1/", true).is_err(), "private stays refused");
        assert!(parse_url("http://169.254.169.254/", true).is_err(), "link-local stays refused");
        assert!(parse_url("https://93.184.216.34/", false).is_ok());
        assert!(parse_url("https://[2606:4700::1111]/", false).is_ok());
        assert!(parse_url("https://api.example.com/v1", false).is_ok());
    }

    #[test]
    fn the_refusal_explains_itself() {
        let err = parse_url("http://169.254.169.254/", false).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("this address is internal (169.254.169.254"), "{text}");
        assert!(text.contains("CONNVAULT_ALLOW_LOOPBACK=1"), "{text}");
        assert!(err.advice().unwrap().contains("always refused"));
        let named = check_ip("intranet.example.com", "10.1.2.3".parse().unwrap(), false).unwrap_err().to_string();
        assert!(named.starts_with("this address is internal (intranet.example.com resolves to 10.1.2.3, private (10.0.0.0/8))"), "{named}");
        assert!(parse_url("http://127.0.0.1/", false).unwrap_err().advice().unwrap().contains("CONNVAULT_ALLOW_LOOPBACK=1"));
    }

    #[tokio::test]
    async fn names_that_resolve_to_internal_addresses_are_refused() {
        let resolver = GuardedResolver { allow_loopback: false };
        let err = resolver.resolve("localhost".parse().unwrap()).await.err().expect("localhost is loopback");
        assert!(err.downcast_ref::<OutboundError>().is_some_and(|e| matches!(e, OutboundError::Internal { .. })), "{err}");
        let allowed = GuardedResolver { allow_loopback: true };
        let addrs: Vec<SocketAddr> = allowed.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[test]
    fn scrub_removes_secrets_and_their_encodings() {
        let secret = "s3cr3t/tok+en";
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let text = format!("got Bearer {secret} and {b64} and s3cr3t%2Ftok%2Ben and \"s3cr3t\\/tok+en\"");
        let out = scrub(&text, &[secret]);
        assert!(!out.contains("s3cr3t") && !out.contains(&b64), "{out}");
        let long = format!("{}{secret}{}", "x".repeat(300), "y".repeat(10));
        let cut = snippet(long.as_bytes(), 305, &[secret]);
        assert!(!cut.contains("s3cr"), "a cut must not leave part of a secret: {cut}");
        assert_eq!(snippet(b"a\n\tb\x00  c", 100, &[]), "a b c");
    }

    /// A short secret is redacted where it stands alone, and never inside other words, where
    /// the redaction would show what it is (and mangle the message).
    #[test]
    fn a_short_secret_is_not_revealed_by_its_redaction() {
        let out = scrub("https://api.example.com/v1 answered 401: token x is not valid (\"x\"); x", &["x"]);
        assert_eq!(out, "https://api.example.com/v1 answered 401: token [redacted] is not valid (\"[redacted]\"); [redacted]");
        assert_eq!(scrub("pin 1234 at 12345 and a1234", &["1234"]), "pin [redacted] at 12345 and a1234");
        // Long secrets go wherever they appear, inside words too.
        assert_eq!(scrub("abcSECRET-LONG-VALUE-1xyz", &["SECRET-LONG-VALUE-1"]), "abc[redacted]xyz");
    }
}
