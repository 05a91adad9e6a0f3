//! Passphrase-encrypted backups of a whole instance (promise 12: an export that carries secrets
//! is encrypted with a passphrase, Argon2id → AES-256-GCM, the header as associated data).
//!
//! A backup file is three parts:
//!
//! ```text
//! connvault-backup\n                          the magic line
//! {"format":"connvault-backup",…}\n            the header: one line of JSON, readable
//! AES-256-GCM ciphertext of the payload + tag
//! ```
//!
//! The header names the format version, when and where the backup was made, the Argon2id
//! parameters with their random 16-byte salt, the random 12-byte nonce and the length of the
//! ciphertext. The key is Argon2id(passphrase, salt); the associated data is every byte before
//! the ciphertext (magic line and header line, exactly as written), so a changed parameter,
//! date or length fails to open just like a wrong passphrase.
//!
//! The payload (JSON) holds what a fresh instance needs to work with the same credentials:
//! environments; accounts (password hashes) and their roles; API keys (their hashes only);
//! connections with their settings and every secret in clear (managed private keys
//! included), their certificates; integrations and their bindings; webhook subscriptions with
//! their signing secrets (and the previous one during a rotation), and each environment's
//! schedule (checks, renewals). It leaves out what belongs to
//! one running instance: sessions, one-time links (setup, invitations, admin request links) and
//! the admin requests that wait on them, the outbox, the job queue and the webhook delivery log,
//! caches (minted tokens, the latest live check of each connection), the audit trail and the
//! keyring check.
//!
//! Restoring decrypts and checks the whole file before it touches the database, then writes
//! everything in one transaction, sealing each secret under the target's own current master key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aes_gcm::aead::{AeadInOut, Nonce};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};
use sqlx::Row;
use zeroize::Zeroizing;

use crate::audit::{self, Actor, Event};
use crate::config::Config;
use crate::connections::{self, Stamp};
use crate::db::{now, Backend, Db, Tx};
use crate::environments::{self, Environment};
use crate::error::{Error, FieldError, Result};
use crate::providers;
use crate::seal::Vault;
use crate::secret::SecretString;
use crate::users::Role;

/// What backups use: the database, the vault (to open and seal secrets) and the configuration
/// (the public URL recorded in a backup). Built by `Services::backup`.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub db: &'a Db,
    pub vault: &'a Vault,
    pub config: &'a Config,
}

/// The first line of every backup file.
pub const MAGIC: &[u8] = b"connvault-backup\n";
pub const FORMAT: &str = "connvault-backup";
pub const FORMAT_VERSION: i64 = 1;
pub const MIN_PASSPHRASE_CHARS: usize = 12;
pub const MAX_PASSPHRASE_BYTES: usize = 1024;
pub const SALT_LEN: usize = 16;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const MAX_HEADER_LEN: usize = 16 * 1024;
/// Bounds on what a header may ask of the key derivation (it is read before it is
/// authenticated): far above what connvault writes, low enough not to exhaust the machine.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 16;
const MAX_PARALLELISM: u32 = 16;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// What `create` uses: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 };
}

/// The header line: readable without the passphrase, authenticated with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub format_version: i64,
    pub created_at: String,
    pub source: Source,
    pub kdf: Kdf,
    pub cipher: Cipher,
}

/// Where the backup was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub public_url: String,
    /// `sqlite` or `postgresql`.
    pub database: String,
    pub connvault_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    /// `argon2id`.
    pub algorithm: String,
    /// Argon2 version 19 (0x13).
    pub version: u32,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Base64 of 16 random bytes.
    pub salt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cipher {
    /// `aes-256-gcm`.
    pub algorithm: String,
    /// Base64 of 12 random bytes.
    pub nonce: String,
    /// Bytes of ciphertext and tag after the header line.
    pub length: u64,
}

/// Why a backup file cannot be read. Each message says what to do; none repeats the passphrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    #[error("this file is not a connvault backup (it does not start with the line \"connvault-backup\")")]
    NotABackup,
    #[error("the backup file is cut short ({0}); use a complete copy of it")]
    Truncated(String),
    #[error("the backup's header is damaged or was edited ({0}); use an intact copy")]
    BadHeader(String),
    #[error(
        "this backup has format version {0}, and this connvault reads format version {FORMAT_VERSION}; restore it with the connvault release that made it"
    )]
    UnsupportedVersion(i64),
    #[error("the backup cannot be opened: the passphrase is wrong, or the file was changed or damaged after it was written. Nothing was changed")]
    WrongPassphrase,
    #[error("the backup opened, but its content is not what format version {FORMAT_VERSION} holds ({0}); nothing was changed")]
    BadPayload(String),
}

impl From<BackupError> for Error {
    fn from(e: BackupError) -> Error {
        Error::BadRequest(e.to_string())
    }
}

/// The passphrase rules, checked before any work: at least 12 characters, at most 1 KiB.
pub fn validate_passphrase(passphrase: &SecretString) -> Result<()> {
    let n = passphrase.expose_secret().chars().count();
    if n < MIN_PASSPHRASE_CHARS {
        return Err(Error::field(
            "passphrase",
            format!("a backup passphrase has at least {MIN_PASSPHRASE_CHARS} characters (a few words make a good one); this one has {n}"),
        ));
    }
    if passphrase.len() > MAX_PASSPHRASE_BYTES {
        return Err(Error::field("passphrase", format!("a backup passphrase has at most {MAX_PASSPHRASE_BYTES} bytes")));
    }
    Ok(())
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

impl Header {
    /// A header for a new backup of `length` payload bytes, with a fresh salt and nonce.
    pub fn new(source: Source, params: KdfParams, payload_len: usize) -> Header {
        Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            created_at: now(),
            source,
            kdf: Kdf {
                algorithm: "argon2id".into(),
                version: 0x13,
                memory_kib: params.memory_kib,
                iterations: params.iterations,
                parallelism: params.parallelism,
                salt: STANDARD.encode(random::<SALT_LEN>()),
            },
            cipher: Cipher { algorithm: "aes-256-gcm".into(), nonce: STANDARD.encode(random::<NONCE_LEN>()), length: (payload_len + TAG_LEN) as u64 },
        }
    }

    /// The salt and nonce, checked; and the key derivation, its parameters bounded.
    fn crypto(&self) -> Result<([u8; SALT_LEN], [u8; NONCE_LEN], argon2::Argon2<'static>), BackupError> {
        let bad = |what: String| BackupError::BadHeader(what);
        let k = &self.kdf;
        if k.algorithm != "argon2id" || k.version != 0x13 {
            return Err(bad(format!("key derivation {} version {} is not argon2id version 19", k.algorithm, k.version)));
        }
        if self.cipher.algorithm != "aes-256-gcm" {
            return Err(bad(format!("cipher {} is not aes-256-gcm", self.cipher.algorithm)));
        }
        if k.memory_kib > MAX_MEMORY_KIB || k.iterations > MAX_ITERATIONS || k.parallelism > MAX_PARALLELISM {
            return Err(bad(format!(
                "key derivation asks for {} KiB, {} passes and {} lanes; a connvault backup uses at most {MAX_MEMORY_KIB} KiB, {MAX_ITERATIONS} passes and {MAX_PARALLELISM} lanes",
                k.memory_kib, k.iterations, k.parallelism
            )));
        }
        let params = argon2::Params::new(k.memory_kib, k.iterations, k.parallelism, Some(KEY_LEN)).map_err(|e| bad(format!("argon2id parameters: {e}")))?;
        let decode = |what: &str, text: &str| STANDARD.decode(text).map_err(|_| bad(format!("the {what} is not base64")));
        let salt = decode("salt", &k.salt)?.try_into().map_err(|_| bad(format!("the salt is not {SALT_LEN} bytes")))?;
        let nonce = decode("nonce", &self.cipher.nonce)?.try_into().map_err(|_| bad(format!("the nonce is not {NONCE_LEN} bytes")))?;
        Ok((salt, nonce, argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)))
    }

    /// The header's bytes in the file: the magic line and the header line. They are the
    /// associated data of the ciphertext.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(serde_json::to_string(self).expect("a header serializes").as_bytes());
        out.push(b'\n');
        out
    }
}

