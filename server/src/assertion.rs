//! Client assertions: JWTs signed with a connection's private key, for every provider that
//! signs (Salesforce's JWT bearer flow with RS256, Microsoft Entra ID's certificate credentials
//! with PS256 and the certificate's thumbprints in the header).
//!
//! `jsonwebtoken::encode` parses the private key on every call, which costs about two thirds of
//! a signature (measured: 0.36× `openssl speed rsa2048`). An [`AssertionSigner`] parses the key
//! once into aws-lc-rs and signs through jsonwebtoken's own `JwtSigner` interface, so every
//! assertion costs one RSA signature and nothing else (see `benches/mint.rs`).

use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaEncoding, RsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::signature::{Error as SignatureError, Signer};
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;

use crate::error::{Error, Result};

/// The signature algorithms connvault signs assertions with (both RSA with SHA-256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5: Salesforce, and Entra's older guidance.
    Rs256,
    /// RSASSA-PSS: Entra's current guidance for certificate credentials.
    Ps256,
}

impl Alg {
    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            Alg::Rs256 => Algorithm::RS256,
            Alg::Ps256 => Algorithm::PS256,
        }
    }

    fn encoding(self) -> &'static dyn RsaEncoding {
        match self {
            Alg::Rs256 => &RSA_PKCS1_SHA256,
            Alg::Ps256 => &RSA_PSS_SHA256,
        }
    }
}

/// Optional header fields naming the certificate whose key signed (Entra selects the
/// registered certificate by them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderExtras {
    /// base64url (unpadded) SHA-1 of the certificate's DER: see [`x5t`].
    pub x5t: Option<String>,
    /// base64url (unpadded) SHA-256 of the certificate's DER: see [`x5t_s256`].
    pub x5t_s256: Option<String>,
}

impl HeaderExtras {
    /// Both thumbprints of a certificate (DER).
    pub fn for_certificate(certificate_der: &[u8]) -> HeaderExtras {
        HeaderExtras { x5t: Some(x5t(certificate_der)), x5t_s256: Some(x5t_s256(certificate_der)) }
    }
}

/// The SHA-1 thumbprint as upper-case hex: what the Entra portal shows beside a certificate.
pub fn thumbprint_sha1_hex(certificate_der: &[u8]) -> String {
    hex::encode_upper(digest(&SHA1_FOR_LEGACY_USE_ONLY, certificate_der).as_ref())
}

/// The JOSE `x5t` header value: base64url (unpadded) of the SHA-1 over the certificate's DER.
pub fn x5t(certificate_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, certificate_der).as_ref())
}

/// The JOSE `x5t#S256` header value: base64url (unpadded) of the SHA-256 over the DER.
pub fn x5t_s256(certificate_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, certificate_der).as_ref())
}

/// The DER of the first `CERTIFICATE` in a PEM text, or why there is none.
pub fn certificate_der_from_pem(pem: &str) -> std::result::Result<Vec<u8>, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.trim().as_bytes())
        .map_err(|_| "the certificate is not PEM: paste the text that starts with -----BEGIN CERTIFICATE-----".to_string())?;
    if pem.label != "CERTIFICATE" {
        return Err(format!("this PEM holds a {}, not a CERTIFICATE", pem.label));
    }
    pem.parse_x509().map_err(|e| format!("the certificate does not parse as X.509: {e}"))?;
    Ok(pem.contents)
}

/// A private key parsed once, ready to sign many assertions.
pub struct AssertionSigner {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner").field("bits", &(self.key.public_modulus_len() * 8)).finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// From the PKCS#8 DER that `salesforce::cert::issue` / `check_upload` produce.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<AssertionSigner> {
        let key = RsaKeyPair::from_pkcs8(der).map_err(|e| Error::Internal(format!("the stored private key does not parse as RSA PKCS#8: {e}")))?;
        Ok(AssertionSigner { key, rng: SystemRandom::new() })
    }

    pub fn bits(&self) -> usize {
        self.key.public_modulus_len() * 8
    }

    /// A signed JWT: `base64url(header).base64url(claims).signature`, the header
    /// `{"typ":"JWT","alg":…}` plus the thumbprints in `extras`.
    pub fn jwt<C: Serialize>(&self, alg: Alg, extras: &HeaderExtras, claims: &C) -> Result<String> {
        let mut header = Header::new(alg.jwt_algorithm());
        header.x5t = extras.x5t.clone();
        header.x5t_s256 = extras.x5t_s256.clone();
        let message = format!("{}.{}", b64_json(&header)?, b64_json(claims)?);
        let signature = self.sign(alg, message.as_bytes()).map_err(|e| Error::Internal(format!("signing the assertion: {e}")))?;
        Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// An RS256 assertion with the plain header (what Salesforce's JWT bearer flow takes).
    pub fn assertion<C: Serialize>(&self, claims: &C) -> Result<String> {
        self.jwt(Alg::Rs256, &HeaderExtras::default(), claims)
    }

    fn sign(&self, alg: Alg, msg: &[u8]) -> std::result::Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key.sign(alg.encoding(), &self.rng, msg, &mut signature)?;
        Ok(signature)
    }
}

