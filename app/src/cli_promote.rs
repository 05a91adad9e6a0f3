//! `connvault promote`, `connvault export` and `connvault import`: promotion (issue 6) against a
//! running server, over its REST API (`GET /api/v1/environments/{env}/export` and
//! `POST /api/v1/environments/{env}/import`).
//!
//! The server is `--url` or `CONNVAULT_URL`, never guessed. API keys come from the environment,
//! never from the command line (where `ps` and the shell's history would show them):
//! `CONNVAULT_API_KEY`, overridden per side by `CONNVAULT_SOURCE_API_KEY` (export, which needs
//! `promotion:read`) and `CONNVAULT_TARGET_API_KEY` (import, `promotion:write`).
//!
//! An import plans first and applies only a plan without conflicts, so that conflicts are
//! reported as a whole plan. Exit codes, for pipelines: 0 applied, or nothing to change, or a
//! plan without conflicts; 2 conflicts (a plan that shows them, or an apply refused with 409);
//! 1 anything else. Reports go to standard output; messages and progress to standard error.

use std::io::{IsTerminal, Read, Write};
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Bytes, HttpBody};
use clap::Args;
use http_body::{Frame, SizeHint};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use server::secret::SecretString;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Transfers larger than this show their progress, on a terminal.
const PROGRESS_FROM: u64 = 1024 * 1024;
/// The piece of an upload handed to the connection at a time (and so the progress step).
const UPLOAD_CHUNK: usize = 64 * 1024;
const SHARED_KEY: &str = "CONNVAULT_API_KEY";

#[derive(Args)]
pub struct ServerArg {
    /// The connvault server, e.g. https://vault.example.com (required: here or in CONNVAULT_URL).
    #[arg(long, env = "CONNVAULT_URL", value_name = "URL")]
    url: Option<String>,
}

#[derive(Args)]
pub struct ImportFlags {
    /// Only show what would change; write nothing.
    #[arg(long)]
    plan: bool,
    /// Take the bundle's settings where a target connection's differ (never its provider).
    #[arg(long)]
    overwrite_settings: bool,
    /// Create the connections the target lacks, with settings only, and bind to them (fill in
    /// their secrets there afterwards).
    #[arg(long)]
    create_placeholders: bool,
    /// Print the server's report as JSON instead of a table (for pipelines).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct PromoteArgs {
    /// The environment to promote from (its bundle is exported; key: promotion:read there).
    #[arg(long, value_name = "ENV")]
    from: String,
    /// The environment to promote to (the bundle is imported; key: promotion:write there).
    #[arg(long, value_name = "ENV")]
    to: String,
    #[command(flatten)]
    flags: ImportFlags,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The environment to export (key: promotion:read there).
    #[arg(long = "env", value_name = "ENV")]
    env: String,
    /// Where to write the bundle; - is standard output.
    #[arg(long, value_name = "FILE", default_value = "-")]
    out: String,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The environment to import into (key: promotion:write there).
    #[arg(long = "env", value_name = "ENV")]
    env: String,
    /// The bundle, as `connvault export` wrote it; - is standard input.
    #[arg(long, value_name = "FILE")]
    file: String,
    #[command(flatten)]
    flags: ImportFlags,
    #[command(flatten)]
    server: ServerArg,
}

/// How a command that ran to its end ended.
enum Done {
    Clean,
    /// The report (already printed) shows conflicts.
    Conflicts,
}

/// Why a command stopped, with what to do about it.
enum Failure {
    /// The target refused an apply for conflicts (exit 2).
    Conflicts(String),
    /// Anything else (exit 1).
    Error(String),
}

fn error(message: impl Into<String>) -> Failure {
    Failure::Error(message.into())
}