fn cipher_for(passphrase: &SecretString, kdf: &argon2::Argon2<'_>, salt: &[u8]) -> Result<Aes256Gcm, BackupError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    kdf.hash_password_into(passphrase.expose_secret().as_bytes(), salt, &mut key[..]).map_err(|e| BackupError::BadHeader(format!("argon2id: {e}")))?;
    Ok(Aes256Gcm::new_from_slice(&key[..]).expect("a 32-byte key"))
}

/// Encrypts `payload` (which must have room for the tag) under `header`: the whole file.
pub fn seal_file(header: &Header, passphrase: &SecretString, mut payload: Zeroizing<Vec<u8>>) -> Result<Vec<u8>, BackupError> {
    let (salt, nonce, kdf) = header.crypto()?;
    if header.cipher.length != (payload.len() + TAG_LEN) as u64 {
        return Err(BackupError::BadHeader("the header announces another length than the payload has".into()));
    }
    let aad = header.to_bytes();
    cipher_for(passphrase, &kdf, &salt)?
        .encrypt_in_place(&Nonce::<Aes256Gcm>::from(nonce), &aad, &mut *payload)
        .expect("AES-GCM encryption of a bounded message cannot fail");
    let mut file = aad;
    file.extend_from_slice(&payload);
    Ok(file)
}

/// Reads and authenticates a backup file: the header (checked before any key is derived), then
/// the payload, decrypted with the header's bytes as associated data.
pub fn open_file(file: &[u8], passphrase: &SecretString) -> Result<(Header, Zeroizing<Vec<u8>>), BackupError> {
    let Some(rest) = file.strip_prefix(MAGIC) else {
        return Err(if MAGIC.starts_with(file) && !file.is_empty() {
            BackupError::Truncated("it ends inside its first line".into())
        } else {
            BackupError::NotABackup
        });
    };
    let Some(end) = rest.iter().take(MAX_HEADER_LEN).position(|b| *b == b'\n') else {
        return Err(if rest.len() < MAX_HEADER_LEN {
            BackupError::Truncated("it ends inside its header".into())
        } else {
            BackupError::BadHeader(format!("no end of the header line within {MAX_HEADER_LEN} bytes"))
        });
    };
    let header_line = &rest[..end];
    let loose: Value = serde_json::from_slice(header_line).map_err(|e| BackupError::BadHeader(format!("not JSON: {e}")))?;
    if loose.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(BackupError::BadHeader(format!("its format is not {FORMAT:?}")));
    }
    match loose.get("format_version").and_then(Value::as_i64) {
        Some(FORMAT_VERSION) => {}
        Some(v) => return Err(BackupError::UnsupportedVersion(v)),
        None => return Err(BackupError::BadHeader("no format_version".into())),
    }
    let header: Header = serde_json::from_value(loose).map_err(|e| BackupError::BadHeader(e.to_string()))?;
    let (salt, nonce, kdf) = header.crypto()?;
    let aad_len = MAGIC.len() + end + 1;
    let body = &file[aad_len..];
    let expected = header.cipher.length;
    if (body.len() as u64) < expected {
        return Err(BackupError::Truncated(format!("{} of its {expected} encrypted bytes are there", body.len())));
    }
    if body.len() as u64 > expected {
        return Err(BackupError::BadHeader(format!("{} bytes follow the {expected} the header announces", body.len() as u64 - expected)));
    }
    if body.len() < TAG_LEN {
        return Err(BackupError::BadHeader("the announced length is too short for any content".into()));
    }
    let mut plain = Zeroizing::new(body.to_vec());
    cipher_for(passphrase, &kdf, &salt)?
        .decrypt_in_place(&Nonce::<Aes256Gcm>::from(nonce), &file[..aad_len], &mut *plain)
        .map_err(|_| BackupError::WrongPassphrase)?;
    Ok((header, plain))
}

/// A secret value inside the payload: base64 of its text, so that neither writing nor reading
/// it leaves an unwiped copy behind (JSON escapes would go through the parser's scratch buffer).
struct BackupSecret(SecretString);

impl Serialize for BackupSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let encoded = Zeroizing::new(STANDARD.encode(self.0.expose_secret().as_bytes()));
        serializer.serialize_str(&encoded)
    }
}

impl<'de> Deserialize<'de> for BackupSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Base64Text;
        impl de::Visitor<'_> for Base64Text {
            type Value = BackupSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret value as base64 text")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<BackupSecret, E> {
                let bytes = Zeroizing::new(STANDARD.decode(v).map_err(|_| E::custom("a secret value is not base64"))?);
                SecretString::from_utf8(bytes).map(BackupSecret).ok_or_else(|| E::custom("a secret value is not UTF-8 text"))
            }
        }
        deserializer.deserialize_str(Base64Text)
    }
}

