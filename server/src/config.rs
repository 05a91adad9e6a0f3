//! Configuration: environment variables, over an optional TOML file, over defaults.
//! Every setting is documented in the README with its default.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::SecretString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `Debug` shows no secret: the database URL (which may hold a password), the SMTP URL and the
/// master keys are secret types.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `DATABASE_URL`; PostgreSQL URLs usually carry a password.
    pub database_url: SecretString,
    /// `CONNVAULT_MASTER_KEY`: when set, the keyring comes from the environment, not a file.
    pub master_key: Option<SecretString>,
    /// `CONNVAULT_MASTER_KEY_PREVIOUS`: older keys that still open existing secrets.
    pub master_key_previous: Option<SecretString>,
    pub master_key_file: PathBuf,
    pub public_url: String,
    pub smtp_url: Option<SecretString>,
    pub smtp_from: String,
    pub allow_loopback: bool,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub db_max_connections: u32,
    pub site_addr: SocketAddr,
    /// `CONNVAULT_AUTH_FAILURE_LIMIT`: failed sign-ins and API-key attempts one client address
    /// may make within 5 minutes before it gets 429 (default 10).
    pub auth_failure_limit: usize,
    /// `CONNVAULT_ACCOUNT_FAILURE_LIMIT`: failed sign-ins to one account, from any address,
    /// within 5 minutes before further attempts get 429 (default 20).
    pub account_failure_limit: usize,
    /// `CONNVAULT_TRUSTED_PROXIES`: the proxies (addresses or CIDR ranges) whose
    /// `X-Forwarded-For` names the client; from anyone else the header is ignored (default none).
    pub trusted_proxies: Vec<(IpAddr, u8)>,
    /// `CONNVAULT_HEADER_TIMEOUT_SECS`: how long a client may take to send a request's headers
    /// (default 10).
    pub header_timeout: Duration,
    /// `CONNVAULT_REQUEST_TIMEOUT_SECS`: how long one request may take, body and answer
    /// included (default 120).
    pub request_timeout: Duration,
    /// `CONNVAULT_MAX_CONNECTIONS`: open client connections at once; more wait to be accepted
    /// (default 1024).
    pub max_connections: usize,
    /// `CONNVAULT_MAIL_PER_CONNECTION_PER_HOUR`: emails about one connection (admin requests
    /// and their resends) per hour (default 5).
    pub mail_per_connection_per_hour: u32,
    /// `CONNVAULT_MAIL_PER_PERSON_PER_HOUR`: emails one person or API key may have connvault
    /// send per hour (default 20).
    pub mail_per_person_per_hour: u32,
    /// `CONNVAULT_PROXY_MAX_REQUEST_BYTES`: the largest request body the proxy forwards
    /// (default 32 MiB); larger ones get 413 before anything is sent.
    pub proxy_max_request_bytes: u64,
    /// `CONNVAULT_PROXY_MAX_RESPONSE_BYTES`: the largest answer body the proxy passes on
    /// (default 1 GiB); a longer one is refused (502) or, once streaming, cut off.
    pub proxy_max_response_bytes: u64,
    /// `CONNVAULT_PROXY_TIMEOUT_SECS`: how long the proxy waits for the system's next bytes
    /// (its answer's head, or the next part of a body) before giving up (default 60).
    pub proxy_timeout: Duration,
}

/// The optional TOML file (`CONNVAULT_CONFIG` or `--config`). Keys are the environment
/// variables' names without the `CONNVAULT_` prefix, in lower case. The master key itself is
/// deliberately not accepted here: it lives in its own 0600 file or in the environment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    master_key_file: Option<PathBuf>,
    public_url: Option<String>,
    smtp_url: Option<String>,
    smtp_from: Option<String>,
    allow_loopback: Option<bool>,
    log_format: Option<String>,
    log: Option<String>,
    db_max_connections: Option<u32>,
    site_addr: Option<String>,
    auth_failure_limit: Option<usize>,
    account_failure_limit: Option<usize>,
    trusted_proxies: Option<String>,
    header_timeout_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    mail_per_connection_per_hour: Option<u32>,
    mail_per_person_per_hour: Option<u32>,
    proxy_max_request_bytes: Option<u64>,
    proxy_max_response_bytes: Option<u64>,
    proxy_timeout_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the configuration file {path} is not valid: {message}")]
    File { path: PathBuf, message: String },
    #[error("{name}: {message}")]
    Setting { name: &'static str, message: String },
}