fn exit(result: Result<Done, Failure>) -> ExitCode {
    match result {
        Ok(Done::Clean) => ExitCode::SUCCESS,
        Ok(Done::Conflicts) => ExitCode::from(2),
        Err(Failure::Conflicts(message)) => {
            eprintln!("connvault: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Error(message)) => {
            eprintln!("connvault: {message}");
            ExitCode::from(1)
        }
    }
}

pub async fn promote(args: PromoteArgs) -> ExitCode {
    exit(run_promote(args).await)
}

pub async fn export(args: ExportArgs) -> ExitCode {
    exit(run_export(args).await)
}

pub async fn import(args: ImportArgs) -> ExitCode {
    exit(run_import(args).await)
}

async fn run_promote(args: PromoteArgs) -> Result<Done, Failure> {
    let remote = Remote::new(&args.server)?;
    if args.from.trim().eq_ignore_ascii_case(args.to.trim()) {
        return Err(error(format!("--from and --to are both {}: promotion goes from one environment to another", args.from)));
    }
    // Both keys are checked before anything is asked of the server.
    let source_key = Key::from_env(Side::Source, &args.from)?;
    let target_key = Key::from_env(Side::Target, &args.to)?;
    let bytes = remote.export(&args.from, &source_key).await?;
    let bundle = Bundle { bytes, label: format!("the bundle exported from {}", args.from) };
    import_planned(&remote, &args.to, &target_key, &bundle, &args.flags).await
}

async fn run_export(args: ExportArgs) -> Result<Done, Failure> {
    let remote = Remote::new(&args.server)?;
    let key = Key::from_env(Side::Source, &args.env)?;
    let bytes = remote.export(&args.env, &key).await?;
    let mut text = bytes.to_vec();
    if !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    if args.out == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&text).and_then(|()| stdout.flush()).map_err(|e| error(format!("cannot write the bundle to standard output: {e}")))?;
        return Ok(Done::Clean);
    }
    // Written beside the file, then renamed: a failed export never leaves half a bundle.
    let partial = format!("{}.partial", args.out);
    std::fs::write(&partial, &text).and_then(|()| std::fs::rename(&partial, &args.out)).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        error(format!("cannot write {}: {e}", args.out))
    })?;
    eprintln!("Wrote the bundle of {} to {} ({}).", args.env, args.out, contents(&bytes));
    Ok(Done::Clean)
}

async fn run_import(args: ImportArgs) -> Result<Done, Failure> {
    let remote = Remote::new(&args.server)?;
    let key = Key::from_env(Side::Target, &args.env)?;
    let bundle = Bundle::read(&args.file)?;
    import_planned(&remote, &args.env, &key, &bundle, &args.flags).await
}

/// Plans the import; shows the plan and stops there with `--plan` or when it has conflicts,
/// else applies it and shows what was done.
async fn import_planned(remote: &Remote, env: &str, key: &Key, bundle: &Bundle, flags: &ImportFlags) -> Result<Done, Failure> {
    let plan = remote.import(env, key, bundle, "plan", flags).await?;
    let conflicts = plan.count("conflict");
    let site = remote.shown();
    if flags.plan || conflicts > 0 {
        plan.print(env, &site, flags);
        if conflicts == 0 {
            return Ok(Done::Clean);
        }
        eprintln!(
            "connvault: {} with {env}: nothing was imported. Change what the table names in {env}, or add --overwrite-settings where only shared settings differ",
            plural(conflicts, "conflict")
        );
        return Ok(Done::Conflicts);
    }
    let applied = remote.import(env, key, bundle, "apply", flags).await?;
    applied.print(env, &site, flags);
    Ok(Done::Clean)
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// "2 integrations, 1 connection, 1 binding": what a bundle carries.
fn contents(bundle: &[u8]) -> String {
    let value: Value = serde_json::from_slice(bundle).unwrap_or_default();
    let count = |field: &str, word: &str| plural(value[field].as_array().map_or(0, Vec::len), word);
    format!("{}, {}, {}", count("integrations", "integration"), count("connections", "connection"), count("bindings", "binding"))
}

/// The server's own words for its options, as this command spells them.
fn cli_words(text: &str) -> String {
    text.replace("overwrite_settings=true", "--overwrite-settings").replace("create_placeholders=true", "--create-placeholders").replace("mode=plan", "--plan")
}

#[derive(Clone, Copy)]
enum Side {
    Source,
    Target,
}

impl Side {
    fn var(self) -> &'static str {
        match self {
            Side::Source => "CONNVAULT_SOURCE_API_KEY",
            Side::Target => "CONNVAULT_TARGET_API_KEY",
        }
    }

    fn access(self) -> &'static str {
        match self {
            Side::Source => "read",
            Side::Target => "write",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Side::Source => "export from",
            Side::Target => "import into",
        }
    }
}

/// An API key and the variable it came from (named in every message about it).
struct Key {
    value: SecretString,
    var: &'static str,
    side: Side,
}

