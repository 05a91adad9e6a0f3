//! TEMPORARY stub until the mail branch lands.
use crate::db::Db;
use crate::seal::Vault;
pub struct Attachment { pub filename: String, pub content_type: String, pub body: Vec<u8> }
pub struct Email { pub to: String, pub subject: String, pub text: String, pub html: String, pub attachments: Vec<Attachment> }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery { Sent, Outbox { id: i64 } }
#[derive(Debug, Clone, Default)]
pub struct Mailer;
impl Mailer {
    pub async fn send(&self, _db: &Db, _vault: &Vault, _email: &Email) -> crate::Result<Delivery> { Ok(Delivery::Outbox { id: 0 }) }
}
