pub mod connections;
pub mod home;