impl Key {
    fn from_env(side: Side, env: &str) -> Result<Key, Failure> {
        for var in [side.var(), SHARED_KEY] {
            if let Some(value) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
                return Ok(Key { value: SecretString::new(value.trim().to_string()), var, side });
            }
        }
        Err(error(format!("no API key to {} {env}: set {}", side.verb(), Key::advice(SHARED_KEY, side, env))))
    }

    /// "CONNVAULT_API_KEY (or CONNVAULT_SOURCE_API_KEY for DEV alone) to a key with promotion:read on DEV".
    fn advice(var: &str, side: Side, env: &str) -> String {
        let alone = if var == SHARED_KEY { format!(" (or {} for {env} alone)", side.var()) } else { String::new() };
        format!(
            "{var}{alone} to a key with promotion:{access} on {env} (on the server: connvault api-key create --name promotion --grant {env}:promotion:{access})",
            access = side.access()
        )
    }
}

/// A bundle to import, and how messages call it.
struct Bundle {
    bytes: Bytes,
    label: String,
}

impl Bundle {
    /// Reads a bundle file (or standard input for `-`) and checks that it is JSON at all; the
    /// server checks the rest, each problem by its path in the bundle.
    fn read(file: &str) -> Result<Bundle, Failure> {
        let (bytes, label) = if file == "-" {
            if std::io::stdin().is_terminal() {
                return Err(error("--file - reads the bundle from standard input: pipe it in (connvault import … --file - < bundle.json)"));
            }
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).map_err(|e| error(format!("cannot read the bundle from standard input: {e}")))?;
            (bytes, "the bundle from standard input".to_string())
        } else {
            let bytes = std::fs::read(file).map_err(|e| error(format!("cannot read {file}: {e}")))?;
            (bytes, format!("the bundle in {file}"))
        };
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            return Err(error(format!(
                "{label} is not a bundle: it is not JSON ({e}). Write it with connvault export --env ENV --out FILE, and do not edit it"
            )));
        }
        Ok(Bundle { bytes: Bytes::from(bytes), label })
    }
}

/// The server's report of a plan or an apply: the JSON as it came (for `--json`) and its parts.
struct Answer {
    raw: Value,
    report: Report,
}

#[derive(Deserialize)]
struct Report {
    mode: String,
    changes: Vec<Change>,
    #[serde(default)]
    needs_connection: Vec<String>,
    applied: bool,
    /// What the target still needs (servers before issue 18 send none).
    #[serde(default)]
    checklist: Vec<Step>,
    #[serde(default)]
    ignored_settings: Vec<Ignored>,
}

#[derive(Deserialize)]
struct Step {
    text: String,
    path: String,
}

#[derive(Deserialize)]
struct Ignored {
    connection: String,
    settings: Vec<String>,
}

#[derive(Deserialize)]
struct Change {
    kind: String,
    name: String,
    action: String,
    detail: String,
}

impl Answer {
    fn count(&self, action: &str) -> usize {
        self.report.changes.iter().filter(|c| c.action == action).count()
    }

    fn print(&self, env: &str, site: &str, flags: &ImportFlags) {
        let text = if flags.json { format!("{:#}\n", self.raw) } else { self.table(env, site, flags.plan) };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    }

