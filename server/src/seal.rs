//! Sealing secrets at rest: AES-256-GCM with a fresh random 96-bit nonce per seal.
//!
//! Blob layout (format version 1):
//!
//! ```text
//! "CV" | version (1 byte) | key id (8 bytes) | nonce (12 bytes) | ciphertext + 16-byte tag
//! ```
//!
//! The associated data is the 23-byte header followed by the blob's place:
//! `connvault-seal-v1 \0 table \0 row \0 field \0 environment`. A blob copied to another row,
//! field, table or environment, or re-labelled with another key id, fails to open.

use std::sync::{Arc, RwLock};

use aes_gcm::aead::{AeadInOut, Nonce};
use aes_gcm::Aes256Gcm;
use zeroize::Zeroizing;

use crate::keyring::{KeyId, KeySource, Keyring, MasterKey};
use crate::secret::SecretString;

pub const MAGIC: &[u8; 2] = b"CV";
pub const FORMAT_VERSION: u8 = 1;
pub const NONCE_LEN: usize = 12;
pub const HEADER_LEN: usize = 2 + 1 + 8 + NONCE_LEN;
pub const TAG_LEN: usize = 16;

/// Where a sealed value lives. Every field goes into the associated data.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub table: &'a str,
    /// The id of the owning record (for connection secrets: the connection's id).
    pub row: i64,
    pub field: &'a str,
    /// The environment's id (0 for values that belong to no environment).
    pub environment: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHeader {
    pub version: u8,
    pub key_id: KeyId,
    pub nonce: [u8; NONCE_LEN],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the sealed value is malformed (not a connvault blob)")]
    Malformed,
    #[error("the sealed value has format version {0}, which this server does not know")]
    UnsupportedVersion(u8),
    #[error("the sealed value was sealed with master key {0}, which is not in the keyring")]
    UnknownKey(KeyId),
    #[error(
        "integrity check failed: the sealed value was tampered with, or moved from another \
         row, field or environment"
    )]
    Integrity,
    #[error("the sealed value is not valid text")]
    NotText,
}

pub fn parse_header(blob: &[u8]) -> Result<BlobHeader, SealError> {
    if blob.len() < HEADER_LEN + TAG_LEN || &blob[..2] != MAGIC {
        return Err(SealError::Malformed);
    }
    if blob[2] != FORMAT_VERSION {
        return Err(SealError::UnsupportedVersion(blob[2]));
    }
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(&blob[3..11]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&blob[11..HEADER_LEN]);
    Ok(BlobHeader { version: blob[2], key_id: KeyId(key_id), nonce })
}

fn associated_data(header: &[u8], place: &Place<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + 64);
    aad.extend_from_slice(header);
    aad.extend_from_slice(b"connvault-seal-v1");
    for part in [place.table, &place.row.to_string(), place.field, &place.environment.to_string()] {
        aad.push(0);
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// Seals `plaintext` under `key` for `place`.
pub fn seal_with(key: &MasterKey, place: &Place<'_>, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the operating system's random source failed");
    let mut blob = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    blob.extend_from_slice(MAGIC);
    blob.push(FORMAT_VERSION);
    blob.extend_from_slice(&key.id().0);
    blob.extend_from_slice(&nonce);
    let aad = associated_data(&blob, place);
    let mut body = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    body.extend_from_slice(plaintext);
    key.cipher().encrypt_in_place(&Nonce::<Aes256Gcm>::from(nonce), &aad, &mut *body).expect("AES-GCM encryption of a bounded message cannot fail");
    blob.extend_from_slice(&body);
    blob
}

/// Opens a blob with whichever key of `keyring` its header names.
pub fn open_with(keyring: &Keyring, place: &Place<'_>, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let header = parse_header(blob)?;
    let key = keyring.get(header.key_id).ok_or(SealError::UnknownKey(header.key_id))?;
    let aad = associated_data(&blob[..HEADER_LEN], place);
    let mut body = Zeroizing::new(blob[HEADER_LEN..].to_vec());
    key.cipher().decrypt_in_place(&Nonce::<Aes256Gcm>::from(header.nonce), &aad, &mut *body).map_err(|_| SealError::Integrity)?;
    Ok(body)
}

/// The running server's sealing service: seals with the current key, opens with any key of the
/// keyring. When a blob names a key it does not hold and the keyring came from a file, it
/// re-reads the file once: after `connvault rotate-master-key` has written the new key and
/// re-sealed everything, running servers keep reading without a restart.
#[derive(Clone)]
pub struct Vault {
    keyring: Arc<RwLock<Arc<Keyring>>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault(current key {})", self.current_key_id())
    }
}

impl Vault {
    pub fn new(keyring: Keyring) -> Vault {
        Vault { keyring: Arc::new(RwLock::new(Arc::new(keyring))) }
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.read().expect("keyring lock").clone()
    }

    pub fn current_key_id(&self) -> KeyId {
        self.keyring().current().id()
    }

    pub fn seal(&self, place: &Place<'_>, plaintext: &[u8]) -> Vec<u8> {
        seal_with(self.keyring().current(), place, plaintext)
    }

