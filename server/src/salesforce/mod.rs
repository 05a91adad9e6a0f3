//! The Salesforce connected-app flow (work in progress): certificates first.

pub mod cert;
pub mod standin;