    /// The changes as a table (kind, name, action, detail), then what will still need a
    /// connection and what an older bundle carried that was ignored, one summary line (the
    /// plan's words, or the past tense after an apply), and the checklist of what `env` still
    /// needs, each with its page on `site`.
    fn table(&self, env: &str, site: &str, asked_for_plan: bool) -> String {
        let r = &self.report;
        let planned = r.mode == "plan" || !r.applied;
        let mut out = if planned { format!("Plan for {env}:\n") } else { format!("Imported into {env}:\n") };
        let headers = ["KIND", "NAME", "ACTION", "DETAIL"];
        let rows: Vec<[String; 4]> = r.changes.iter().map(|c| [c.kind.clone(), c.name.clone(), c.action.clone(), cli_words(&c.detail)]).collect();
        if rows.is_empty() {
            out.push_str("  (the bundle is empty: nothing to import)\n");
        } else {
            let width = |i: usize| rows.iter().map(|row| row[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0);
            let widths = [width(0), width(1), width(2)];
            let line = |cells: [&str; 4]| {
                format!("  {:<w0$}  {:<w1$}  {:<w2$}  {}\n", cells[0], cells[1], cells[2], cells[3], w0 = widths[0], w1 = widths[1], w2 = widths[2])
            };
            out.push_str(&line(headers));
            for row in &rows {
                out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
            }
        }
        for need in &r.needs_connection {
            out.push_str(&format!("needs a connection: {}\n", cli_words(need)));
        }
        for i in &r.ignored_settings {
            out.push_str(&format!("ignored: {}'s {} (settings of one environment are never carried)\n", i.connection, i.settings.join(", ")));
        }
        let conflicts = self.count("conflict");
        let (created, updated) = if planned { ("to create", "to update") } else { ("created", "updated") };
        out.push_str(&format!(
            "{} {created}, {} {updated}, {} unchanged, {}",
            self.count("create"),
            self.count("update"),
            self.count("unchanged"),
            plural(conflicts, "conflict")
        ));
        if planned {
            out.push_str(" (planned; nothing was written");
            out.push_str(if asked_for_plan && conflicts == 0 { ": run without --plan to apply)" } else { ")" });
        } else if self.count("create") + self.count("update") == 0 {
            out.push_str(" (nothing to change)");
        }
        out.push('\n');
        if !r.checklist.is_empty() {
            out.push_str(&format!("Still to do in {env}{}:\n", if planned { " after this" } else { "" }));
            for step in &r.checklist {
                out.push_str(&format!("  - {}: {site}{}\n", step.text, step.path));
            }
        }
        out
    }
}

/// A connvault server's promotion API.
struct Remote {
    base: Url,
    http: reqwest::Client,
}

/// One request, for the messages that explain its failure.
struct Call<'a> {
    env: &'a str,
    key: &'a Key,
    bundle: Option<&'a str>,
}

/// `{"error": {"code", "message", "details": [{"field", "message"}]}}`, the server's errors.
#[derive(Deserialize)]
struct ErrorBody {
    error: Problem,
}

#[derive(Deserialize)]
struct Problem {
    message: String,
    #[serde(default)]
    details: Vec<FieldProblem>,
}

#[derive(Deserialize)]
struct FieldProblem {
    field: String,
    message: String,
}

impl Remote {
    fn new(server: &ServerArg) -> Result<Remote, Failure> {
        let text = server
            .url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| error("which server? Give --url URL or set CONNVAULT_URL to the connvault server's address (e.g. https://vault.example.com)"))?;
        let base = Url::parse(text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| error(format!("--url / CONNVAULT_URL {text:?} is not an http:// or https:// address such as https://vault.example.com")))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("connvault-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .build()
            .map_err(|e| error(format!("the HTTP client could not be set up: {}", server::outbound::innermost(&e))))?;
        Ok(Remote { base, http })
    }

    /// The server's address for messages (without any user name or password in it).
    fn shown(&self) -> String {
        let mut url = self.base.clone();
        let _ = url.set_password(None);
        let _ = url.set_username("");
        url.as_str().trim_end_matches('/').to_string()
    }

