pub mod audit;
pub mod auth;
pub mod connections;
pub mod home;