fn setting(name: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Setting { name, message: message.into() }
}

/// A whole number from `range`: the environment variable `name`, else the file's value, else
/// `default`. `unit` says what it counts, for the error.
fn number<T>(env: Option<String>, file: Option<T>, default: T, name: &'static str, range: std::ops::RangeInclusive<T>, unit: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let value = match env {
        Some(v) => v.trim().parse().ok(),
        None => Some(file.unwrap_or(default)),
    };
    value.filter(|n| range.contains(n)).ok_or_else(|| setting(name, format!("expected a number from {} to {} ({unit})", range.start(), range.end())))
}

/// `CONNVAULT_TRUSTED_PROXIES`: addresses or CIDR ranges, separated by commas or spaces.
fn parse_proxies(text: &str) -> Result<Vec<(IpAddr, u8)>, ConfigError> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|p| {
            crate::ratelimit::parse_cidr(p).ok_or_else(|| {
                setting("CONNVAULT_TRUSTED_PROXIES", format!("{p:?} is not an address or CIDR range; write e.g. 10.0.0.5, 10.1.0.0/16 or fd00::/8"))
            })
        })
        .collect()
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(setting(name, format!("expected 1/0, true/false, yes/no or on/off, got {other:?}"))),
    }
}

/// The sender when CONNVAULT_SMTP_FROM is not set: `connvault <connvault@HOST>` for the public
/// URL's host name, so that replies and bounces go somewhere that is plausibly this
/// organisation's; `connvault@localhost` when the public URL is an address or a single label
/// (a development setup: mail servers refuse such senders, which says to set the variable).
fn default_from(public_url: &url::Url) -> String {
    match public_url.host() {
        Some(url::Host::Domain(host)) if host.contains('.') && !host.eq_ignore_ascii_case("localhost") => format!("connvault <connvault@{host}>"),
        _ => "connvault <connvault@localhost>".into(),
    }
}

impl Config {
    /// How many background jobs one server runs at once: half the database connections (on
    /// PostgreSQL a running job holds one for its row lock, and its work needs another).
    pub fn jobs_running_limit(&self) -> usize {
        (self.db_max_connections as usize / 2).max(1)
    }