    fn endpoint(&self, env: &str, action: &str) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1", "environments", env, action]);
        }
        url
    }

    /// The bundle of `env`, exactly as the server wrote it.
    async fn export(&self, env: &str, key: &Key) -> Result<Bytes, Failure> {
        let request = self.http.get(self.endpoint(env, "export")).bearer_auth(key.value.expose_secret());
        let call = Call { env, key, bundle: None };
        let bytes = self.exchange(request, &call, &format!("Downloading the bundle of {env}")).await?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if value["format"] != "connvault-bundle" {
            return Err(error(format!(
                "{} answered the export of {env} with something that is not a connvault bundle; check --url / CONNVAULT_URL",
                self.shown()
            )));
        }
        Ok(bytes)
    }

    /// Plans (`mode` "plan") or applies ("apply") an import of `bundle` into `env`.
    async fn import(&self, env: &str, key: &Key, bundle: &Bundle, mode: &str, flags: &ImportFlags) -> Result<Answer, Failure> {
        let mut url = self.endpoint(env, "import");
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("mode", mode);
            if flags.overwrite_settings {
                query.append_pair("overwrite_settings", "true");
            }
            if flags.create_placeholders {
                query.append_pair("create_placeholders", "true");
            }
        }
        let progress = Progress::new(format!("Sending {} to {env} ({mode})", bundle.label), Some(bundle.bytes.len() as u64));
        let body = if progress.visible() {
            reqwest::Body::wrap(Upload { data: bundle.bytes.clone(), sent: 0, progress })
        } else {
            reqwest::Body::from(bundle.bytes.clone())
        };
        let request = self.http.post(url).bearer_auth(key.value.expose_secret()).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        let call = Call { env, key, bundle: Some(&bundle.label) };
        let bytes = self.exchange(request, &call, &format!("Receiving the report of {env}")).await?;
        let raw: Value =
            serde_json::from_slice(&bytes).map_err(|e| error(format!("{} answered the import with something that is not JSON: {e}", self.shown())))?;
        let report = Report::deserialize(&raw)
            .map_err(|e| error(format!("{} answered the import with something that is not an import report ({e}); is it a connvault server?", self.shown())))?;
        Ok(Answer { raw, report })
    }

    /// Sends a request and reads its whole answer (with progress when it is large); an error
    /// status becomes a message that says what to fix.
    async fn exchange(&self, request: reqwest::RequestBuilder, call: &Call<'_>, label: &str) -> Result<Bytes, Failure> {
        let mut response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let mut progress = Progress::new(label, response.content_length());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
            body.extend_from_slice(&chunk);
            progress.advance(body.len() as u64);
        }
        progress.finish();
        if status.is_success() {
            Ok(body.into())
        } else {
            Err(self.refused(status, &body, call))
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> Failure {
        let server = self.shown();
        let why = server::outbound::innermost(e);
        if e.is_timeout() {
            error(format!("the server at {server} did not answer in time (10 s to connect, 5 minutes in all): {why}"))
        } else if e.is_connect() {
            error(format!("cannot reach the server at {server}: {why}. Check --url / CONNVAULT_URL, and that connvault serve runs there"))
        } else {
            error(format!("the exchange with the server at {server} failed: {why}"))
        }
    }

    /// What an error answer means here, and what to do about it.
    fn refused(&self, status: StatusCode, body: &[u8], call: &Call<'_>) -> Failure {
        let server = self.shown();
        let (env, side, var) = (call.env, call.key.side, call.key.var);
        let (message, details, from_connvault) = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => (cli_words(&b.error.message), b.error.details, true),
            Err(_) => {
                let text = String::from_utf8_lossy(body).split_whitespace().collect::<Vec<_>>().join(" ");
                let text: String = text.chars().take(200).collect();
                (if text.is_empty() { status.canonical_reason().unwrap_or_default().to_string() } else { text }, Vec::new(), false)
            }
        };
        let said = format!("{} {message}", status.as_u16());
        let lines: String = details.iter().map(|d| format!("\n  {}: {}", d.field, cli_words(&d.message))).collect();
        let bundle = call.bundle.unwrap_or("the bundle");
        match status {
            StatusCode::UNAUTHORIZED => error(format!("the server at {server} refused the key in {var}: {said}. Set {}", Key::advice(var, side, env))),
            StatusCode::FORBIDDEN => error(format!("the key in {var} may not {} {env} on {server}: {said}. Set {}", side.verb(), Key::advice(var, side, env))),
            StatusCode::NOT_FOUND if from_connvault => error(format!("the server at {server} answered {said}")),
            StatusCode::NOT_FOUND => {
                error(format!("{server} has no promotion API ({said}); check --url / CONNVAULT_URL: it is the address of connvault serve"))
            }
            StatusCode::CONFLICT => Failure::Conflicts(format!(
                "{env} refused the import: {said}{lines}\nChange these in {env}, or add --overwrite-settings where only settings differ; review with --plan"
            )),
            StatusCode::PAYLOAD_TOO_LARGE => error(format!("{bundle} is too large for the server at {server}: {said}")),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY if call.bundle.is_some() => {
                error(format!("{bundle} was refused by {server}: {said}{lines}\nExport the bundle again (connvault export) rather than editing it"))
            }
            s if s.is_server_error() => error(format!("the server at {server} failed: {said}{lines}; its log has the details")),
            _ => error(format!("the server at {server} answered {said}{lines}")),
        }
    }
}

/// A transfer's progress on standard error: only on a terminal, only past `PROGRESS_FROM`,
/// redrawn at most ten times a second. Never on standard output.
struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    on_terminal: bool,
    /// When the line was last drawn, and how far it had got.
    drawn: Option<(Instant, u64)>,
}

