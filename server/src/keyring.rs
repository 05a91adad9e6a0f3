//! Master keys and the keyring.
//!
//! A master key is 32 random bytes (AES-256). Its id is derived from the key itself
//! (HMAC-SHA-256 of a fixed label, first 8 bytes), so a blob's header names the key that opens it
//! without storing anything secret, and an operator can tell keys apart by id.
//!
//! The keyring holds the current key (which seals) and any older keys (which only open). It comes
//! from `CONNVAULT_MASTER_KEY` (+ `CONNVAULT_MASTER_KEY_PREVIOUS`) or from the key file
//! (`CONNVAULT_MASTER_KEY_FILE`, default `DATA_DIR/master.key`): one key per line, current first.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

pub const KEY_LEN: usize = 32;

/// The public identity of a master key: 8 bytes, shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    pub fn parse(text: &str) -> Option<KeyId> {
        let bytes = hex::decode(text).ok()?;
        Some(KeyId(bytes.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// One AES-256 master key with its id and a ready cipher.
pub struct MasterKey {
    bytes: SecretBytes,
    id: KeyId,
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, [redacted])", self.id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyParseError {
    #[error("the master key is empty")]
    Empty,
    #[error(
        "the master key must be 32 bytes written as base64 (44 characters) or hex (64 characters); \
         this one is {chars} characters and is neither"
    )]
    NotEncoded { chars: usize },
    #[error(
        "the master key must be exactly 32 bytes; this one decodes to {bytes} bytes \
         (generate one with `openssl rand -base64 32`)"
    )]
    WrongLength { bytes: usize },
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        let bytes = Zeroizing::new(bytes);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&bytes[..]).expect("HMAC takes any key length");
        mac.update(b"connvault master key id v1");
        let digest = mac.finalize().into_bytes();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        let cipher = Aes256Gcm::new_from_slice(&bytes[..]).expect("32-byte key");
        MasterKey { bytes: SecretBytes::new(bytes.to_vec()), id: KeyId(id), cipher }
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> MasterKey {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut bytes[..]).expect("the operating system's random source failed");
        MasterKey::from_bytes(*bytes)
    }

    /// Parses base64 (standard or URL-safe, padded or not) or hex of exactly 32 bytes.
    /// Error messages never repeat the key.
    pub fn parse(text: &str) -> Result<MasterKey, KeyParseError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyParseError::Empty);
        }
        let decoded: Option<Zeroizing<Vec<u8>>> = if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok().map(Zeroizing::new)
        } else {
            use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|engine| engine.decode(text).ok()).map(Zeroizing::new)
        };
        let decoded = decoded.ok_or(KeyParseError::NotEncoded { chars: text.chars().count() })?;
        let bytes: [u8; KEY_LEN] = decoded.as_slice().try_into().map_err(|_| KeyParseError::WrongLength { bytes: decoded.len() })?;
        Ok(MasterKey::from_bytes(bytes))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }

    /// The key as base64, for writing the key file. Wiped when dropped.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.bytes.expose_secret()))
    }
}

/// Where the keyring came from; decides whether it can be re-read and rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Environment,
}

/// The current key first, then older keys that still open existing blobs.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<MasterKey>,
    source: KeySource,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{what}: {source}")]
    Parse { what: String, source: KeyParseError },
    #[error("the key file {path} holds no key (one base64 key per line, current first)")]
    EmptyFile { path: PathBuf },
    #[error("cannot read the key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the keyring lists key {0} twice")]
    Duplicate(KeyId),
}

