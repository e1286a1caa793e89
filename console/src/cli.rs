//! The `helpline` command line: raw arguments → validated ones (clap, then domain types) → one
//! async task. Errors end the process with a message and a non-zero exit code, never a panic.

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, Settings};
use crate::db::users::{self, NewUser, Password, Role, UserChange, UserName};
use crate::db::Db;
use crate::startup::{shutdown_signal, Application};
use crate::telemetry;
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ivr::domain::{Language, ServiceArea};
use std::io::Read;
use std::process::ExitCode;

/// The multilingual helpline: voice menus over SIP and webhooks, and the operators' console.
#[derive(Debug, Parser)]
#[command(name = "helpline", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (HTTP, and SIP when enabled) until SIGINT or SIGTERM.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Load and check the settings, print them (secrets hidden) and exit.
    CheckConfig,
    /// Manage operators, supervisors and admins.
    #[command(subcommand)]
    User(UserCommand),
    /// The services directory: import, export, generate the demo, benchmark.
    #[command(subcommand)]
    Directory(crate::directory::cli::DirectoryCommand),
    /// Render and check the spoken prompts.
    #[command(subcommand)]
    Prompts(PromptsCommand),
    /// Retention of call detail (`retention_days`).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// The supervisors' call log: benchmark.
    #[command(subcommand)]
    Supervisors(SupervisorsCommand),
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Roll up and purge the calls older than `retention_days` now; print what was purged.
    Run,
}