impl Progress {
    fn new(label: impl Into<String>, total: Option<u64>) -> Progress {
        Progress { label: label.into(), total, done: 0, on_terminal: std::io::stderr().is_terminal(), drawn: None }
    }

    fn visible(&self) -> bool {
        self.on_terminal && self.total.unwrap_or(0).max(self.done) > PROGRESS_FROM
    }

    fn advance(&mut self, done: u64) {
        self.done = done;
        let finished = self.total == Some(done);
        if self.visible() && (finished || self.drawn.is_none_or(|(at, _)| at.elapsed() >= Duration::from_millis(100))) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.drawn = Some((Instant::now(), self.done));
        eprint!("\r{}\x1b[K", progress_line(&self.label, self.done, self.total));
        let _ = std::io::stderr().flush();
    }

    /// Ends the progress line (brought up to date), if one was drawn.
    fn finish(&mut self) {
        if let Some((_, shown)) = self.drawn {
            if shown != self.done {
                self.draw();
            }
            eprintln!();
            self.drawn = None;
        }
    }
}

/// "Sending … [#########...........]  4.5 of 10.0 MB  45%".
fn progress_line(label: &str, done: u64, total: Option<u64>) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    match total.filter(|t| *t > 0) {
        Some(total) => {
            let done = done.min(total);
            let filled = (done * 20 / total) as usize;
            let bar = format!("{}{}", "#".repeat(filled), ".".repeat(20 - filled));
            format!("{label} [{bar}] {:.1} of {:.1} MB {:>3}%", done as f64 / MB, total as f64 / MB, done * 100 / total)
        }
        None => format!("{label} {:.1} MB", done as f64 / MB),
    }
}

/// A bundle as a request body handed over in pieces, so that its upload shows progress.
struct Upload {
    data: Bytes,
    sent: usize,
    progress: Progress,
}

impl HttpBody for Upload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.sent >= this.data.len() {
            return Poll::Ready(None);
        }
        let end = (this.sent + UPLOAD_CHUNK).min(this.data.len());
        let piece = this.data.slice(this.sent..end);
        this.sent = end;
        this.progress.advance(end as u64);
        if end == this.data.len() {
            this.progress.finish();
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_show_the_share_done() {
        let mb = 1024 * 1024;
        assert_eq!(progress_line("Up", 0, Some(4 * mb)), "Up [....................] 0.0 of 4.0 MB   0%");
        assert_eq!(progress_line("Up", mb, Some(4 * mb)), "Up [#####...............] 1.0 of 4.0 MB  25%");
        assert_eq!(progress_line("Up", 4 * mb, Some(4 * mb)), "Up [####################] 4.0 of 4.0 MB 100%");
        assert_eq!(progress_line("Down", 3 * mb / 2, None), "Down 1.5 MB");
    }

    #[test]
    fn small_transfers_and_pipes_show_no_progress() {
        let mut p = Progress { label: "x".into(), total: Some(PROGRESS_FROM), done: 0, on_terminal: true, drawn: None };
        assert!(!p.visible(), "1 MB itself is not large");
        p.total = Some(PROGRESS_FROM + 1);
        assert!(p.visible());
        p.on_terminal = false;
        assert!(!p.visible(), "never when standard error is not a terminal");
        p.advance(PROGRESS_FROM + 1);
        assert!(p.drawn.is_none());
    }

    #[test]
    fn server_option_names_become_flags() {
        assert_eq!(
            cli_words("import with overwrite_settings=true, or create_placeholders=true (plan with mode=plan to review)"),
            "import with --overwrite-settings, or --create-placeholders (plan with --plan to review)"
        );
    }

    #[test]
    fn keys_are_advised_by_the_variable_in_use() {
        let shared = Key::advice(SHARED_KEY, Side::Source, "DEV");
        assert!(shared.starts_with("CONNVAULT_API_KEY (or CONNVAULT_SOURCE_API_KEY for DEV alone) to a key with promotion:read on DEV"), "{shared}");
        let own = Key::advice("CONNVAULT_TARGET_API_KEY", Side::Target, "QA");
        assert!(own.starts_with("CONNVAULT_TARGET_API_KEY to a key with promotion:write on QA"), "{own}");
        assert!(own.contains("--grant QA:promotion:write"), "{own}");
    }
}
