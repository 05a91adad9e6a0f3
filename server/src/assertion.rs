//! The client-assertion signer shared by every provider that signs (moving here from Salesforce).
pub use crate::providers::salesforce::jwt::AssertionSigner;