// The payload: every record by name (environment, email, connection name), never by the
// source's row ids, which mean nothing in the target.

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
struct EnvironmentRecord {
    name: String,
    position: i64,
    allow_dev_api_keys: i64,
    /// Absent from backups made before schedules: the defaults.
    #[serde(default = "default_check_hours")]
    check_every_hours: i64,
    #[serde(default)]
    renew_days_before: i64,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
struct UserRecord {
    email: String,
    /// Argon2id PHC string; none for an invitation not yet accepted.
    password_hash: Option<String>,
    is_owner: i64,
    status: String,
    last_sign_in_at: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
struct RoleRecord {
    user: String,
    environment: String,
    role: String,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
struct ApiKeyRecord {
    name: String,
    prefix: String,
    /// SHA-256 of the key: the key itself was never stored.
    key_hash: String,
    grants: String,
    allowed_addresses: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
    created_by: String,
    /// The email of the account that made it, if a person did.
    created_by_user: Option<String>,
    /// The prefix of the key that made it, if a key did (listed before it).
    #[serde(default)]
    parent: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
struct ConnectionRecord {
    environment: String,
    name: String,
    provider: String,
    /// The stored JSON object, as stored.
    settings: String,
    created_by: String,
    updated_by: String,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRecord {
    environment: String,
    connection: String,
    field: String,
    value: BackupSecret,
    set_by: String,
    set_at: String,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
struct CertificateRecord {
    environment: String,
    connection: String,
    state: String,
    origin: String,
    certificate_pem: String,
    fingerprint: String,
    bits: i64,
    not_after: String,
    created_by: String,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
struct IntegrationRecord {
    environment: String,
    name: String,
    provider: String,
    objects: String,
    description: Option<String>,
    version: Option<String>,
    /// The bound connection (same environment), if bound.
    connection: Option<String>,
    bound_by: Option<String>,
    bound_at: Option<String>,
    created_by: String,
    updated_by: String,
    created_at: String,
    updated_at: String,
}

fn default_check_hours() -> i64 {
    6
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookRecord {
    environment: String,
    url: String,
    description: String,
    /// JSON list, as stored.
    event_types: String,
    enabled: i64,
    disabled_reason: Option<String>,
    secret: BackupSecret,
    /// During a rotation: the previous secret, which signs too until `previous_until`.
    previous_secret: Option<BackupSecret>,
    previous_until: Option<String>,
    created_by: String,
    /// The email of the account that made it, if a person did.
    created_by_user: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    environments: Vec<EnvironmentRecord>,
    users: Vec<UserRecord>,
    roles: Vec<RoleRecord>,
    api_keys: Vec<ApiKeyRecord>,
    connections: Vec<ConnectionRecord>,
    secrets: Vec<SecretRecord>,
    certificates: Vec<CertificateRecord>,
    integrations: Vec<IntegrationRecord>,
    /// Absent from backups made before webhooks.
    #[serde(default)]
    webhooks: Vec<WebhookRecord>,
}

/// How much a backup holds (or a database held).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub environments: usize,
    pub users: usize,
    pub api_keys: usize,
    pub connections: usize,
    pub secrets: usize,
    pub certificates: usize,
    pub integrations: usize,
    pub bindings: usize,
    pub webhooks: usize,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {}, {} with {}, {}, {} ({} bound), {}",
            plural(self.environments, "environment", "environments"),
            plural(self.users, "account", "accounts"),
            plural(self.api_keys, "API key", "API keys"),
            plural(self.connections, "connection", "connections"),
            plural(self.secrets, "secret", "secrets"),
            plural(self.certificates, "certificate", "certificates"),
            plural(self.integrations, "integration", "integrations"),
            self.bindings,
            plural(self.webhooks, "webhook", "webhooks"),
        )
    }
}

impl Payload {
    fn counts(&self) -> Counts {
        Counts {
            environments: self.environments.len(),
            users: self.users.len(),
            api_keys: self.api_keys.len(),
            connections: self.connections.len(),
            secrets: self.secrets.len(),
            certificates: self.certificates.len(),
            integrations: self.integrations.len(),
            bindings: self.integrations.iter().filter(|i| i.connection.is_some()).count(),
            webhooks: self.webhooks.len(),
        }
    }

