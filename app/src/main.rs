//! The `connvault` binary: `serve` (the default), the operator's commands, encrypted backups
//! (`cli_backup`), and promotion against a running server (`cli_promote`).

mod cli_backup;
mod cli_promote;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use server::audit::Actor;
use server::config::Config;
use server::secret::SecretString;

#[derive(Parser)]
#[command(name = "connvault", version, about = "A connection and credential vault for integrations", long_about = None)]
struct Cli {
    /// Optional TOML configuration file (environment variables override it). Also CONNVAULT_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app and the API (the default).
    Serve,
    /// Re-seal every secret under a new master key, in one transaction.
    RotateMasterKey {
        /// Afterwards, remove the old keys from the key file (only once nothing uses them).
        #[arg(long)]
        retire_old: bool,
    },
    /// List, add, rename and reorder environments.
    #[command(subcommand)]
    Environment(EnvCommand),
    /// Manage connections from the command line.
    #[command(subcommand)]
    Connection(ConnCommand),
    /// Create accounts and set roles from the command line.
    #[command(subcommand)]
    User(UserCommand),
    /// Create API keys from the command line (the key is printed once).
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Promote one environment's integrations, connection descriptors and bindings to another, on
    /// a running server (--url or CONNVAULT_URL; keys from CONNVAULT_API_KEY, or
    /// CONNVAULT_SOURCE_API_KEY / CONNVAULT_TARGET_API_KEY). Exit 0 done, 2 conflicts, 1 error.
    Promote(cli_promote::PromoteArgs),
    /// Write an environment's promotion bundle to a file (or standard output), from a running server.
    Export(cli_promote::ExportArgs),
    /// Import a promotion bundle file into an environment of a running server (plans first;
    /// exit 0 done, 2 conflicts, 1 error).
    Import(cli_promote::ImportArgs),
    /// Encrypted backups of the whole instance (secrets included), and restoring one.
    #[command(subcommand)]
    Backup(cli_backup::BackupCommand),
    /// Serve a stand-in of Salesforce's token endpoint with a page that plays the Salesforce admin,
    /// for local demos (not Salesforce; connvault reaches it only with CONNVAULT_ALLOW_LOOPBACK=1).
    DevSalesforce {
        /// Listen address; its URL is the login URL of the demo connection.
        #[arg(long, default_value = "127.0.0.1:8089")]
        addr: std::net::SocketAddr,
        /// Answer REST API queries after this many milliseconds, as a real org takes time to
        /// (for benchmarks of the proxy beside direct calls).
        #[arg(long, default_value_t = 0)]
        api_latency_ms: u64,
    },
    /// Serve a stand-in OAuth 2.0 authorization server (login and consent page, PKCE and
    /// redirect URI checks, refresh-token rotation, revocation, userinfo) with a page that
    /// registers clients, for local demos of the oauth2 provider.
    DevOauth2 {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8094")]
        addr: std::net::SocketAddr,
    },
    /// Serve a stand-in of Microsoft Entra ID's token endpoint, a SharePoint site and a Dataverse
    /// environment, with a page that plays the Entra admin, for local demos (not Microsoft;
    /// connvault reaches it only with CONNVAULT_ALLOW_LOOPBACK=1).
    DevMicrosoft {
        /// Listen address; its URL is the authority URL of the demo connection (SharePoint and
        /// Dataverse listen on two more ports, printed at start).
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: std::net::SocketAddr,
    },
    /// Serve a stand-in of Workato's developer API (users/me, folders, members) with one DEV API
    /// client, whose token it prints, for local demos (not Workato; connvault reaches it only
    /// with CONNVAULT_ALLOW_LOOPBACK=1, as the connection's base_url).
    DevWorkato {
        /// Listen address; `http://ADDR/api/` is the demo connection's base URL.
        #[arg(long, default_value = "127.0.0.1:8092")]
        addr: std::net::SocketAddr,
    },
    /// Serve a stand-in of an SAP OData v2 service (API_BUSINESS_PARTNER, with CSRF tokens) and
    /// an OAuth token endpoint, with a demo user, API key and client printed at start, for local
    /// demos (not SAP; connvault reaches it only with CONNVAULT_ALLOW_LOOPBACK=1).
    DevSap {
        /// Listen address; the service URL and token URL are under it (printed at start).
        #[arg(long, default_value = "127.0.0.1:8091")]
        addr: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key: --grant ENV:RESOURCE:ACCESS (ENV and RESOURCE may be *, ACCESS read, write or rw).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long = "grant", value_name = "ENV:RESOURCE:ACCESS", required = true)]
        grants: Vec<String>,
        /// Only from these addresses or CIDR ranges (repeat).
        #[arg(long = "allow-from", value_name = "CIDR")]
        allowed: Vec<String>,
        /// RFC 3339 expiry, e.g. 2027-06-30T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from the terminal, or from standard input when it
    /// is not a terminal.
    Create {
        #[arg(long)]
        email: String,
        /// The account manages people and environments, and is an administrator everywhere.
        #[arg(long)]
        owner: bool,
    },
    /// Give a user a role in an environment (administrator, developer, viewer, or none).
    Role {
        #[arg(long)]
        email: String,
        #[arg(long = "env")]
        environment: String,
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum EnvCommand {
    /// The environments in promotion order.
    List,
    /// Add an environment (at the end of the order unless --position is given).
    Add {
        name: String,
        /// 1-based place in the promotion order.
        #[arg(long)]
        position: Option<usize>,
    },
    /// Rename an environment; connections and secrets stay with it.
    Rename { name: String, new_name: String },
    /// Move an environment to a 1-based place in the promotion order.
    Move {
        name: String,
        #[arg(long)]
        position: usize,
    },
}

#[derive(Subcommand)]
enum ConnCommand {
    /// Create a connection. Secrets given as NAME=- are read from standard input.
    Create {
        #[arg(long = "env")]
        environment: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        provider: String,
        /// A non-secret setting, NAME=VALUE (repeat).
        #[arg(long = "setting", value_name = "NAME=VALUE")]
        settings: Vec<String>,
        /// A secret, NAME=VALUE or NAME=- to read it from standard input (repeat).
        #[arg(long = "secret", value_name = "NAME=VALUE")]
        secrets: Vec<String>,
    },
    /// List an environment's connections (no secret values, ever).
    List {
        #[arg(long = "env")]
        environment: String,
    },
}

fn split_pair(text: &str, what: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{what} {text:?} must look like NAME=VALUE")),
    }
}

