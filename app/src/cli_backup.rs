//! `connvault backup create` and `connvault backup restore`: a passphrase-encrypted backup of
//! the whole instance (see `server::backup`), made and restored on this machine against the
//! configured database, like `rotate-master-key`; never over HTTP.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use server::audit::Actor;
use server::config::Config;
use server::secret::SecretString;

/// Where a script puts the passphrase (otherwise it is read from the terminal or stdin).
pub const PASSPHRASE_ENV: &str = "CONNVAULT_BACKUP_PASSPHRASE";

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Write an encrypted backup of the whole instance (every secret included) to FILE (0600).
    /// The passphrase comes from CONNVAULT_BACKUP_PASSPHRASE, else from the terminal (twice, not
    /// echoed) or one line of standard input.
    Create {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup into the configured database, every secret sealed under this instance's
    /// master key. The file is decrypted and checked before the database is touched. A database
    /// that already holds connections, integrations, accounts or API keys is refused unless
    /// --replace.
    Restore {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Replace everything the database holds (environments, connections, integrations,
        /// accounts, API keys; sessions and one-time links end). The audit trail stays.
        #[arg(long)]
        replace: bool,
    },
}

fn passphrase(confirm: bool) -> Result<SecretString, String> {
    match std::env::var(PASSPHRASE_ENV) {
        Ok(value) if !value.is_empty() => Ok(SecretString::new(value)),
        _ => super::read_secret_line("Backup passphrase", confirm),
    }
}

/// The operator is at this machine: a database's own words help them, and hold no secret.
fn describe(e: server::Error) -> String {
    match e {
        server::Error::Database(_) | server::Error::Internal(_) => format!("{e}; nothing was changed"),
        other => super::describe(other),
    }
}

pub async fn run(config: Config, command: BackupCommand) -> Result<(), String> {
    match command {
        BackupCommand::Create { out, force } => create(config, &out, force).await,
        BackupCommand::Restore { file, replace } => restore(config, &file, replace).await,
    }
}

async fn create(config: Config, out: &Path, force: bool) -> Result<(), String> {
    if out.exists() && !force {
        return Err(format!("{} exists already: choose another file, or replace it with --force", out.display()));
    }
    let passphrase = passphrase(true)?;
    server::backup::validate_passphrase(&passphrase).map_err(describe)?;
    let services = server::startup::open(config).await.map_err(|e| e.to_string())?;
    let created = server::backup::create(services.backup(), &Actor::operator(), &passphrase).await;
    services.db.close().await;
    let created = created.map_err(describe)?;
    server::keyring::write_private_file(out, &created.file).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("Wrote {} ({} bytes): {}.", out.display(), created.file.len(), created.counts);
    eprintln!(
        "The backup holds every secret, encrypted with the passphrase. Keep the passphrase apart from the file: \
         without it nobody (you included) can open the backup."
    );
    Ok(())
}

async fn restore(config: Config, file: &Path, replace: bool) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let passphrase = passphrase(false)?;
    // Decrypted and checked before the database is even opened: a wrong passphrase or a damaged
    // file leaves everything (a fresh data folder included) as it was.
    let backup = server::backup::decrypt(bytes, &passphrase).await.map_err(describe)?;
    drop(passphrase);
    let services = server::startup::open(config).await.map_err(|e| e.to_string())?;
    let restored = server::backup::apply(services.backup(), &Actor::operator(), &backup, replace).await;
    services.db.close().await;
    let restored = restored.map_err(describe)?;
    let h = &restored.header;
    println!("Restored {} (made {} on {}): {}.", file.display(), h.created_at, h.source.public_url, restored.counts);
    println!(
        "Every secret is now sealed with this instance's master key {}. Restart the servers that use this database; \
         people sign in again, and Salesforce sessions are minted again on first use.",
        restored.key_id
    );
    Ok(())
}
