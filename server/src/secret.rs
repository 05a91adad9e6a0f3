//! Types that hold secret material.
//!
//! They zeroize their memory on drop, print as `[redacted]` in `Debug` and `Display`, cannot be
//! serialized (so a secret can never end up in a response body by accident), and have no
//! `PartialEq`: comparisons go through [`SecretString::ct_eq`], which runs in constant time.

use std::fmt;

use serde::{Deserialize, Deserializer};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A secret text value (a password, a token, a PEM private key).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretString(String);

crate::schema::hand_schema!(
    SecretString,
    "SecretString",
    || serde_json::json!({"type": "string", "writeOnly": true, "description": "A secret: accepted, never answered"})
);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself. Call sites are easy to audit: `grep expose_secret`.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality (length is not hidden).
    pub fn ct_eq(&self, other: &SecretString) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }

    /// Takes ownership of decrypted bytes; fails (and wipes them) if they are not UTF-8.
    pub fn from_utf8(bytes: Zeroizing<Vec<u8>>) -> Option<Self> {
        match std::str::from_utf8(&bytes) {
            Ok(s) => Some(Self(s.to_owned())),
            Err(_) => None,
        }
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretString)
    }
}

/// Secret binary material (a master key).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(value: Vec<u8>) -> Self {
        Self(value)
    }

    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    pub fn ct_eq(&self, other: &SecretBytes) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Compile-time proof that secret types implement neither `PartialEq` (comparisons must go
/// through `ct_eq`) nor `Serialize` (a secret can never be written into a response). If one of
/// them ever gains such an impl, the trait resolution below becomes ambiguous and the crate
/// stops compiling.
#[allow(dead_code)]
mod no_unsafe_impls {
    use super::{SecretBytes, SecretString};

    trait AmbiguousIfImpl<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
    struct IsPartialEq;
    impl<T: ?Sized + PartialEq> AmbiguousIfImpl<IsPartialEq> for T {}
    struct IsSerialize;
    impl<T: ?Sized + serde::Serialize> AmbiguousIfImpl<IsSerialize> for T {}

    const _: fn() = || {
        <SecretString as AmbiguousIfImpl<_>>::check();
        <SecretBytes as AmbiguousIfImpl<_>>::check();
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = SecretString::from("hunter2-marker");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        let b = SecretBytes::new(b"hunter2-marker".to_vec());
        assert_eq!(format!("{b:?}"), "[redacted]");
    }

    #[test]
    fn constant_time_comparison() {
        let a = SecretString::from("same-value");
        assert!(a.ct_eq(&SecretString::from("same-value")));
        assert!(!a.ct_eq(&SecretString::from("same-valuf")));
        assert!(!a.ct_eq(&SecretString::from("same-value-longer")));
        assert!(SecretBytes::new(vec![1, 2, 3]).ct_eq(&SecretBytes::new(vec![1, 2, 3])));
        assert!(!SecretBytes::new(vec![1, 2, 3]).ct_eq(&SecretBytes::new(vec![1, 2, 4])));
    }

    #[test]
    fn deserializes_from_json_but_cannot_serialize() {
        let s: SecretString = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(s.expose_secret(), "abc");
        // `SecretString: !Serialize` and `!PartialEq` are checked at compile time below.
    }

    #[test]
    fn zeroize_wipes_the_buffer() {
        let mut s = SecretString::from("wipe-me");
        s.zeroize();
        assert!(s.expose_secret().is_empty());
    }
}