    /// Reads the process environment and the optional file.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::from_sources(file, |name| std::env::var(name).ok())
    }

    /// `env` looks a variable up; tests pass a map instead of the real environment.
    pub fn from_sources(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let file_path = file.map(Path::to_path_buf).or_else(|| env("CONNVAULT_CONFIG").map(PathBuf::from));
        let f: FileConfig = match &file_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                toml::from_str(&text).map_err(|e| ConfigError::File { path: path.clone(), message: e.message().to_string() })?
            }
            None => FileConfig::default(),
        };

        let data_dir = env("CONNVAULT_DATA_DIR").map(PathBuf::from).or(f.data_dir).unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = env("DATABASE_URL").or(f.database_url).unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("connvault.db").display()));
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(setting("DATABASE_URL", "must start with sqlite:, postgres:// or postgresql://"));
        }
        let master_key_file = env("CONNVAULT_MASTER_KEY_FILE").map(PathBuf::from).or(f.master_key_file).unwrap_or_else(|| data_dir.join("master.key"));

        let site_addr_text = env("LEPTOS_SITE_ADDR").or(f.site_addr).unwrap_or_else(|| "127.0.0.1:3000".into());
        let site_addr: SocketAddr =
            site_addr_text.parse().map_err(|_| setting("LEPTOS_SITE_ADDR", format!("expected HOST:PORT such as 127.0.0.1:3000, got {site_addr_text:?}")))?;

        let public_url = env("CONNVAULT_PUBLIC_URL").or(f.public_url).unwrap_or_else(|| format!("http://{site_addr}"));
        let parsed = url::Url::parse(&public_url)
            .map_err(|e| setting("CONNVAULT_PUBLIC_URL", format!("{e}; expected an absolute URL such as https://vault.example.com")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(setting("CONNVAULT_PUBLIC_URL", "must be an http:// or https:// URL"));
        }

        let smtp_url = env("CONNVAULT_SMTP_URL").or(f.smtp_url);
        if let Some(u) = &smtp_url {
            let parsed =
                url::Url::parse(u).map_err(|e| setting("CONNVAULT_SMTP_URL", format!("{e}; expected smtp://host:25 or smtps://user:pass@host:465")))?;
            if !matches!(parsed.scheme(), "smtp" | "smtps") {
                return Err(setting("CONNVAULT_SMTP_URL", "must start with smtp:// or smtps://"));
            }
        }

        let allow_loopback = match env("CONNVAULT_ALLOW_LOOPBACK") {
            Some(v) => parse_bool("CONNVAULT_ALLOW_LOOPBACK", &v)?,
            None => f.allow_loopback.unwrap_or(false),
        };
        let log_format = match env("CONNVAULT_LOG_FORMAT").or(f.log_format).as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(setting("CONNVAULT_LOG_FORMAT", format!("expected text or json, got {other:?}"))),
        };
        let log_filter = env("RUST_LOG").or_else(|| env("CONNVAULT_LOG")).or(f.log).unwrap_or_else(|| "info".into());
        let db_max_connections = match env("CONNVAULT_DB_MAX_CONNECTIONS") {
            Some(v) => {
                v.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| setting("CONNVAULT_DB_MAX_CONNECTIONS", "expected a number from 1 to 1000"))?
            }
            None => f.db_max_connections.unwrap_or(10),
        };
        let auth_failure_limit = number(
            env("CONNVAULT_AUTH_FAILURE_LIMIT"),
            f.auth_failure_limit,
            10,
            "CONNVAULT_AUTH_FAILURE_LIMIT",
            1..=1_000_000,
            "failed attempts per client address per 5 minutes",
        )?;
        let account_failure_limit = number(
            env("CONNVAULT_ACCOUNT_FAILURE_LIMIT"),
            f.account_failure_limit,
            20,
            "CONNVAULT_ACCOUNT_FAILURE_LIMIT",
            1..=1_000_000,
            "failed sign-ins per account per 5 minutes",
        )?;
        let trusted_proxies = parse_proxies(&env("CONNVAULT_TRUSTED_PROXIES").or(f.trusted_proxies).unwrap_or_default())?;
        let header_timeout = number(env("CONNVAULT_HEADER_TIMEOUT_SECS"), f.header_timeout_secs, 10, "CONNVAULT_HEADER_TIMEOUT_SECS", 1..=3600, "seconds")?;
        let request_timeout =
            number(env("CONNVAULT_REQUEST_TIMEOUT_SECS"), f.request_timeout_secs, 120, "CONNVAULT_REQUEST_TIMEOUT_SECS", 1..=86_400, "seconds")?;
        let max_connections =
            number(env("CONNVAULT_MAX_CONNECTIONS"), f.max_connections, 1024, "CONNVAULT_MAX_CONNECTIONS", 1..=1_000_000, "open client connections")?;
        let mail_per_connection_per_hour = number(
            env("CONNVAULT_MAIL_PER_CONNECTION_PER_HOUR"),
            f.mail_per_connection_per_hour,
            5,
            "CONNVAULT_MAIL_PER_CONNECTION_PER_HOUR",
            1..=10_000,
            "emails about one connection per hour",
        )?;
        let mail_per_person_per_hour = number(
            env("CONNVAULT_MAIL_PER_PERSON_PER_HOUR"),
            f.mail_per_person_per_hour,
            20,
            "CONNVAULT_MAIL_PER_PERSON_PER_HOUR",
            1..=10_000,
            "emails per person or API key per hour",
        )?;
        let proxy_max_request_bytes = number(
            env("CONNVAULT_PROXY_MAX_REQUEST_BYTES"),
            f.proxy_max_request_bytes,
            32 << 20,
            "CONNVAULT_PROXY_MAX_REQUEST_BYTES",
            0..=(16 << 30),
            "bytes",
        )?;
        let proxy_max_response_bytes = number(
            env("CONNVAULT_PROXY_MAX_RESPONSE_BYTES"),
            f.proxy_max_response_bytes,
            1 << 30,
            "CONNVAULT_PROXY_MAX_RESPONSE_BYTES",
            0..=(64 << 30),
            "bytes",
        )?;
        let proxy_timeout = number(env("CONNVAULT_PROXY_TIMEOUT_SECS"), f.proxy_timeout_secs, 60, "CONNVAULT_PROXY_TIMEOUT_SECS", 1..=3600, "seconds")?;

        Ok(Config {
            data_dir,
            database_url: SecretString::new(database_url),
            master_key: env("CONNVAULT_MASTER_KEY").map(SecretString::new),
            master_key_previous: env("CONNVAULT_MASTER_KEY_PREVIOUS").map(SecretString::new),
            master_key_file,
            public_url: public_url.trim_end_matches('/').to_string(),
            smtp_url: smtp_url.map(SecretString::new),
            smtp_from: env("CONNVAULT_SMTP_FROM").or(f.smtp_from).unwrap_or_else(|| default_from(&parsed)),
            allow_loopback,
            log_format,
            log_filter,
            db_max_connections,
            site_addr,
            auth_failure_limit,
            account_failure_limit,
            trusted_proxies,
            header_timeout: Duration::from_secs(header_timeout),
            request_timeout: Duration::from_secs(request_timeout),
            max_connections,
            mail_per_connection_per_hour,
            mail_per_person_per_hour,
            proxy_max_request_bytes,
            proxy_max_response_bytes,
            proxy_timeout: Duration::from_secs(proxy_timeout),
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose_secret().starts_with("sqlite:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)], file: Option<&Path>) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_sources(file, |k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = load(&[], None).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.database_url.expose_secret(), "sqlite://./data/connvault.db?mode=rwc");
        assert_eq!((c.account_failure_limit, c.max_connections), (20, 1024));
        assert_eq!((c.header_timeout, c.request_timeout), (Duration::from_secs(10), Duration::from_secs(120)));
        assert_eq!((c.mail_per_connection_per_hour, c.mail_per_person_per_hour), (5, 20));
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.master_key_file, PathBuf::from("./data/master.key"));
        assert_eq!(c.public_url, "http://127.0.0.1:3000");
        assert!(!c.allow_loopback);
        assert!(c.smtp_url.is_none());
        assert_eq!(c.smtp_from, "connvault <connvault@localhost>");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.auth_failure_limit, 10);
        let c = load(&[("CONNVAULT_PUBLIC_URL", "https://Vault.Example.com:8443/")], None).unwrap();
        assert_eq!(c.smtp_from, "connvault <connvault@vault.example.com>");
        let c = load(&[("CONNVAULT_SMTP_FROM", "it@example.org")], None).unwrap();
        assert_eq!(c.smtp_from, "it@example.org");
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connvault.toml");
        std::fs::write(&path, "data_dir = \"/srv/cv\"\npublic_url = \"https://file.example.com/\"\nallow_loopback = true\nauth_failure_limit = 50\n").unwrap();
        let c = load(&[("CONNVAULT_PUBLIC_URL", "https://env.example.com")], Some(&path)).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/cv"));
        assert_eq!(c.master_key_file, PathBuf::from("/srv/cv/master.key"));
        assert_eq!(c.public_url, "https://env.example.com");
        assert!(c.allow_loopback);
        assert_eq!(c.auth_failure_limit, 50);
        let c = load(&[("CONNVAULT_AUTH_FAILURE_LIMIT", "1000")], Some(&path)).unwrap();
        assert_eq!(c.auth_failure_limit, 1000);
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let cases: [(&[(&str, &str)], &str); 12] = [
            (&[("CONNVAULT_TRUSTED_PROXIES", "10.0.0.1, proxy.local")], "CONNVAULT_TRUSTED_PROXIES"),
            (&[("CONNVAULT_HEADER_TIMEOUT_SECS", "0")], "CONNVAULT_HEADER_TIMEOUT_SECS"),
            (&[("CONNVAULT_REQUEST_TIMEOUT_SECS", "soon")], "CONNVAULT_REQUEST_TIMEOUT_SECS"),
            (&[("CONNVAULT_MAX_CONNECTIONS", "-1")], "CONNVAULT_MAX_CONNECTIONS"),
            (&[("CONNVAULT_MAIL_PER_PERSON_PER_HOUR", "0")], "CONNVAULT_MAIL_PER_PERSON_PER_HOUR"),
            (&[("CONNVAULT_ALLOW_LOOPBACK", "maybe")], "CONNVAULT_ALLOW_LOOPBACK"),
            (&[("CONNVAULT_AUTH_FAILURE_LIMIT", "0")], "CONNVAULT_AUTH_FAILURE_LIMIT"),
            (&[("CONNVAULT_AUTH_FAILURE_LIMIT", "many")], "CONNVAULT_AUTH_FAILURE_LIMIT"),
            (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (&[("CONNVAULT_PUBLIC_URL", "ftp://x")], "CONNVAULT_PUBLIC_URL"),
            (&[("LEPTOS_SITE_ADDR", "localhost")], "LEPTOS_SITE_ADDR"),
            (&[("CONNVAULT_SMTP_URL", "http://mail")], "CONNVAULT_SMTP_URL"),
        ];
        for (vars, name) in cases {
            let err = load(vars, None).unwrap_err().to_string();
            assert!(err.starts_with(name), "{err}");
        }
    }

    #[test]
    fn new_limits_come_from_the_environment_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "trusted_proxies = \"10.0.0.0/8 fd00::1\"\nheader_timeout_secs = 3\nmail_per_connection_per_hour = 2\n").unwrap();
        let c = load(&[("CONNVAULT_MAX_CONNECTIONS", "7"), ("CONNVAULT_ACCOUNT_FAILURE_LIMIT", "4")], Some(&path)).unwrap();
        assert_eq!(c.trusted_proxies, vec![("10.0.0.0".parse().unwrap(), 8), ("fd00::1".parse().unwrap(), 128)]);
        assert_eq!((c.header_timeout, c.max_connections, c.account_failure_limit), (Duration::from_secs(3), 7, 4));
        assert_eq!(c.mail_per_connection_per_hour, 2);
        let c = load(&[("CONNVAULT_TRUSTED_PROXIES", "192.0.2.1")], Some(&path)).unwrap();
        assert_eq!(c.trusted_proxies, vec![("192.0.2.1".parse().unwrap(), 32)]);
    }

    /// `Debug` of the whole configuration (as a careless log line would print it) shows neither
    /// the database password nor the SMTP password.
    #[test]
    fn debug_shows_no_password() {
        let c = load(
            &[
                ("DATABASE_URL", "postgres://connvault:db-hunter2@db.example.com/connvault"),
                ("CONNVAULT_SMTP_URL", "smtps://mailer:smtp-hunter2@mail.example.com:465"),
                ("CONNVAULT_MASTER_KEY", "key-hunter2"),
            ],
            None,
        )
        .unwrap();
        let text = format!("{c:?} {c:#?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("database_url"), "{text}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "master_key = \"abc\"\n").unwrap();
        let err = load(&[], Some(&path)).unwrap_err().to_string();
        assert!(err.contains("master_key"), "{err}");
    }
}