    pub fn open(&self, place: &Place<'_>, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        match open_with(&self.keyring(), place, blob) {
            Err(SealError::UnknownKey(id)) => {
                if self.reload_for(id) {
                    open_with(&self.keyring(), place, blob)
                } else {
                    Err(SealError::UnknownKey(id))
                }
            }
            other => other,
        }
    }

    pub fn open_text(&self, place: &Place<'_>, blob: &[u8]) -> Result<SecretString, SealError> {
        SecretString::from_utf8(self.open(place, blob)?).ok_or(SealError::NotText)
    }

    /// Re-reads the key file if it now holds `wanted`; keeps the old keyring otherwise.
    fn reload_for(&self, wanted: KeyId) -> bool {
        let current = self.keyring();
        let KeySource::File(path) = current.source() else { return false };
        match Keyring::read_file(path) {
            Ok(fresh) if fresh.get(wanted).is_some() => {
                tracing::info!(key_id = %fresh.current().id(), "master keyring reloaded from {}", path.display());
                *self.keyring.write().expect("keyring lock") = Arc::new(fresh);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!("cannot reload the master keyring: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn place(row: i64) -> Place<'static> {
        Place { table: "connection_secrets", row, field: "token", environment: 1 }
    }

    fn ring(keys: Vec<MasterKey>) -> Keyring {
        Keyring::new(keys, KeySource::Environment).unwrap()
    }

    // Promise 1: fresh nonce per seal, header carries version and key id.
    #[test]
    fn every_seal_differs_and_the_header_round_trips() {
        let key = MasterKey::generate();
        let id = key.id();
        let keyring = ring(vec![key]);
        let mut blobs = HashSet::new();
        let mut nonces = HashSet::new();
        for _ in 0..1000 {
            let blob = seal_with(keyring.current(), &place(7), b"the same plaintext");
            let header = parse_header(&blob).unwrap();
            assert_eq!(header.version, FORMAT_VERSION);
            assert_eq!(header.key_id, id);
            assert!(nonces.insert(header.nonce), "nonce reused");
            assert_eq!(&*open_with(&keyring, &place(7), &blob).unwrap(), b"the same plaintext");
            assert!(blobs.insert(blob), "identical blob");
        }
    }

    #[test]
    fn ciphertext_does_not_contain_the_plaintext() {
        let keyring = ring(vec![MasterKey::generate()]);
        let blob = seal_with(keyring.current(), &place(1), b"MARKER-secret-value");
        assert!(!blob.windows(6).any(|w| w == b"MARKER"));
    }

    // Promise 2: the associated data binds the blob to its place.
    #[test]
    fn a_blob_opens_only_where_it_was_sealed() {
        let keyring = ring(vec![MasterKey::generate()]);
        let here = place(7);
        let blob = seal_with(keyring.current(), &here, b"s3cret");
        for elsewhere in
            [Place { row: 8, ..here }, Place { field: "password", ..here }, Place { environment: 2, ..here }, Place { table: "other_table", ..here }]
        {
            assert_eq!(open_with(&keyring, &elsewhere, &blob).unwrap_err(), SealError::Integrity, "{elsewhere:?}");
        }
    }

    // Promise 3: any flipped byte is detected.
    #[test]
    fn every_single_byte_flip_is_detected() {
        let keyring = ring(vec![MasterKey::generate()]);
        let blob = seal_with(keyring.current(), &place(1), b"tamper with me");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            let err = open_with(&keyring, &place(1), &bad).unwrap_err();
            assert!(
                matches!(err, SealError::Integrity | SealError::Malformed | SealError::UnsupportedVersion(_) | SealError::UnknownKey(_)),
                "byte {i}: {err:?}"
            );
        }
        assert_eq!(open_with(&keyring, &place(1), &blob[..blob.len() - 1]).unwrap_err(), SealError::Integrity);
        assert_eq!(open_with(&keyring, &place(1), &blob[..HEADER_LEN]).unwrap_err(), SealError::Malformed);
    }

    #[test]
    fn a_relabelled_key_id_does_not_open() {
        // Two keys in the ring; rewriting the header to name the other key must fail.
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        let b_id = b.id();
        let keyring = ring(vec![a, b]);
        let mut blob = seal_with(keyring.current(), &place(1), b"x");
        blob[3..11].copy_from_slice(&b_id.0);
        assert_eq!(open_with(&keyring, &place(1), &blob).unwrap_err(), SealError::Integrity);
    }

    #[test]
    fn older_keys_open_and_unknown_keys_are_named() {
        let (old, new) = (MasterKey::generate(), MasterKey::generate());
        let old_id = old.id();
        let blob = seal_with(&old, &place(1), b"old secret");
        let only_new = ring(vec![MasterKey::parse(&new.to_base64()).unwrap()]);
        assert_eq!(open_with(&only_new, &place(1), &blob).unwrap_err(), SealError::UnknownKey(old_id));
        let both = ring(vec![new, old]);
        assert_eq!(&*open_with(&both, &place(1), &blob).unwrap(), b"old secret");
    }

    #[test]
    fn vault_reloads_the_key_file_for_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let old = MasterKey::generate();
        Keyring::write_file(&[&old], &path).unwrap();
        let vault = Vault::new(Keyring::read_file(&path).unwrap());
        // Another process rotates: new key first, old retained.
        let new = MasterKey::generate();
        Keyring::write_file(&[&new, &old], &path).unwrap();
        let blob = seal_with(&new, &place(3), b"after rotation");
        assert_eq!(&*vault.open(&place(3), &blob).unwrap(), b"after rotation");
        assert_eq!(vault.current_key_id(), new.id());
    }
}