impl Keyring {
    pub fn new(keys: Vec<MasterKey>, source: KeySource) -> Result<Keyring, KeyringError> {
        assert!(!keys.is_empty(), "a keyring has at least one key");
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(KeyringError::Duplicate(k.id));
            }
        }
        Ok(Keyring { keys, source })
    }

    pub fn current(&self) -> &MasterKey {
        &self.keys[0]
    }

    pub fn get(&self, id: KeyId) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    pub fn keys(&self) -> &[MasterKey] {
        &self.keys
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub fn into_keys(self) -> Vec<MasterKey> {
        self.keys
    }

    /// From `CONNVAULT_MASTER_KEY` and the optional `CONNVAULT_MASTER_KEY_PREVIOUS`
    /// (keys separated by commas or white space).
    pub fn from_env_values(current: &str, previous: Option<&str>) -> Result<Keyring, KeyringError> {
        let mut keys = vec![MasterKey::parse(current).map_err(|source| KeyringError::Parse { what: "CONNVAULT_MASTER_KEY".into(), source })?];
        for (i, item) in previous.unwrap_or("").split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).enumerate() {
            keys.push(MasterKey::parse(item).map_err(|source| KeyringError::Parse { what: format!("CONNVAULT_MASTER_KEY_PREVIOUS (key {})", i + 1), source })?);
        }
        Keyring::new(keys, KeySource::Environment)
    }

    /// Reads a key file: one key per line, current first; `#` starts a comment.
    pub fn read_file(path: &Path) -> Result<Keyring, KeyringError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| KeyringError::Read { path: path.into(), source })?);
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(MasterKey::parse(line).map_err(|source| KeyringError::Parse { what: format!("{} line {}", path.display(), n + 1), source })?);
        }
        if keys.is_empty() {
            return Err(KeyringError::EmptyFile { path: path.into() });
        }
        Keyring::new(keys, KeySource::File(path.into()))
    }

    /// Writes the keyring to its file atomically (temporary file, fsync, rename), mode 0600.
    pub fn write_file(keys: &[&MasterKey], path: &Path) -> Result<(), KeyringError> {
        let err = |source| KeyringError::Write { path: path.into(), source };
        let mut text = Zeroizing::new(String::from(
            "# connvault master keyring. BACK THIS FILE UP: without it no stored secret can be opened.\n\
             # One key per line; the first key seals, the others only open older secrets.\n",
        ));
        for k in keys {
            text.push_str(&format!("# key id {}\n", k.id()));
            text.push_str(&k.to_base64());
            text.push('\n');
        }
        write_private_file(path, text.as_bytes()).map_err(err)
    }
}

/// Writes `bytes` to `path` atomically, readable only by this user (0600): a temporary file
/// beside it (`NAME.tmp`), fsync, rename over `path`, fsync of the folder. The folder is made
/// (0700) if missing. Readers see the old file or the new one, never a part.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let name = path.file_name().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = open_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Creates a folder (and its parents) readable only by this user, if it does not exist yet.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates an empty file readable only by this user, if it does not exist yet.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    match open_private(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// Whether group or others can read the file (unix); the server warns loudly about it.
pub fn is_too_open(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).map(|m| m.permissions().mode() & 0o077 != 0).unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn key_parsing_table() {
        let reference = MasterKey::parse(B64).unwrap().id();
        let accepted = [
            B64,
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", // no padding
            HEX,
            "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", // upper-case hex
            "  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",                 // surrounding white space
        ];
        for text in accepted {
            assert_eq!(MasterKey::parse(text).unwrap().id(), reference, "{text:?} should parse");
        }
        let refused: [(&str, KeyParseError); 6] = [
            ("", KeyParseError::Empty),
            ("   ", KeyParseError::Empty),
            ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd", KeyParseError::WrongLength { bytes: 30 }),
            ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e", KeyParseError::WrongLength { bytes: 31 }),
            ("not a key at all!", KeyParseError::NotEncoded { chars: 17 }),
            ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==", KeyParseError::WrongLength { bytes: 34 }),
        ];
        for (text, expected) in refused {
            assert_eq!(MasterKey::parse(text).unwrap_err(), expected, "{text:?} should be refused");
        }
    }

    #[test]
    fn error_messages_never_contain_the_key() {
        let bad = "c2VjcmV0LWtleS10aGF0LWlzLXRvby1zaG9ydA==";
        let msg = MasterKey::parse(bad).unwrap_err().to_string();
        assert!(!msg.contains(bad), "{msg}");
    }

    #[test]
    fn key_ids_are_stable_and_distinct() {
        let a = MasterKey::parse(B64).unwrap();
        let b = MasterKey::generate();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), MasterKey::parse(&a.to_base64()).unwrap().id());
        assert_eq!(KeyId::parse(&a.id().to_string()), Some(a.id()));
        assert_eq!(format!("{a:?}"), format!("MasterKey({}, [redacted])", a.id()));
    }

    #[test]
    fn key_file_round_trip_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        Keyring::write_file(&[&a, &b], &path).unwrap();
        let ring = Keyring::read_file(&path).unwrap();
        assert_eq!(ring.ids(), vec![a.id(), b.id()]);
        assert!(!is_too_open(&path));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn env_keyring_with_previous_keys() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        let ring = Keyring::from_env_values(&a.to_base64(), Some(&format!(" {}, ", &*b.to_base64()))).unwrap();
        assert_eq!(ring.ids(), vec![a.id(), b.id()]);
        let err = Keyring::from_env_values(&a.to_base64(), Some("bogus")).unwrap_err().to_string();
        assert!(err.contains("CONNVAULT_MASTER_KEY_PREVIOUS (key 1)"), "{err}");
        assert!(matches!(Keyring::from_env_values(&a.to_base64(), Some(&a.to_base64())), Err(KeyringError::Duplicate(_))));
    }
}