    /// The payload as JSON in a buffer sized once (with room for the tag), so that no copy of
    /// the plaintext is left behind by a reallocation.
    fn to_plaintext(&self) -> Result<Zeroizing<Vec<u8>>> {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0 += b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let fail = |e: serde_json::Error| Error::Internal(format!("backup payload: {e}"));
        let mut count = Count(0);
        serde_json::to_writer(&mut count, self).map_err(fail)?;
        let mut buffer = Zeroizing::new(Vec::with_capacity(count.0 + TAG_LEN));
        serde_json::to_writer(&mut *buffer, self).map_err(fail)?;
        Ok(buffer)
    }
}

/// A new backup file and what it holds.
pub struct Created {
    pub file: Vec<u8>,
    pub header: Header,
    pub counts: Counts,
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Internal(format!("backup encryption stopped: {e}")))
}

/// Makes a backup of the whole instance with the default key-derivation parameters.
pub async fn create(s: Handles<'_>, actor: &Actor, passphrase: &SecretString) -> Result<Created> {
    create_with(s, actor, passphrase, KdfParams::DEFAULT).await
}

/// Makes a backup of the whole instance: everything is read in one consistent snapshot, each
/// secret opened in memory, the payload encrypted; then the backup is audited (if the audit
/// event cannot be written, no backup is returned).
pub async fn create_with(s: Handles<'_>, actor: &Actor, passphrase: &SecretString, params: KdfParams) -> Result<Created> {
    validate_passphrase(passphrase)?;
    let payload = read_payload(s).await?;
    let counts = payload.counts();
    let plaintext = payload.to_plaintext()?;
    drop(payload);
    let source = Source {
        public_url: s.config.public_url.clone(),
        database: match s.db.backend() {
            Backend::Sqlite => "sqlite".into(),
            Backend::Postgres => "postgresql".into(),
        },
        connvault_version: env!("CARGO_PKG_VERSION").into(),
    };
    let header = Header::new(source, params, plaintext.len());
    let (for_work, passphrase) = (header.clone(), passphrase.clone());
    let file = blocking(move || seal_file(&for_work, &passphrase, plaintext)).await??;
    audit::record_alone(
        &s.db,
        actor,
        Event::new("backup.create").detail(json!({
            "format_version": FORMAT_VERSION,
            "bytes": file.len(),
            "contents": counts,
            "kdf": {"algorithm": "argon2id", "memory_kib": params.memory_kib, "iterations": params.iterations, "parallelism": params.parallelism},
        })),
    )
    .await?;
    Ok(Created { file, header, counts })
}

async fn read_payload(s: Handles<'_>) -> Result<Payload> {
    let mut tx = s.db.begin().await?;
    if s.db.backend() == Backend::Postgres {
        // One snapshot for every query below (SQLite's read transaction is one already).
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    }
    let environments = sqlx::query_as(
        "SELECT name, position, allow_dev_api_keys, check_every_hours, renew_days_before, created_at, updated_at FROM environments ORDER BY position, id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let users = sqlx::query_as("SELECT email, password_hash, is_owner, status, last_sign_in_at, created_at, updated_at FROM users ORDER BY email_key")
        .fetch_all(&mut *tx)
        .await?;
    let roles = sqlx::query_as(
        "SELECT u.email AS user, e.name AS environment, r.role, r.created_at, r.updated_at FROM user_roles r \
         JOIN users u ON u.id = r.user_id JOIN environments e ON e.id = r.environment_id ORDER BY u.email_key, e.position",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut api_keys: Vec<ApiKeyRecord> = sqlx::query_as(
        "SELECT k.name, k.prefix, k.key_hash, k.grants, k.allowed_addresses, k.expires_at, k.last_used_at, k.revoked_at, k.created_by, \
         u.email AS created_by_user, pk.prefix AS parent, k.created_at, k.updated_at FROM api_keys k LEFT JOIN users u ON u.id = k.created_by_user_id \
         LEFT JOIN api_keys pk ON pk.id = k.parent_id ORDER BY k.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    // Grants hold environment ids, which mean nothing in the target: the backup names them.
    let env_ids: Vec<Environment> = sqlx::query("SELECT id, name FROM environments")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| -> Result<Environment> {
            Ok(Environment {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                position: 0,
                allow_dev_api_keys: false,
                created_at: String::new(),
                updated_at: String::new(),
            })
        })
        .collect::<Result<_>>()?;
    for k in &mut api_keys {
        k.grants = crate::api_keys::grants_by_name(&k.grants, &env_ids)?;
    }
    let connections = sqlx::query_as(
        "SELECT e.name AS environment, c.name, c.provider, c.settings, c.created_by, c.updated_by, c.created_at, c.updated_at \
         FROM connections c JOIN environments e ON e.id = c.environment_id ORDER BY e.position, c.name_key",
    )
    .fetch_all(&mut *tx)
    .await?;
    let certificates = sqlx::query_as(
        "SELECT e.name AS environment, c.name AS connection, s.state, s.origin, s.certificate_pem, s.fingerprint, s.bits, s.not_after, \
         s.created_by, s.created_at, s.updated_at FROM certificates s JOIN connections c ON c.id = s.connection_id \
         JOIN environments e ON e.id = c.environment_id ORDER BY e.position, c.name_key, s.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let integrations = sqlx::query_as(
        "SELECT e.name AS environment, i.name, i.provider, i.objects, i.description, i.version, c.name AS connection, i.bound_by, i.bound_at, \
         i.created_by, i.updated_by, i.created_at, i.updated_at FROM integrations i JOIN environments e ON e.id = i.environment_id \
         LEFT JOIN connections c ON c.id = i.connection_id ORDER BY e.position, i.name_key",
    )
    .fetch_all(&mut *tx)
    .await?;
    let sealed = sqlx::query(
        "SELECT e.id AS environment_id, e.name AS environment, c.id AS connection_id, c.name AS connection, c.provider, s.field, s.blob, \
         s.set_by, s.updated_at FROM connection_secrets s JOIN connections c ON c.id = s.connection_id JOIN environments e ON e.id = c.environment_id \
         ORDER BY e.position, c.name_key, s.field",
    )
    .fetch_all(&mut *tx)
    .await?;
    let hooks = sqlx::query(
        "SELECT w.id, w.environment_id, e.name AS environment, w.url, w.description, w.event_types, w.enabled, w.disabled_reason, w.sealed_secret, \
         w.sealed_previous, w.previous_until, w.created_by, u.email AS created_by_user, w.created_at, w.updated_at FROM webhooks w \
         JOIN environments e ON e.id = w.environment_id LEFT JOIN users u ON u.id = w.created_by_user ORDER BY e.position, w.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.rollback().await?;

    let mut webhooks = Vec::with_capacity(hooks.len());
    for r in &hooks {
        let (id, environment_id, environment): (i64, i64, String) = (r.try_get("id")?, r.try_get("environment_id")?, r.try_get("environment")?);
        let url: String = r.try_get("url")?;
        let open = |field: &str, blob: &[u8]| {
            s.vault.open_text(&crate::webhooks::place(id, field, environment_id), blob).map_err(|e| Error::Conflict {
                code: "secret_integrity",
                message: format!("the signing secret of the webhook to {url} in {environment} cannot be opened ({e}); no backup was made. Rotate its secret, then make the backup"),
            })
        };
        let secret = BackupSecret(open("secret", &r.try_get::<Vec<u8>, _>("sealed_secret")?)?);
        let previous_until: Option<String> = r.try_get("previous_until")?;
        let previous_secret = match r.try_get::<Option<Vec<u8>>, _>("sealed_previous")? {
            Some(blob) if previous_until.as_deref().is_some_and(|u| u > now().as_str()) => Some(BackupSecret(open("previous", &blob)?)),
            _ => None,
        };
        webhooks.push(WebhookRecord {
            previous_until: previous_secret.as_ref().and(previous_until),
            environment,
            url,
            description: r.try_get("description")?,
            event_types: r.try_get("event_types")?,
            enabled: r.try_get("enabled")?,
            disabled_reason: r.try_get("disabled_reason")?,
            secret,
            previous_secret,
            created_by: r.try_get("created_by")?,
            created_by_user: r.try_get("created_by_user")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        });
    }

    let mut secrets = Vec::with_capacity(sealed.len());
    for r in &sealed {
        let provider: String = r.try_get("provider")?;
        let field: String = r.try_get("field")?;
        // Caches (a minted token) are minted again by the restored instance.
        if providers::get(&provider).is_some_and(|p| p.cached_secrets.contains(&field.as_str())) {
            continue;
        }
        let (environment, connection): (String, String) = (r.try_get("environment")?, r.try_get("connection")?);
        let (environment_id, connection_id): (i64, i64) = (r.try_get("environment_id")?, r.try_get("connection_id")?);
        let blob: Vec<u8> = r.try_get("blob")?;
        let value = match s.vault.open_text(&connections::place(connection_id, &field, environment_id), &blob) {
            Ok(v) => v,
            Err(e) => {
                connections::integrity_failure(&s.db, (environment_id, &environment), &connection, &field, &e).await?;
                return Err(Error::Conflict {
                    code: "secret_integrity",
                    message: format!(
                        "secret {field} of connection {connection} in {environment} cannot be opened ({e}); no backup was made. Set that secret again, then make the backup"
                    ),
                });
            }
        };
        secrets.push(SecretRecord {
            environment,
            connection,
            field,
            value: BackupSecret(value),
            set_by: r.try_get("set_by")?,
            set_at: r.try_get("updated_at")?,
        });
    }
    Ok(Payload { environments, users, roles, api_keys, connections, secrets, certificates, integrations, webhooks })
}

/// A decrypted, checked backup, ready to be restored. Its secrets are wiped when it is dropped.
pub struct Backup {
    pub header: Header,
    pub counts: Counts,
    payload: Payload,
}

impl fmt::Debug for Backup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backup").field("header", &self.header).field("counts", &self.counts).finish_non_exhaustive()
    }
}

/// Decrypts and checks a backup file without touching any database: the passphrase rules, the
/// header, the authentication of header and payload, and every record and reference in it.
pub async fn decrypt(file: Vec<u8>, passphrase: &SecretString) -> Result<Backup> {
    validate_passphrase(passphrase)?;
    let passphrase = passphrase.clone();
    let (header, plaintext) = blocking(move || open_file(&file, &passphrase)).await??;
    let payload: Payload = serde_json::from_slice(&plaintext).map_err(|e| BackupError::BadPayload(e.to_string()))?;
    drop(plaintext);
    check(&payload)?;
    Ok(Backup { header, counts: payload.counts(), payload })
}

/// Key of a name that matches without case.
fn key(name: &str) -> String {
    name.to_lowercase()
}

/// Every record valid, every name unique where the database wants it, every reference resolved.
fn check(p: &Payload) -> Result<()> {
    let mut errors = Vec::new();
    let mut fail = |path: String, message: String| errors.push(FieldError::new(path, message));
    let mut envs = BTreeSet::new();
    if p.environments.is_empty() {
        fail("environments".into(), "a backup holds at least one environment".into());
    }
    for (i, e) in p.environments.iter().enumerate() {
        if let Err(Error::Validation(list)) = environments::validate_name("name", &e.name) {
            list.into_iter().for_each(|x| fail(format!("environments[{i}].name"), x.message));
        }
        if !envs.insert(key(&e.name)) {
            fail(format!("environments[{i}].name"), format!("{} is listed twice", e.name));
        }
    }
    let mut users = BTreeSet::new();
    for (i, u) in p.users.iter().enumerate() {
        if !users.insert(key(&u.email)) {
            fail(format!("users[{i}].email"), format!("{} is listed twice", u.email));
        }
        if !matches!(u.status.as_str(), "active" | "deactivated") {
            fail(format!("users[{i}].status"), format!("{:?} is not active or deactivated", u.status));
        }
    }
    for (i, r) in p.roles.iter().enumerate() {
        if !users.contains(&key(&r.user)) {
            fail(format!("roles[{i}].user"), format!("no account {} in the backup", r.user));
        }
        if !envs.contains(&key(&r.environment)) {
            fail(format!("roles[{i}].environment"), format!("no environment {} in the backup", r.environment));
        }
        if Role::parse(&r.role).is_none() {
            fail(format!("roles[{i}].role"), format!("{:?} is not administrator, developer or viewer", r.role));
        }
    }
    let mut prefixes = BTreeSet::new();
    for (i, k) in p.api_keys.iter().enumerate() {
        if !prefixes.insert(k.prefix.as_str()) {
            fail(format!("api_keys[{i}].prefix"), format!("{} is listed twice", k.prefix));
        }
        for (field, text) in [("grants", &k.grants), ("allowed_addresses", &k.allowed_addresses)] {
            if !matches!(serde_json::from_str(text), Ok(Value::Array(_))) {
                fail(format!("api_keys[{i}].{field}"), "is not a JSON list".into());
            }
        }
        if let Ok(grants) = serde_json::from_str::<Vec<crate::api_keys::Grant>>(&k.grants) {
            for g in grants.iter().filter(|g| g.environment != "*" && !envs.contains(&key(&g.environment))) {
                fail(format!("api_keys[{i}].grants"), format!("no environment {} in the backup", g.environment));
            }
        } else {
            fail(format!("api_keys[{i}].grants"), "is not a list of grants {environment, resource, access}".into());
        }
        if let Some(parent) = &k.parent {
            if !prefixes.contains(parent.as_str()) || parent == &k.prefix {
                fail(format!("api_keys[{i}].parent"), format!("{parent} is not a key listed before this one"));
            }
        }
    }
    // Connections by (environment, name) → provider.
    let mut conns: BTreeMap<(String, String), &str> = BTreeMap::new();
    for (i, c) in p.connections.iter().enumerate() {
        if !envs.contains(&key(&c.environment)) {
            fail(format!("connections[{i}].environment"), format!("no environment {} in the backup", c.environment));
        }
        if !connections::is_valid_name(&c.name) {
            fail(format!("connections[{i}].name"), format!("{:?} is not a connection name", c.name));
        }
        if providers::get(&c.provider).is_none() {
            fail(format!("connections[{i}].provider"), format!("unknown provider {:?}; this connvault knows {}", c.provider, providers::ids().join(", ")));
        }
        if !matches!(serde_json::from_str::<Value>(&c.settings), Ok(Value::Object(_))) {
            fail(format!("connections[{i}].settings"), "is not a JSON object".into());
        }
        if conns.insert((key(&c.environment), key(&c.name)), &c.provider).is_some() {
            fail(format!("connections[{i}].name"), format!("{} is listed twice in {}", c.name, c.environment));
        }
    }
    let known = |env: &str, name: &str| conns.get(&(key(env), key(name))).copied();
    let mut fields = BTreeSet::new();
    for (i, s) in p.secrets.iter().enumerate() {
        if known(&s.environment, &s.connection).is_none() {
            fail(format!("secrets[{i}].connection"), format!("no connection {} in {} in the backup", s.connection, s.environment));
        }
        if s.field.is_empty() || s.value.0.is_empty() {
            fail(format!("secrets[{i}]"), "a secret has a field name and a value".into());
        }
        if !fields.insert((key(&s.environment), key(&s.connection), s.field.as_str())) {
            fail(format!("secrets[{i}].field"), format!("{} of {} is listed twice", s.field, s.connection));
        }
    }
    for (i, c) in p.certificates.iter().enumerate() {
        if known(&c.environment, &c.connection).is_none() {
            fail(format!("certificates[{i}].connection"), format!("no connection {} in {} in the backup", c.connection, c.environment));
        }
    }
    let mut integrations = BTreeSet::new();
    for (i, it) in p.integrations.iter().enumerate() {
        if !envs.contains(&key(&it.environment)) {
            fail(format!("integrations[{i}].environment"), format!("no environment {} in the backup", it.environment));
        }
        if !connections::is_valid_name(&it.name) {
            fail(format!("integrations[{i}].name"), format!("{:?} is not an integration name", it.name));
        }
        if !integrations.insert((key(&it.environment), key(&it.name))) {
            fail(format!("integrations[{i}].name"), format!("{} is listed twice in {}", it.name, it.environment));
        }
        if !matches!(serde_json::from_str(&it.objects), Ok(Value::Array(_))) {
            fail(format!("integrations[{i}].objects"), "is not a JSON list".into());
        }
        if let Some(c) = &it.connection {
            match known(&it.environment, c) {
                None => fail(format!("integrations[{i}].connection"), format!("no connection {c} in {} in the backup", it.environment)),
                Some(provider) if provider != it.provider => {
                    fail(format!("integrations[{i}].connection"), format!("{c} is a {provider} connection, the integration a {} one", it.provider))
                }
                Some(_) => {}
            }
        }
    }
    for (i, w) in p.webhooks.iter().enumerate() {
        if !envs.contains(&key(&w.environment)) {
            fail(format!("webhooks[{i}].environment"), format!("no environment {} in the backup", w.environment));
        }
        if !matches!(serde_json::from_str(&w.event_types), Ok(Value::Array(_))) {
            fail(format!("webhooks[{i}].event_types"), "is not a JSON list".into());
        }
        if !w.secret.0.expose_secret().starts_with("whsec_") {
            fail(format!("webhooks[{i}].secret"), "is not a whsec_ signing secret".into());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub header: Header,
    pub counts: Counts,
    /// What the target held before (replaced, or nothing but its starting environments).
    pub replaced: Counts,
    /// The master key every secret is now sealed with.
    pub key_id: String,
}

/// Decrypts and checks `file` first (a wrong passphrase, a damaged or edited file, an unknown
/// version: an error, and nothing written), then restores it; see [`apply`].
pub async fn restore(s: Handles<'_>, actor: &Actor, file: Vec<u8>, passphrase: &SecretString, replace: bool) -> Result<Restored> {
    let backup = decrypt(file, passphrase).await?;
    apply(s, actor, &backup, replace).await
}

/// Writes a decrypted backup into this instance's database in one transaction, each secret
/// sealed under this instance's current master key, with its audit event. A database that holds
/// connections, integrations, accounts or API keys is refused unless `replace`: then all of
/// them (and the environments, sessions and one-time links) are replaced. The audit trail and
/// the outbox stay as they are.
pub async fn apply(s: Handles<'_>, actor: &Actor, backup: &Backup, replace: bool) -> Result<Restored> {
    let p = &backup.payload;
    let mut tx = s.db.begin().await?;
    // Take the write lock first, so that the emptiness check below stays true until the commit.
    match s.db.backend() {
        Backend::Postgres => {
            sqlx::query("LOCK TABLE environments, users, api_keys, connections, integrations, one_time_links IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        }
        Backend::Sqlite => {
            sqlx::query("DELETE FROM one_time_links").execute(&mut *tx).await?;
        }
    }
    let held = held(&mut tx).await?;
    let occupied = held.connections + held.integrations + held.users + held.api_keys > 0;
    if occupied && !replace {
        return Err(Error::Conflict {
            code: "target_not_empty",
            message: format!(
                "this database already holds {}, {}, {} and {}; nothing was changed. Restore into an empty database, or replace everything it holds with --replace (the audit trail stays)",
                plural(held.connections, "connection", "connections"),
                plural(held.integrations, "integration", "integrations"),
                plural(held.users, "account", "accounts"),
                plural(held.api_keys, "API key", "API keys"),
            ),
        });
    }
    for table in [
        "one_time_links",
        "webhook_attempts",
        "webhook_deliveries",
        "webhooks",
        "jobs",
        "health_schedule",
        "expiry_warnings",
        "integrations",
        "connection_secrets",
        "connection_health",
        "tokens",
        "admin_requests",
        "certificates",
        "connections",
        "user_roles",
        "sessions",
        "users",
        "api_keys",
        "environments",
    ] {
        // `table` is one of the constants above.
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}"))).execute(&mut *tx).await?;
    }

    let mut envs: BTreeMap<String, Environment> = BTreeMap::new();
    for e in &p.environments {
        let id = insert(&mut tx, "environments", row_of(e, &[], [("name_key", name_key(&e.name))])?).await?;
        let env = Environment {
            id,
            name: e.name.clone(),
            position: e.position,
            allow_dev_api_keys: e.allow_dev_api_keys != 0,
            created_at: e.created_at.clone(),
            updated_at: e.updated_at.clone(),
        };
        envs.insert(key(&e.name), env);
    }
    let env = |name: &str| envs.get(&key(name)).expect("checked: every environment named is in the backup");
    let mut users: BTreeMap<String, i64> = BTreeMap::new();
    for u in &p.users {
        users.insert(key(&u.email), insert(&mut tx, "users", row_of(u, &[], [("email_key", name_key(&u.email))])?).await?);
    }
    for r in &p.roles {
        let ids = [("user_id", Val::Int(users[&key(&r.user)])), ("environment_id", Val::Int(env(&r.environment).id))];
        insert(&mut tx, "user_roles", row_of(r, &["user", "environment"], ids)?).await?;
    }
    let mut key_ids: BTreeMap<String, i64> = BTreeMap::new();
    for k in &p.api_keys {
        let by = k.created_by_user.as_deref().and_then(|email| users.get(&key(email)).copied());
        let parent = k.parent.as_deref().and_then(|prefix| key_ids.get(prefix).copied());
        let grants = crate::api_keys::grants_by_id(&k.grants, |name| envs.get(&key(name)).map(|e| e.id))?;
        let columns = [("created_by_user_id", Val::MaybeInt(by)), ("parent_id", Val::MaybeInt(parent)), ("grants", Val::Text(grants))];
        let id = insert(&mut tx, "api_keys", row_of(k, &["created_by_user", "parent", "grants"], columns)?).await?;
        key_ids.insert(k.prefix.clone(), id);
    }
    // Connection ids by (environment, name).
    let mut conns: BTreeMap<(String, String), i64> = BTreeMap::new();
    for c in &p.connections {
        let columns = [("environment_id", Val::Int(env(&c.environment).id)), ("name_key", name_key(&c.name))];
        conns.insert((key(&c.environment), key(&c.name)), insert(&mut tx, "connections", row_of(c, &["environment"], columns)?).await?);
    }
    let conn = |env: &str, name: &str| conns[&(key(env), key(name))];
    for secret in &p.secrets {
        let stamp = Stamp { by: &secret.set_by, at: &secret.set_at };
        let id = conn(&secret.environment, &secret.connection);
        connections::store_secret(&mut tx, &s.vault, env(&secret.environment), id, &secret.field, &secret.value.0, &stamp).await?;
    }
    for c in &p.certificates {
        let id = [("connection_id", Val::Int(conn(&c.environment, &c.connection)))];
        insert(&mut tx, "certificates", row_of(c, &["environment", "connection"], id)?).await?;
    }
    for i in &p.integrations {
        let columns = [
            ("environment_id", Val::Int(env(&i.environment).id)),
            ("name_key", name_key(&i.name)),
            ("connection_id", Val::MaybeInt(i.connection.as_deref().map(|c| conn(&i.environment, c)))),
        ];
        insert(&mut tx, "integrations", row_of(i, &["environment", "connection"], columns)?).await?;
    }
    let keyring = s.vault.keyring();
    let current = keyring.current();
    for w in &p.webhooks {
        let environment = env(&w.environment).id;
        let by = w.created_by_user.as_deref().and_then(|email| users.get(&key(email)).copied());
        let id: i64 = sqlx::query(
            "INSERT INTO webhooks (environment_id, url, description, event_types, enabled, disabled_reason, sealed_secret, previous_until, key_id, \
             created_by, created_by_user, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(environment)
        .bind(&w.url)
        .bind(&w.description)
        .bind(&w.event_types)
        .bind(w.enabled)
        .bind(&w.disabled_reason)
        .bind(Vec::<u8>::new())
        .bind(&w.previous_until)
        .bind(current.id().to_string())
        .bind(&w.created_by)
        .bind(by)
        .bind(&w.created_at)
        .bind(&w.updated_at)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        let seal = |field: &str, secret: &SecretString| {
            crate::seal::seal_with(current, &crate::webhooks::place(id, field, environment), secret.expose_secret().as_bytes())
        };
        sqlx::query("UPDATE webhooks SET sealed_secret = $1, sealed_previous = $2 WHERE id = $3")
            .bind(seal("secret", &w.secret.0))
            .bind(w.previous_secret.as_ref().map(|p| seal("previous", &p.0)))
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let key_id = s.vault.current_key_id().to_string();
    let h = &backup.header;
    audit::record(
        &mut tx,
        actor,
        Event::new("backup.restore").detail(json!({
            "backup_created_at": h.created_at,
            "source": h.source,
            "replace": replace,
            "replaced": held,
            "restored": backup.counts,
            "key_id": key_id,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(Restored { header: backup.header.clone(), counts: backup.counts, replaced: held, key_id })
}

/// A value to insert, with its type (PostgreSQL wants to know the type of a NULL too).
enum Val {
    Text(String),
    NullText,
    Int(i64),
    MaybeInt(Option<i64>),
}

/// The key of a name that matches without case (`name_key`, `email_key`).
fn name_key(name: &str) -> Val {
    Val::Text(key(name))
}

/// A payload record as the row it restores: its fields are named like the columns, except
/// `references` (names of other records), which the caller gives as ids among `extra` columns.
fn row_of<T: Serialize, const N: usize>(record: &T, references: &[&str], extra: [(&str, Val); N]) -> Result<Vec<(String, Val)>> {
    let Ok(Value::Object(fields)) = serde_json::to_value(record) else {
        return Err(Error::Internal("a backup record is not a JSON object".into()));
    };
    let mut row: Vec<(String, Val)> = extra.into_iter().map(|(column, value)| (column.to_string(), value)).collect();
    for (column, value) in fields.into_iter().filter(|(field, _)| !references.contains(&field.as_str())) {
        let value = match value {
            Value::String(text) => Val::Text(text),
            Value::Null => Val::NullText,
            Value::Number(n) if n.is_i64() => Val::Int(n.as_i64().unwrap_or_default()),
            other => return Err(Error::Internal(format!("backup field {column} holds {other}, which no column takes"))),
        };
        row.push((column, value));
    }
    Ok(row)
}

/// `INSERT INTO table (columns…) VALUES ($1, …) RETURNING id`.
async fn insert(tx: &mut Tx<'_>, table: &str, row: Vec<(String, Val)>) -> Result<i64> {
    let columns: Vec<&str> = row.iter().map(|(column, _)| column.as_str()).collect();
    let params: Vec<String> = (1..=row.len()).map(|n| format!("${n}")).collect();
    // The table is a constant of this module, the columns are the fields of its payload records
    // (checked on the way in: `deny_unknown_fields`); every value is a parameter.
    let sql = format!("INSERT INTO {table} ({}) VALUES ({}) RETURNING id", columns.join(", "), params.join(", "));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (_, value) in row {
        query = match value {
            Val::Text(v) => query.bind(v),
            Val::NullText => query.bind(None::<String>),
            Val::Int(v) => query.bind(v),
            Val::MaybeInt(v) => query.bind(v),
        };
    }
    Ok(query.fetch_one(&mut **tx).await?.try_get("id")?)
}

/// What the target holds now.
async fn held(tx: &mut Tx<'_>) -> Result<Counts> {
    let r = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM environments) AS environments, (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM api_keys) AS api_keys, \
         (SELECT COUNT(*) FROM connections) AS connections, (SELECT COUNT(*) FROM connection_secrets) AS secrets, \
         (SELECT COUNT(*) FROM certificates) AS certificates, (SELECT COUNT(*) FROM integrations) AS integrations, \
         (SELECT COUNT(*) FROM integrations WHERE connection_id IS NOT NULL) AS bindings, (SELECT COUNT(*) FROM webhooks) AS webhooks",
    )
    .fetch_one(&mut **tx)
    .await?;
    let n = |column: &str| -> Result<usize> { Ok(r.try_get::<i64, _>(column)? as usize) };
    Ok(Counts {
        environments: n("environments")?,
        users: n("users")?,
        api_keys: n("api_keys")?,
        connections: n("connections")?,
        secrets: n("secrets")?,
        certificates: n("certificates")?,
        integrations: n("integrations")?,
        webhooks: n("webhooks")?,
        bindings: n("bindings")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: these tests are about the file format, not the cost of a guess.
    const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

    fn source() -> Source {
        Source { public_url: "https://vault.example.com".into(), database: "sqlite".into(), connvault_version: "0.1.0".into() }
    }

    fn sealed(plaintext: &[u8], passphrase: &str) -> Vec<u8> {
        let header = Header::new(source(), FAST, plaintext.len());
        let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        buffer.extend_from_slice(plaintext);
        seal_file(&header, &SecretString::from(passphrase), buffer).unwrap()
    }

    fn header_len(file: &[u8]) -> usize {
        MAGIC.len() + file[MAGIC.len()..].iter().position(|b| *b == b'\n').unwrap() + 1
    }

    const PASS: &str = "correct horse battery staple";

    #[test]
    fn a_file_round_trips_and_hides_its_content() {
        let file = sealed(b"{\"MARKER-backup-secret\":1}", PASS);
        assert!(file.starts_with(MAGIC));
        assert!(!file.windows(6).any(|w| w == b"MARKER"));
        let (header, plain) = open_file(&file, &SecretString::from(PASS)).unwrap();
        assert_eq!(&plain[..], b"{\"MARKER-backup-secret\":1}");
        assert_eq!((header.format.as_str(), header.format_version, header.kdf.memory_kib), (FORMAT, 1, 64));
        assert_eq!(header.cipher.length as usize, file.len() - header_len(&file));
        assert_eq!(STANDARD.decode(&header.kdf.salt).unwrap().len(), SALT_LEN);
        // Fresh salt and nonce every time.
        let again = sealed(b"{\"MARKER-backup-secret\":1}", PASS);
        assert_ne!(file, again);
    }

    #[test]
    fn a_wrong_passphrase_is_refused() {
        let file = sealed(b"payload", PASS);
        assert_eq!(open_file(&file, &SecretString::from("correct horse battery stapler")).unwrap_err(), BackupError::WrongPassphrase);
    }

    /// The header is the associated data: an edit that keeps it well-formed (the date, the
    /// source, a cost parameter) makes the file fail to open, exactly like a wrong passphrase.
    #[test]
    fn the_header_is_the_associated_data() {
        let file = sealed(b"payload", PASS);
        let text = String::from_utf8_lossy(&file[..header_len(&file)]).into_owned();
        let year = &text[text.find("\"created_at\":\"").unwrap() + 14..][..4];
        let edits = [
            (format!("\"created_at\":\"{year}"), format!("\"created_at\":\"{}", year.parse::<i32>().unwrap() - 1)),
            ("vault.example.com".to_string(), "vault.example.org".to_string()),
            ("\"iterations\":1".to_string(), "\"iterations\":2".to_string()),
            ("\"database\":\"sqlite\"".to_string(), "\"database\":\"SQLite\"".to_string()),
        ];
        for (from, to) in edits {
            assert!(text.contains(&from), "{from} in {text}");
            let mut edited = text.replacen(&from, &to, 1).into_bytes();
            assert_eq!(edited.len(), header_len(&file), "{to}: same length, so only the header differs");
            edited.extend_from_slice(&file[header_len(&file)..]);
            assert_eq!(open_file(&edited, &SecretString::from(PASS)).unwrap_err(), BackupError::WrongPassphrase, "{to}");
        }
        // The magic line is part of it too: a flipped byte there is not a backup at all.
        let mut flipped = file.clone();
        flipped[3] ^= 0x20;
        assert_eq!(open_file(&flipped, &SecretString::from(PASS)).unwrap_err(), BackupError::NotABackup);
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let file = sealed(b"a payload of a few bytes", PASS);
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(open_file(&bad, &SecretString::from(PASS)).is_err(), "byte {i} of {}", file.len());
        }
    }

    #[test]
    fn a_cut_file_says_so() {
        let file = sealed(b"payload", PASS);
        let h = header_len(&file);
        for cut in [5, MAGIC.len() + 10, h, h + 3, file.len() - 1] {
            let err = open_file(&file[..cut], &SecretString::from(PASS)).unwrap_err();
            assert!(matches!(err, BackupError::Truncated(_)), "cut at {cut}: {err:?}");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(open_file(&longer, &SecretString::from(PASS)).unwrap_err(), BackupError::BadHeader(_)));
        assert_eq!(open_file(b"", &SecretString::from(PASS)).unwrap_err(), BackupError::NotABackup);
        assert_eq!(open_file(b"SQLite format 3\0", &SecretString::from(PASS)).unwrap_err(), BackupError::NotABackup);
    }

    #[test]
    fn other_versions_and_costly_parameters_are_refused_before_any_key_is_derived() {
        let file = sealed(b"payload", PASS);
        let text = String::from_utf8_lossy(&file[..header_len(&file)]).into_owned();
        let rebuild = |from: &str, to: &str| {
            let mut f = text.replacen(from, to, 1).into_bytes();
            f.extend_from_slice(&file[header_len(&file)..]);
            open_file(&f, &SecretString::from(PASS)).unwrap_err()
        };
        assert_eq!(rebuild("\"format_version\":1", "\"format_version\":2"), BackupError::UnsupportedVersion(2));
        let err = rebuild("\"memory_kib\":64", "\"memory_kib\":4194304");
        assert!(matches!(&err, BackupError::BadHeader(m) if m.contains("4194304 KiB")), "{err:?}");
        assert!(matches!(rebuild("\"argon2id\"", "\"argon2i\""), BackupError::BadHeader(_)));
        assert!(matches!(rebuild("\"format\":\"connvault-backup\"", "\"format\":\"other\""), BackupError::BadHeader(_)));
    }

    #[test]
    fn secret_values_travel_as_base64_and_come_back() {
        let record = SecretRecord {
            environment: "DEV".into(),
            connection: "A".into(),
            field: "token".into(),
            value: BackupSecret(SecretString::from("line one\n\"quoted\" é")),
            set_by: "x".into(),
            set_at: "t".into(),
        };
        let text = serde_json::to_string(&record).unwrap();
        assert!(!text.contains("quoted"), "{text}");
        let back: SecretRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back.value.0.expose_secret(), "line one\n\"quoted\" é");
        assert!(serde_json::from_str::<SecretRecord>(&text.replace("\"value\":\"", "\"value\":\"!")).is_err());
    }

    #[test]
    fn passphrase_rules() {
        assert!(validate_passphrase(&SecretString::from("twelve chars")).is_ok());
        let err = validate_passphrase(&SecretString::from("too short")).unwrap_err();
        assert!(err.to_string().contains("at least 12 characters"), "{err}");
        assert!(validate_passphrase(&SecretString::new("x".repeat(MAX_PASSPHRASE_BYTES + 1))).is_err());
    }
}
