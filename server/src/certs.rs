//! Key pairs and self-signed certificates for every provider that signs (Salesforce's JWT
//! bearer flow, Entra ID's client assertions). The private key leaves this module only as
//! PKCS#8 DER in a `SecretBytes`, to be sealed at once; the certificate is public (PEM, well
//! under Salesforce's 4 KB limit), with its SHA-1 and SHA-256 thumbprints.

use rsa::pkcs8::EncodePrivateKey;
use rsa::PrivateKey;

use crate::db::{now, Tx};
use crate::error::{Error, Result};
use crate::links;
use crate::secret::SecretBytes;

/// The purpose of an admin request's one-time link.
pub const LINK_PURPOSE: &str = "admin_request";

/// Key sizes offered: 2048 (Salesforce's documented recipe) and 4096.
pub const KEY_BITS: [usize; 2] = [2048, 4096];
/// Validity of an issued certificate.
pub const VALIDITY_DAYS: i64 = 730;

/// Retires everything that came with a connection's key when a destination setting changes
/// of a provider that mints: its certificates, the open request to the
/// admin and its link, and the token minted with it. The caller drops the key itself with the
/// other stored secrets, in the same transaction.
pub async fn retire(tx: &mut Tx<'static>, connection_id: i64) -> Result<()> {
    let t = now();
    sqlx::query("UPDATE certificates SET state = 'retired', updated_at = $1 WHERE connection_id = $2 AND state <> 'retired'")
        .bind(&t)
        .bind(connection_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE admin_requests SET state = 'cancelled', updated_at = $1 WHERE connection_id = $2 AND state = 'open'")
        .bind(&t)
        .bind(connection_id)
        .execute(&mut **tx)
        .await?;
    links::drop_links(tx, LINK_PURPOSE, ("connection", connection_id)).await?;
    sqlx::query("DELETE FROM tokens WHERE connection_id = $1").bind(connection_id).execute(&mut **tx).await?;
    Ok(())
}

/// A new key pair and its self-signed certificate.
pub struct Issued {
    /// PKCS#8 DER of the private key: seal it, never show it.
    pub private_key: SecretBytes,
    pub certificate_pem: String,
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
}

/// Generates an RSA key of `bits` and a self-signed X.509 certificate (SHA-256 with RSA, random
/// 128-bit serial, subject naming connvault, the connection and the environment, valid for two
/// years from `now`).
pub fn issue(bits: usize, connection: &str, environment: &str, now: time::OffsetDateTime) -> Result<Issued> {
    if !KEY_BITS.contains(&bits) {
        return Err(Error::field("key_bits", format!("the key size is 2048 or 4096 bits, not {bits}")));
    }
    let key = PrivateKey::new(&mut rand::rng(), bits).map_err(|e| Error::Internal(format!("RSA key generation: {e}")))?;
    let der = key.to_pkcs8_der().map_err(|e| Error::Internal(format!("PKCS#8 encoding: {e}")))?;
    let private_key = SecretBytes::new(der.as_bytes().to_vec());
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(private_key.expose_secret());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).map_err(|e| Error::Internal(format!("key pair: {e}")))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| Error::Internal(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("connvault {connection} ({environment})"));
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "connvault");
    params.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, format!("{environment} / {connection}"));
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| Error::Internal(format!("random source: {e}")))?;
    serial[0] &= 0x7f; // a positive INTEGER
    serial[0] |= 0x01; // and no leading zero byte to strip
    params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
    let cert = params.self_signed(&pair).map_err(|e| Error::Internal(format!("certificate: {e}")))?;
    Ok(Issued { private_key, certificate_pem: cert.pem(), not_before: params.not_before, not_after: params.not_after })
}

/// The DER inside a certificate's PEM (empty if it is not PEM).
pub fn der_of(certificate_pem: &str) -> Vec<u8> {
    crate::assertion::certificate_der_from_pem(certificate_pem).unwrap_or_default()
}

/// SHA-256 of the DER, lower-case hex (what connvault has always shown).
pub fn thumbprint_sha256(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

pub use crate::assertion::thumbprint_sha1_hex as thumbprint_sha1;

/// An administrator's own certificate and private key, checked.
pub struct Uploaded {
    /// PKCS#8 DER of the private key: seal it, never show it.
    pub private_key: SecretBytes,
    pub certificate_pem: String,
    /// Seconds since the epoch.
    pub not_after: i64,
}

/// Checks an uploaded certificate and private key (PEM; the key PKCS#8 or PKCS#1). Refused,
/// each with its reason: anything that does not parse, an encrypted key, a non-RSA or
/// short (< 2048-bit) key, an expired certificate, a key that is not the certificate's.
pub fn check_upload(certificate_pem: &str, private_key_pem: &str, now_unix: i64) -> Result<Uploaded> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    use x509_parser::public_key::PublicKey;

    let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem.trim().as_bytes())
        .map_err(|_| Error::field("certificate", "the certificate is not PEM: paste the text that starts with -----BEGIN CERTIFICATE-----"))?;
    if pem.label != "CERTIFICATE" {
        return Err(Error::field("certificate", format!("this PEM holds a {}, not a CERTIFICATE", pem.label)));
    }
    let cert = pem.parse_x509().map_err(|e| Error::field("certificate", format!("the certificate does not parse as X.509: {e}")))?;
    let not_after = cert.validity().not_after.timestamp();
    if not_after <= now_unix {
        return Err(Error::field("certificate", format!("the certificate expired on {}; issue a new one", cert.validity().not_after)));
    }
    let modulus = match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => rsa.modulus.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>(),
        Ok(_) => return Err(Error::field("certificate", "the certificate's key is not RSA; Salesforce's JWT flow signs with RS256, which needs an RSA key")),
        Err(e) => return Err(Error::field("certificate", format!("the certificate's public key does not parse: {e}"))),
    };
    if private_key_pem.contains("ENCRYPTED PRIVATE KEY") {
        return Err(Error::field("private_key", "the private key is encrypted; export it without a passphrase (connvault seals it itself)"));
    }
    let key = PrivateKey::from_pkcs8_pem(private_key_pem.trim()).or_else(|_| PrivateKey::from_pkcs1_pem(private_key_pem.trim())).map_err(|_| {
        Error::field("private_key", "the private key is not an RSA key in PEM (PKCS#8 \"BEGIN PRIVATE KEY\" or PKCS#1 \"BEGIN RSA PRIVATE KEY\")")
    })?;
    let bits = key.size() * 8;
    if bits < 2048 {
        return Err(Error::field("private_key", format!("the key has {bits} bits; use at least 2048")));
    }
    if key.n_bytes().as_ref() != modulus.as_slice() {
        return Err(Error::field("private_key", "this private key does not belong to the certificate; upload the pair that was made together"));
    }
    let der = key.to_pkcs8_der().map_err(|e| Error::Internal(format!("PKCS#8 encoding: {e}")))?;
    Ok(Uploaded { private_key: SecretBytes::new(der.as_bytes().to_vec()), certificate_pem: pem_text(&pem.contents), not_after })
}