/// jsonwebtoken's signer interface (RS256), so the signer also works with `jsonwebtoken`'s
/// own encoding functions.
impl Signer<Vec<u8>> for AssertionSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        self.sign(Alg::Rs256, msg).map_err(SignatureError::from_source)
    }
}

impl JwtSigner for AssertionSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// JSON + base64url of a JWT part.
fn b64_json<T: Serialize>(value: &T) -> Result<String> {
    let json = serde_json::to_vec(value).map_err(|e| Error::Internal(format!("encoding a JWT part: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
    struct Claims {
        aud: String,
        iss: String,
        exp: i64,
        jti: String,
    }

    fn key_and_cert() -> (AssertionSigner, Vec<u8>, DecodingKey) {
        let issued = crate::certs::issue(2048, "MS", "DEV", time::OffsetDateTime::now_utc()).unwrap();
        let signer = AssertionSigner::from_pkcs8_der(issued.private_key.expose_secret()).unwrap();
        let der = certificate_der_from_pem(&issued.certificate_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let key = DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data);
        (signer, der, key)
    }

    #[test]
    fn ps256_and_rs256_verify_with_the_certificate_key_and_carry_the_thumbprints() {
        let (signer, der, key) = key_and_cert();
        let claims = Claims { aud: "https://login.example/t/oauth2/v2.0/token".into(), iss: "app".into(), exp: 4_000_000_000, jti: "j1".into() };
        for (alg, algorithm) in [(Alg::Ps256, Algorithm::PS256), (Alg::Rs256, Algorithm::RS256)] {
            let jwt = signer.jwt(alg, &HeaderExtras::for_certificate(&der), &claims).unwrap();
            let mut v = Validation::new(algorithm);
            v.set_audience(&[claims.aud.as_str()]);
            let data = jsonwebtoken::decode::<Claims>(&jwt, &key, &v).unwrap();
            assert_eq!(data.claims, claims);
            assert_eq!(data.header.alg, algorithm);
            assert_eq!(data.header.typ.as_deref(), Some("JWT"));
            assert_eq!(data.header.x5t.as_deref(), Some(x5t(&der).as_str()));
            assert_eq!(data.header.x5t_s256.as_deref(), Some(x5t_s256(&der).as_str()));
            // The header's JSON names the SHA-256 thumbprint `x5t#S256`.
            let header_json = URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap();
            assert!(String::from_utf8(header_json).unwrap().contains("\"x5t#S256\""));
            // The other algorithm does not verify it, and neither does a changed claims part.
            let other = if alg == Alg::Ps256 { Algorithm::RS256 } else { Algorithm::PS256 };
            let mut wrong = Validation::new(other);
            wrong.set_audience(&[claims.aud.as_str()]);
            assert!(jsonwebtoken::decode::<Claims>(&jwt, &key, &wrong).is_err());
            let mut parts: Vec<String> = jwt.split('.').map(str::to_string).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(br#"{"aud":"https://login.example/t/oauth2/v2.0/token","iss":"evil","exp":4000000000,"jti":"j1"}"#);
            assert!(jsonwebtoken::decode::<Claims>(&parts.join("."), &key, &v).is_err(), "{alg:?}: tampered claims must fail");
        }
        // PSS is randomised, PKCS#1 v1.5 deterministic.
        let e = HeaderExtras::default();
        assert_ne!(signer.jwt(Alg::Ps256, &e, &claims).unwrap(), signer.jwt(Alg::Ps256, &e, &claims).unwrap());
        assert_eq!(signer.assertion(&claims).unwrap(), signer.assertion(&claims).unwrap());
        let plain = URL_SAFE_NO_PAD.decode(signer.assertion(&claims).unwrap().split('.').next().unwrap()).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), r#"{"typ":"JWT","alg":"RS256"}"#, "no thumbprints unless asked");
    }

    #[test]
    fn thumbprints_are_the_digests_of_the_der() {
        let der = b"abc";
        // The FIPS 180 test vectors for "abc".
        let sha1 = hex::decode("a9993e364706816aba3e25717850c26c9cd0d89d").unwrap();
        let sha256 = hex::decode("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").unwrap();
        assert_eq!(thumbprint_sha1_hex(der), "A9993E364706816ABA3E25717850C26C9CD0D89D");
        assert_eq!(URL_SAFE_NO_PAD.decode(x5t(der)).unwrap(), sha1);
        assert_eq!(URL_SAFE_NO_PAD.decode(x5t_s256(der)).unwrap(), sha256);
        assert!(!x5t_s256(der).contains('=') && !x5t_s256(der).contains('+') && !x5t_s256(der).contains('/'));
        assert!(certificate_der_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap_err().contains("PRIVATE KEY"));
        assert!(certificate_der_from_pem("hello").is_err());
    }
}