#[derive(Debug, Subcommand)]
pub enum SupervisorsCommand {
    /// Generate calls into the configured database and time the log's queries and exports.
    Bench(crate::supervisor::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
pub enum PromptsCommand {
    /// Render every static message to `<dir>/<lang>/wav/<id>.wav` (8 kHz mono 16-bit) with espeak-ng;
    /// unchanged texts are skipped.
    Render {
        /// The prompts folder (one sub-folder of .ftl files per language).
        #[arg(long, default_value = "prompts")]
        dir: std::path::PathBuf,
        /// The flow whose `[[languages]]` are rendered (the built-in one when the default file is
        /// absent).
        #[arg(long, default_value = "config/ivr.toml")]
        flow: std::path::PathBuf,
    },
    /// Check that every configured language has every prompt the flow names and every message of
    /// the others, and that every WAV exists, has the telephone format, is not silent and is not
    /// truncated.
    Check {
        #[arg(long, default_value = "prompts")]
        dir: std::path::PathBuf,
        #[arg(long, default_value = "config/ivr.toml")]
        flow: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input (first line).
    Add {
        /// Sign-in name (letters, digits, '.', '_', '-').
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Languages spoken, comma-separated, among the configured ones: it,en,ar,zh…
        #[arg(long, value_delimiter = ',', value_parser = Language::parse)]
        languages: Vec<Language>,
        /// Service areas known, comma-separated: lingua,lavoro,casa,salute,minori,mediazione.
        #[arg(long, value_delimiter = ',', value_parser = ServiceArea::parse)]
        areas: Vec<ServiceArea>,
        /// SIP URI or number where this operator's calls are transferred.
        #[arg(long)]
        sip_target: Option<String>,
        /// The directory organisation (its `organization.id`) an `org_editor` may change; required
        /// with `--role org_editor`, refused with any other role.
        #[arg(long)]
        organization: Option<String>,
        /// Trained for intercultural mediation: the ACD's fallback for calls in a language
        /// nobody free speaks (after `fallback_after_secs`, see config/console.toml).
        #[arg(long)]
        mediator: bool,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: they cannot sign in, and their sessions end (on every node at once on
    /// PostgreSQL; on SQLite their open pages find out within 30 s).
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Set a user's password, read from standard input (first line); their sessions end. The user
    /// must change it at their next sign-in unless `--keep` says they chose it themselves.
    Passwd {
        name: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The user chose this password: do not ask them to change it.
        #[arg(long)]
        keep: bool,
    },
    /// Change a user's role; their sessions end.
    Role {
        name: String,
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Set the languages a user speaks (comma-separated, among the configured ones: it,ro,uk).
    Languages {
        name: String,
        #[arg(value_delimiter = ',', value_parser = Language::parse)]
        languages: Vec<Language>,
    },
    /// Set the service areas a user knows (comma-separated: lingua,lavoro,casa,salute,minori,mediazione).
    Areas {
        name: String,
        #[arg(value_delimiter = ',', value_parser = ServiceArea::parse)]
        areas: Vec<ServiceArea>,
    },
    /// Set where a user's calls are transferred (a SIP URI or number), or `--clear` it.
    SipTarget {
        name: String,
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        target: Option<String>,
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Operator,
    Supervisor,
    Admin,
    /// Reviews and changes every service of the directory (`/directory`).
    Editor,
    /// Changes one organisation's services (`--organization ID`); an editor accepts the changes.
    #[value(name = "org_editor")]
    OrgEditor,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Operator => Role::Operator,
            RoleArg::Supervisor => Role::Supervisor,
            RoleArg::Admin => Role::Admin,
            RoleArg::Editor => Role::Editor,
            RoleArg::OrgEditor => Role::OrgEditor,
        }
    }
}

/// Exit code for bad settings or arguments (clap uses 2 for usage errors too).
const EXIT_CONFIG: u8 = 2;

/// Parses the arguments and runs the command.
pub fn run() -> anyhow::Result<ExitCode> {
    // Languages given as arguments (`--languages`) are checked against the configured ones: those
    // of the flow file too, when it adds some to the built-in ten.
    if let Ok(loaded) = Settings::load() {
        if let Ok(source) = std::fs::read_to_string(&loaded.settings.flow_file) {
            let _ = ivr::flow::Flow::register_languages(&source, &loaded.settings.flow_file.display().to_string());
        }
    }
    let cli = Cli::parse();
    if let Command::Prompts(cmd) = &cli.command {
        // Needs neither settings nor a database.
        return Ok(prompts(cmd));
    }
    let loaded = match Settings::load() {
        Ok(l) => l,
        Err(e) => return Ok(config_error(&e)),
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(loaded.settings).await,
            Command::Migrate => {
                let db = connect(&loaded.settings).await?;
                db.migrate().await?;
                println!("migrations applied ({})", db.backend().name());
                Ok(ExitCode::SUCCESS)
            }
            Command::CheckConfig => Ok(check_config(&loaded)),
            Command::User(cmd) => user(cmd, &loaded.settings).await,
            Command::Prompts(cmd) => Ok(prompts(&cmd)),
            Command::Directory(cmd) => crate::directory::cli::run(cmd, &loaded.settings).await,
            Command::Retention(RetentionCommand::Run) => {
                let db = connect(&loaded.settings).await?;
                db.migrate().await?;
                let now = SystemClock.now().timestamp_millis();
                let actor = crate::supervisor::audit::Actor::system("helpline retention run");
                let report = crate::supervisor::retention::purge(
                    &db,
                    now,
                    &crate::supervisor::retention::Policy::of(&loaded.settings),
                    &actor,
                )
                .await?;
                println!("{report}");
                Ok(ExitCode::SUCCESS)
            }
            Command::Supervisors(SupervisorsCommand::Bench(args)) => {
                let db = connect(&loaded.settings).await?;
                db.migrate().await?;
                crate::supervisor::bench::run(args, db, SystemClock.now().timestamp_millis()).await
            }
        }
    })
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_CONFIG)
}

async fn connect(settings: &Settings) -> anyhow::Result<Db> {
    Ok(Db::connect(&settings.database_url).await?)
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    if let Err(e) = settings.check_for_serve() {
        return Ok(config_error(&e));
    }
    telemetry::init(settings.log_format);
    let (public_url, data_dir) = (settings.public_url.clone(), settings.data_dir.clone());
    let https = !settings.tls_cert.as_os_str().is_empty();
    let shutdown = shutdown_signal();
    let app = Application::build(settings).await?;
    app.state().directory.seed_demo_if_empty().await?;
    if let Some((name, password)) = &app.first_admin {
        let mut url = console_url(&public_url, app.local_addr());
        if https && public_url.is_empty() {
            url = url.replacen("http://", "https://", 1);
        }
        show_first_admin(name, password, &url, &data_dir)?;
    }
    app.run_until(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Where the first admin's password is written when nobody is at a terminal to read it.
pub const FIRST_ADMIN_FILE: &str = "first-admin-password";

/// Shows the first admin's password once: on standard error when it is a terminal (a person is
/// there), otherwise in `<data_dir>/first-admin-password`, readable by this user only, whose path is
/// logged — never on standard output or in the log, which end up in journald or a container's log.
/// Either way the password must be changed at the first sign-in.
fn show_first_admin(name: &str, password: &str, url: &str, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprintln!("================================================================");
        eprintln!(" First start: an admin account was created. Shown only this once.");
        eprintln!("   user:     {name}");
        eprintln!("   password: {password}");
        eprintln!(" Open {url} in a browser, sign in with it and choose your own");
        eprintln!(" password; add users with `helpline user add`.");
        eprintln!("================================================================");
        return Ok(());
    }
    let path = data_dir.join(FIRST_ADMIN_FILE);
    write_private(&path, &format!("user: {name}\npassword: {password}\nconsole: {url}\n"))
        .with_context(|| format!("cannot write the first admin's password to {}", path.display()))?;
    tracing::warn!(file = %path.display(), "first start: an admin account was created; its password is in the file");
    println!("================================================================");
    println!(" First start: an admin account was created. Its password is in");
    println!("   {}", path.display());
    println!(" (readable by this user only). Open {url} in a browser,");
    println!(" sign in as {name}, choose your own password, then delete the file.");
    println!("================================================================");
    Ok(())
}

/// Writes `text` to `path`, readable and writable by the owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // An older file keeps its mode on open: narrow it first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())
}

/// The operator console's address for a browser: under `public_url` when one is set, else on the
/// address the server listens on (a wildcard address is reached on the loopback one).
pub fn console_url(public_url: &str, listening: std::net::SocketAddr) -> String {
    let public_url = public_url.trim_end_matches('/');
    if !public_url.is_empty() {
        return format!("{public_url}/console");
    }
    let mut addr = listening;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/console")
}

fn check_config(loaded: &crate::config::Loaded) -> ExitCode {
    let s = &loaded.settings;
    match &loaded.file {
        Some(f) => println!("settings file: {}", f.display()),
        None => println!("settings file: none (defaults)"),
    }
    if !loaded.overrides.is_empty() {
        println!("overridden by: {}", loaded.overrides.join(", "));
    }
    println!("http_addr     = {}", s.http_addr);
    println!("sip_addr      = {}", s.sip_addr);
    if !s.sip_auth_user.is_empty() || !s.sip_auth_password.is_empty() {
        println!("sip_auth_user = {} (realm {:?})", s.sip_auth_user, s.sip_auth_realm);
        println!("sip_auth_password = {:?}", s.sip_auth_password);
    }
    println!("database_url  = {}", crate::db::redact(&s.database_url));
    println!("data_dir      = {}", s.data_dir.display());
    println!("secret        = {:?}", s.secret);
    println!("log_format    = {:?}", s.log_format);
    println!("flow_file     = {}", s.flow_file.display());
    println!("prompts_dir   = {}", s.prompts_dir.display());
    println!("public_url    = {}", if s.public_url.is_empty() { "(from the Host header)" } else { &s.public_url });
    println!("twilio_auth_token = {:?}", s.twilio_auth_token);
    println!("webhook_secret    = {:?}", s.webhook_secret);
    println!("retention_days    = {}", s.retention_days);
    println!("audit_retention_days = {}", s.audit_retention_days);
    println!("webrtc_addr   = {}", s.webrtc_addr);
    println!(
        "webrtc_public_ip = {}",
        if s.webrtc_public_ip.is_empty() { "(webrtc_addr's)" } else { &s.webrtc_public_ip }
    );
    println!("turn_urls     = {}", if s.turn_urls.is_empty() { "(none)" } else { &s.turn_urls });
    println!("turn_password = {:?}", s.turn_password);
    if !s.tls_cert.as_os_str().is_empty() || !s.tls_key.as_os_str().is_empty() {
        println!("tls_cert      = {}", s.tls_cert.display());
        println!("tls_key       = {}", s.tls_key.display());
    }
    if let Err(e) = s.check_for_serve() {
        return config_error(&e);
    }
    match crate::sip::trunk::Trunk::from_settings(s) {
        Ok(Some(trunk)) => println!(
            "trunk         = sip:{} (user {}, password {:?}, caller id {}; {} attempts, rings {} s)",
            trunk.host(),
            if s.trunk_user.is_empty() { "(none)" } else { &s.trunk_user },
            s.trunk_password,
            s.trunk_caller_id,
            s.callback_max_attempts.max(1),
            s.callback_ring_secs.max(1)
        ),
        Ok(None) => println!("trunk         = (none: callbacks are not placed by the server)"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    match crate::carrier::Carrier::from_settings(s) {
        Ok(Some(_)) => println!(
            "twilio_account_sid = {} (API {}, auth token {:?})",
            s.twilio_account_sid, s.twilio_api_url, s.twilio_auth_token
        ),
        Ok(None) => println!("twilio_account_sid = (none: no carrier REST API)"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    match crate::carrier::SignedCalls::from_settings(s) {
        Ok(Some(_)) => println!("carrier_calls_url = {}", s.carrier_calls_url),
        Ok(None) => println!("carrier_calls_url = (none: JSON-API callers are called back through the trunk only)"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    match s.sms() {
        Ok(Some(sms)) => println!("sms_via       = {} (sender {})", sms.via.as_str(), sms.sender),
        Ok(None) => println!("sms_via       = (none: the readback offers no text messages)"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    match crate::voice::load(s) {
        Ok((voice, source)) => {
            match source {
                crate::voice::FlowSource::File(f) => {
                    println!("menus: {} ({} nodes) ok", f.display(), voice.flow.nodes().len())
                }
                crate::voice::FlowSource::BuiltIn => {
                    println!("menus: built-in default flow ({} nodes) ok", voice.flow.nodes().len())
                }
            }
            println!("prompts: {} ok", voice.prompts);
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn user(cmd: UserCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let db = connect(settings).await?;
    db.migrate().await?;
    match cmd {
        UserCommand::Add { name, role, languages, areas, sip_target, organization, mediator, password_stdin: _ } => {
            let name = match UserName::parse(&name) {
                Ok(n) => n,
                Err(e) => return Ok(usage_error(&e)),
            };
            let role: Role = role.into();
            match (role, &organization) {
                (Role::OrgEditor, None) => {
                    return Ok(usage_error("--role org_editor needs --organization ID (a directory organization's id)"))
                }
                (Role::OrgEditor, Some(id)) => {
                    if !crate::directory::editing::organization_exists(&db, id).await? {
                        return Ok(usage_error(&format!("no organization has id {id:?}")));
                    }
                }
                (_, Some(_)) => return Ok(usage_error("--organization is only for --role org_editor")),
                (_, None) => {}
            }
            let password = match read_password() {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            let new = NewUser { name, role, languages, areas, password, sip_target, organization_id: organization };
            let actor = crate::db::audit::Actor::system("helpline user add");
            match users::add_user(&db, &new, SystemClock.now().timestamp_millis(), &actor).await {
                Ok(u) => {
                    if mediator {
                        crate::operators::presence::set_mediator(&db, u.id, true).await?;
                    }
                    println!(
                        "created {} {} (id {}){}",
                        u.role.as_str(),
                        u.name,
                        u.id,
                        if mediator { ", mediator" } else { "" }
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(crate::db::DbError::Conflict(m)) => Ok(usage_error(&m)),
                Err(e) => Err(e.into()),
            }
        }
        UserCommand::Disable { name } => change_user(&db, &name, UserChange::Disabled(true)).await,
        UserCommand::Enable { name } => change_user(&db, &name, UserChange::Disabled(false)).await,
        UserCommand::Passwd { name, password_stdin: _, keep } => {
            let password = match read_password() {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            change_user(&db, &name, UserChange::Password { password, must_change: !keep }).await
        }
        UserCommand::Role { name, role } => change_user(&db, &name, UserChange::Role(role.into())).await,
        UserCommand::Languages { name, languages } => change_user(&db, &name, UserChange::Languages(languages)).await,
        UserCommand::Areas { name, areas } => change_user(&db, &name, UserChange::Areas(areas)).await,
        UserCommand::SipTarget { name, target, clear: _ } => {
            change_user(&db, &name, UserChange::SipTarget(target.filter(|t| !t.trim().is_empty()))).await
        }
        UserCommand::List { json } => {
            let list = users::list_users(&db).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<20} {:<11} {:<12} {:<40} SIP TARGET", "NAME", "ROLE", "LANGUAGES", "AREAS");
                for u in list {
                    let langs: Vec<&str> = u.languages.iter().map(|l| l.as_str()).collect();
                    let areas: Vec<&str> = u.areas.iter().map(|a| a.as_str()).collect();
                    println!(
                        "{:<20} {:<11} {:<12} {:<40} {}",
                        u.name,
                        u.role.as_str(),
                        langs.join(","),
                        areas.join(","),
                        u.sip_target.unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn prompts(cmd: &PromptsCommand) -> ExitCode {
    use ivr::flow::{Flow, KnownPrompts, DEFAULT_FLOW_TOML};
    use ivr::prompts::{check_all, render_all, Catalog, RenderOptions};
    let (PromptsCommand::Render { dir, flow } | PromptsCommand::Check { dir, flow }) = cmd;
    // The languages are the flow's: each must have every prompt the flow names.
    let (source, file) = match std::fs::read_to_string(flow) {
        Ok(src) => (src, flow.display().to_string()),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && flow.as_path() == std::path::Path::new("config/ivr.toml") =>
        {
            (DEFAULT_FLOW_TOML.to_owned(), "the built-in flow".to_owned())
        }
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", flow.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let flow = match Flow::from_toml(&source, &file, &KnownPrompts::scan(dir)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let catalog = match Catalog::load_languages(dir, flow.languages()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cmd {
        PromptsCommand::Render { .. } => match render_all(dir, &catalog, &RenderOptions::default()) {
            Ok(report) => {
                println!(
                    "rendered {} (unchanged {}, up to date {}), {} with runtime data left to on-demand speech",
                    report.written.len(),
                    report.identical.len(),
                    report.up_to_date.len(),
                    report.dynamic.len()
                );
                for orphan in &report.orphans {
                    println!("note: no message for {}", orphan.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        PromptsCommand::Check { .. } => {
            let report = check_all(dir, &catalog);
            for problem in &report.problems {
                eprintln!("{problem}");
            }
            if report.is_ok() {
                println!("prompts ok: {} WAV files checked in {}", report.files_checked, dir.display());
                ExitCode::SUCCESS
            } else {
                eprintln!("error: {} problem(s) in {}", report.problems.len(), dir.display());
                ExitCode::FAILURE
            }
        }
    }
}

/// The first line of standard input as a password, or the usage error to exit with.
fn read_password() -> Result<Password, ExitCode> {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        return Err(usage_error(&format!("cannot read the password from standard input: {e}")));
    }
    Password::parse(input.lines().next().unwrap_or(""))
        .map_err(|e| usage_error(&format!("password from standard input: {e}")))
}

/// `helpline user disable|enable|passwd|role|languages|areas|sip-target`: applies the change, ends
/// the user's sessions when it calls for it (and tells every node), prints what was done.
async fn change_user(db: &Db, name: &str, change: UserChange) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now().timestamp_millis();
    let actor = crate::db::audit::Actor::system(&format!("helpline user {}", change.audit_action().as_str()));
    let user = match users::change_user(db, name, &change, now, &actor).await {
        Ok(Some(user)) => user,
        Ok(None) => return Ok(usage_error(&format!("no user named {name:?}"))),
        Err(crate::db::DbError::Conflict(m)) => return Ok(usage_error(&m)),
        Err(e) => return Err(e.into()),
    };
    let mut done = format!("{}: {}", user.name, change.describe());
    if change.ends_sessions() {
        let ended = crate::db::sessions::delete_user_sessions(db, user.id).await?;
        crate::db::sessions::announce_revoked(db, user.id).await?;
        done.push_str(&format!("; {ended} session(s) ended"));
    }
    println!("{done}");
    Ok(ExitCode::SUCCESS)
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_CONFIG)
}

#[cfg(test)]
mod tests {
    use super::console_url;

    #[test]
    fn the_console_url_is_for_a_browser() {
        let at = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(console_url("", at("127.0.0.1:8080")), "http://127.0.0.1:8080/console");
        assert_eq!(console_url("", at("0.0.0.0:8080")), "http://127.0.0.1:8080/console");
        assert_eq!(console_url("", at("[::]:9000")), "http://[::1]:9000/console");
        assert_eq!(console_url("", at("192.0.2.7:80")), "http://192.0.2.7:80/console");
        assert_eq!(
            console_url("https://helpline.example.org/", at("0.0.0.0:8080")),
            "https://helpline.example.org/console"
        );
    }
}