/// The certificate as connvault stores and serves it (normalized PEM).
fn pem_text(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_two_year_rsa_sha256_certificate_under_4_kb() {
        let now = time::OffsetDateTime::now_utc();
        let issued = issue(2048, "SF_Main", "DEV", now).unwrap();
        assert!(issued.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(issued.certificate_pem.len() < 4096, "{} bytes", issued.certificate_pem.len());
        assert!(!issued.certificate_pem.contains("PRIVATE KEY"));
        assert_eq!((issued.not_after - now).whole_days(), VALIDITY_DAYS);
        let again = issue(2048, "SF_Main", "DEV", now).unwrap();
        assert_ne!(issued.certificate_pem, again.certificate_pem, "fresh key and serial each time");
        assert!(matches!(issue(1024, "SF_Main", "DEV", now), Err(Error::Validation(_))));
    }

    fn key_pem(der: &SecretBytes) -> String {
        use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
        PrivateKey::from_pkcs8_der(der.expose_secret()).unwrap().to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap().to_string()
    }

    fn field_of(r: Result<Uploaded>) -> String {
        match r {
            Err(Error::Validation(f)) => format!("{}: {}", f[0].field, f[0].message),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn thumbprints_are_those_of_the_der() {
        let a = issue(2048, "A", "DEV", time::OffsetDateTime::now_utc()).unwrap();
        let der = der_of(&a.certificate_pem);
        assert!(der.len() > 500);
        let sha1 = thumbprint_sha1(&der);
        assert_eq!(sha1.len(), 40);
        assert_eq!(sha1, sha1.to_ascii_uppercase());
        assert_eq!(thumbprint_sha256(&der).len(), 64);
        assert_ne!(thumbprint_sha1(&der_of(&issue(2048, "B", "DEV", time::OffsetDateTime::now_utc()).unwrap().certificate_pem)), sha1);
        assert!(der_of("not pem").is_empty());
    }

    #[test]
    fn an_upload_is_refused_with_its_reason() {
        let now = time::OffsetDateTime::now_utc();
        let a = issue(2048, "A", "DEV", now).unwrap();
        let b = issue(2048, "B", "DEV", now).unwrap();
        let ok = check_upload(&a.certificate_pem, &key_pem(&a.private_key), now.unix_timestamp()).unwrap();
        assert_eq!(ok.certificate_pem, a.certificate_pem);
        assert_eq!(ok.not_after, a.not_after.unix_timestamp());
        // PKCS#1 works too.
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let pkcs1 = PrivateKey::from_pkcs8_der(a.private_key.expose_secret()).unwrap().to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap().to_string();
        assert!(check_upload(&a.certificate_pem, &pkcs1, now.unix_timestamp()).is_ok());

        assert!(field_of(check_upload(&a.certificate_pem, &key_pem(&b.private_key), now.unix_timestamp())).contains("does not belong to the certificate"));
        let later = (now + time::Duration::days(VALIDITY_DAYS + 1)).unix_timestamp();
        assert!(field_of(check_upload(&a.certificate_pem, &key_pem(&a.private_key), later)).starts_with("certificate: the certificate expired"));
        assert!(field_of(check_upload("hello", &key_pem(&a.private_key), now.unix_timestamp())).starts_with("certificate: the certificate is not PEM"));
        assert!(field_of(check_upload(
            &a.certificate_pem,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
            now.unix_timestamp()
        ))
        .contains("encrypted"));
        assert!(field_of(check_upload(&a.certificate_pem, "not a key", now.unix_timestamp())).starts_with("private_key: the private key is not an RSA key"));
        // An ECDSA certificate (and its key) is refused: RS256 needs RSA.
        let ec = rcgen::KeyPair::generate().unwrap();
        let ec_cert = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap().self_signed(&ec).unwrap().pem();
        assert!(field_of(check_upload(&ec_cert, &ec.serialize_pem(), now.unix_timestamp())).contains("not RSA"));
        assert!(
            field_of(check_upload(&a.certificate_pem, &ec.serialize_pem(), now.unix_timestamp())).starts_with("private_key: the private key is not an RSA key")
        );
    }
}