/// A password from the terminal (twice, not echoed) or, when stdin is not a terminal, one line.
fn read_password() -> Result<SecretString, String> {
    read_secret_line("Password", true)
}

/// A secret (`what`: "Password"; the prompt asks for at least 12 characters) from the terminal
/// (not echoed; twice when `confirm`) or, when stdin is not a terminal, one line.
fn read_secret_line(what: &str, confirm: bool) -> Result<SecretString, String> {
    let lower = what.to_lowercase();
    if std::io::stdin().is_terminal() {
        let first = prompt_hidden(&format!("{what} (at least 12 characters): "))?;
        if confirm {
            let second = prompt_hidden(&format!("{what} again: "))?;
            if !first.ct_eq(&second) {
                return Err(format!("the two {lower}s differ"));
            }
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the {lower} from standard input: {e}"))?;
    let password = SecretString::new(line.trim_end_matches(['\n', '\r']).to_string());
    zeroize_string(&mut line);
    Ok(password)
}

fn zeroize_string(s: &mut String) {
    // Overwrite before freeing: the buffer held a secret.
    zeroize::Zeroize::zeroize(s);
}

/// Reads a line with terminal echo switched off (`stty -echo`).
fn prompt_hidden(prompt: &str) -> Result<SecretString, String> {
    eprint!("{prompt}");
    let _ = std::process::Command::new("stty").arg("-echo").stdin(std::process::Stdio::inherit()).status();
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    let _ = std::process::Command::new("stty").arg("echo").stdin(std::process::Stdio::inherit()).status();
    eprintln!();
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    let password = SecretString::new(line.trim_end_matches(['\n', '\r']).to_string());
    zeroize_string(&mut line);
    Ok(password)
}

fn read_stdin_secret() -> Result<SecretString, String> {
    if std::io::stdin().is_terminal() {
        return prompt_hidden("Secret value: ");
    }
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).map_err(|e| format!("cannot read the secret from standard input: {e}"))?;
    let secret = SecretString::new(s.trim_end_matches(['\n', '\r']).to_string());
    zeroize_string(&mut s);
    Ok(secret)
}

async fn run_command(config: Config, command: Command) -> Result<(), String> {
    if let Command::RotateMasterKey { retire_old } = command {
        let report = server::rotate::rotate_master_key(&config, retire_old).await.map_err(|e| e.to_string())?;
        println!("Re-sealed {} secrets: master key {} → {}.", report.resealed, report.previous_key_id, report.new_key_id);
        if report.retired.is_empty() {
            println!("The old key stays in the keyring. Once every instance has been restarted (or has picked up the new key), retire it with `connvault rotate-master-key --retire-old`, then back up the key file again.");
        } else {
            println!("Retired keys: {}. Back up the key file again now.", report.retired.join(", "));
        }
        return Ok(());
    }
    if let Command::Backup(command) = command {
        return cli_backup::run(config, command).await;
    }
    let services = server::startup::open(config).await.map_err(|e| e.to_string())?;
    let (db, vault) = (&services.db, &services.vault);
    let actor = Actor::operator();
    let result = match command {
        Command::Environment(EnvCommand::List) => server::environments::list(db).await.map(|envs| {
            for e in envs {
                println!("{}. {}", e.position, e.name);
            }
        }),
        Command::Environment(EnvCommand::Add { name, position }) => {
            server::environments::add(db, &actor, &name, position).await.map(|e| println!("Added {} at position {}.", e.name, e.position))
        }
        Command::Environment(EnvCommand::Rename { name, new_name }) => {
            server::environments::rename(db, &actor, &name, &new_name).await.map(|e| println!("Renamed {name} to {}.", e.name))
        }
        Command::Environment(EnvCommand::Move { name, position }) => server::environments::move_to(db, &actor, &name, position).await.map(|envs| {
            println!("Promotion order: {}", envs.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(" → "));
        }),
        Command::Connection(ConnCommand::Create { environment, name, provider, settings, secrets }) => {
            let def = server::providers::get(&provider);
            let mut map = serde_json::Map::new();
            for s in &settings {
                let (k, v) = split_pair(s, "--setting")?;
                let value = def.and_then(|d| d.field(&k)).map_or_else(|| serde_json::Value::String(v.clone()), |f| f.value_from_text(&v));
                map.insert(k, value);
            }
            let mut secret_map = std::collections::BTreeMap::new();
            let mut stdin_used = false;
            for s in &secrets {
                let (k, v) = split_pair(s, "--secret")?;
                let value = if v == "-" {
                    if stdin_used {
                        return Err("only one secret can be read from standard input".into());
                    }
                    stdin_used = true;
                    read_stdin_secret()?
                } else {
                    SecretString::new(v)
                };
                secret_map.insert(k, value);
            }
            let input = server::connections::NewConnection { name, provider, settings: map, secrets: secret_map };
            server::connections::create(db, vault, &actor, &environment, input).await.map(|c| println!("Created connection {} in {}.", c.name, c.environment))
        }
        Command::Connection(ConnCommand::List { environment }) => server::connections::list(db, &environment, &Default::default()).await.map(|page| {
            for c in page.items {
                let secrets: Vec<String> = c.secrets_set.iter().map(|(f, at)| format!("{f} set {at}")).collect();
                println!("{}\t{}\t{}", c.name, c.provider, secrets.join(", "));
            }
        }),
        Command::User(UserCommand::Create { email, owner }) => match read_password() {
            Ok(password) => server::users::create(db, &actor, &email, &password, owner)
                .await
                .map(|u| println!("Created {}{}.", u.email, if u.is_owner { " (owner)" } else { "" })),
            Err(e) => return Err(e),
        },
        Command::User(UserCommand::Role { email, environment, role }) => {
            let role = match role.as_str() {
                "none" => None,
                other => {
                    Some(server::users::Role::parse(other).ok_or_else(|| format!("--role must be administrator, developer, viewer or none, not {other:?}"))?)
                }
            };
            match server::users::list(db).await {
                Ok(users) => match users.into_iter().find(|u| u.email.eq_ignore_ascii_case(&email)) {
                    Some(u) => server::users::set_role(db, &actor, u.id, &environment, role).await.map(|u| {
                        println!("{} now has: {}", u.email, u.roles.iter().map(|(e, r)| format!("{e} {}", r.as_str())).collect::<Vec<_>>().join(", "))
                    }),
                    None => Err(server::Error::NotFound(format!("no account for {email}"))),
                },
                Err(e) => Err(e),
            }
        }
        Command::ApiKey(ApiKeyCommand::Create { name, grants, allowed, expires_at }) => {
            let mut parsed = Vec::new();
            for g in &grants {
                match server::api_keys::parse_grant(g) {
                    Ok(mut v) => parsed.append(&mut v),
                    Err(e) => return Err(e.to_string()),
                }
            }
            let input = server::api_keys::NewApiKey { name, grants: parsed, allowed_addresses: allowed, expires_at };
            server::api_keys::create(db, &actor, server::api_keys::Creator::Operator, input).await.map(|(key, value)| {
                eprintln!("Created API key {} ({}). It is shown once; store it now:", key.name, key.prefix);
                println!("{}", value.expose_secret());
            })
        }
        Command::Serve
        | Command::RotateMasterKey { .. }
        | Command::Backup(_)
        | Command::DevSalesforce { .. }
        | Command::DevMicrosoft { .. }
        | Command::DevOauth2 { .. }
        | Command::DevWorkato { .. }
        | Command::DevSap { .. }
        | Command::Promote(_)
        | Command::Export(_)
        | Command::Import(_) => unreachable!("handled elsewhere"),
    };
    services.db.close().await;
    result.map_err(describe)
}

/// An error as the command line shows it: each field's problem on its own line.
fn describe(e: server::Error) -> String {
    match e {
        server::Error::Validation(errors) => {
            let lines: Vec<String> = errors.iter().map(|e| format!("  {}: {}", e.field, e.message)).collect();
            format!("the input needs fixing:\n{}", lines.join("\n"))
        }
        other => other.public_message(),
    }
}

async fn serve(config: Config) -> Result<(), String> {
    use axum::Router;
    use leptos::prelude::*;
    use leptos_axum::{generate_route_list, LeptosRoutes};

    let services = server::startup::open(config).await.map_err(|e| e.to_string())?;
    server::connect::spawn_keep_alive(services.clone());
    let conf = get_configuration(None).map_err(|e| format!("Leptos configuration: {e}"))?;
    let mut options = conf.leptos_options;
    if options.output_name.is_empty() {
        options.output_name = "connvault".into();
    }
    options.site_addr = services.config.site_addr;
    let addr = options.site_addr;
    let routes = generate_route_list(app::app::App);
    let context = {
        let services = services.clone();
        move || provide_context(services.clone())
    };
    let leptos_app = Router::new()
        .leptos_routes_with_context(&options, routes, context, {
            let options = options.clone();
            move || app::app::shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(app::app::shell))
        .with_state(options);
    let router = server::api::with_csrf_guard(server::api::router(services.clone()).merge(leptos_app), &services.config.public_url)
        .layer(tower_http::trace::TraceLayer::new_for_http());
    if let Some(link) = server::sessions::setup_link_if_needed(services.sessions()).await.map_err(|e| e.public_message())? {
        let bar = "!".repeat(link.len().min(100) + 4);
        eprintln!("\n{bar}\n! No account exists yet. Open this one-time link to create the owner account\n! (it works once and expires in {} hours):\n!\n! {link}\n{bar}\n", server::sessions::SETUP_LINK_HOURS);
    }

    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}. Set LEPTOS_SITE_ADDR to a free address"))?;
    // Email, webhook deliveries and scheduled checks run from the job queue in the database.
    let background = server::workers::start(&services).await.map_err(|e| e.public_message())?;
    tracing::info!("connvault listening on http://{addr} (public URL {})", services.config.public_url);
    // On SIGTERM or Ctrl-C: stop accepting, let requests in flight finish for up to
    // SHUTDOWN_DRAIN, keep the token use counted in memory, then close the database. A client
    // that holds a request open cannot keep the process alive past the drain. Headers must
    // arrive within CONNVAULT_HEADER_TIMEOUT_SECS, requests end within
    // CONNVAULT_REQUEST_TIMEOUT_SECS, and CONNVAULT_MAX_CONNECTIONS bounds open connections.
    let signalled = std::sync::Arc::new(tokio::sync::Notify::new());
    let limits = server::serve::Limits::from_config(&services.config);
    let server = server::serve::serve(listener, router, limits, {
        let signalled = signalled.clone();
        async move {
            shutdown_signal().await;
            signalled.notify_one();
        }
    });
    tokio::select! {
        served = server => served.map_err(|e| format!("server error: {e}"))?,
        _ = async { signalled.notified().await; tokio::time::sleep(SHUTDOWN_DRAIN).await } => {
            tracing::warn!("requests still open {} s after the signal; stopping without them", SHUTDOWN_DRAIN.as_secs());
        }
    }
    if tokio::time::timeout(SHUTDOWN_DRAIN, background.stop(&services)).await.is_err() {
        tracing::warn!("background jobs still running {} s after the signal; they run again after the restart", SHUTDOWN_DRAIN.as_secs());
    }
    if tokio::time::timeout(SHUTDOWN_DRAIN, services.db.close()).await.is_err() {
        tracing::warn!("database connections still busy {} s after the signal; exiting anyway", SHUTDOWN_DRAIN.as_secs());
    }
    Ok(())
}

/// How long a stopping server waits for requests in flight, and then for its database.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A mistake on the command line is an error like any other (exit 1): exit code 2 means
        // conflicts to promotion's commands.
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(1);
        }
        Err(e) => e.exit(),
    };
    // Promotion talks to a running server: no configuration, database or key of this machine.
    let command = match cli.command.unwrap_or(Command::Serve) {
        Command::Promote(args) => return cli_promote::promote(args).await,
        Command::Export(args) => return cli_promote::export(args).await,
        Command::Import(args) => return cli_promote::import(args).await,
        other => other,
    };
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("connvault: configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    server::logging::init(&config);
    let result = match command {
        Command::Serve => serve(config).await,
        Command::DevSalesforce { addr, api_latency_ms } => {
            server::providers::salesforce::standin::run_demo(addr, std::time::Duration::from_millis(api_latency_ms))
                .await
                .map_err(|e| format!("Salesforce stand-in on {addr}: {e}"))
        }
        Command::DevOauth2 { addr } => server::oauth_standin::run_demo(addr).await.map_err(|e| format!("OAuth 2.0 stand-in on {addr}: {e}")),
        Command::DevMicrosoft { addr } => server::entra::standin::run_demo(addr).await.map_err(|e| format!("Microsoft stand-in on {addr}: {e}")),
        Command::DevWorkato { addr } => server::providers::workato::standin::run_demo(addr).await.map_err(|e| format!("Workato stand-in on {addr}: {e}")),
        Command::DevSap { addr } => server::providers::sap_odata::standin::run_demo(addr).await.map_err(|e| format!("SAP stand-in on {addr}: {e}")),
        other => run_command(config, other).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("connvault: {message}");
            ExitCode::from(1)
        }
    }
}
