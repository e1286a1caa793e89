//! Typed settings: `config/helpline.toml` (or the file named by `HELPLINE_CONFIG`) overlaid by
//! `HELPLINE_…` environment variables. Every key of the file has a variable: the key in upper case
//! prefixed by `HELPLINE_` (and by the section name for keys inside a `[section]`).
//!
//! A bad file or variable fails fast, naming the file (or variable), the key and the reason.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The variable naming the settings file.
pub const CONFIG_ENV: &str = "HELPLINE_CONFIG";
/// The settings file used when `HELPLINE_CONFIG` is not set (it may be absent: defaults apply).
pub const DEFAULT_CONFIG_PATH: &str = "config/helpline.toml";
const ENV_PREFIX: &str = "HELPLINE_";

/// The server's settings. Field names are the TOML keys; see `config/helpline.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the HTTP server listens (`HELPLINE_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Where the SIP user agent listens, UDP (`HELPLINE_SIP_ADDR`).
    pub sip_addr: SocketAddr,
    /// Lowest UDP port for a call's RTP socket (`HELPLINE_RTP_PORT_MIN`); 0 with
    /// `rtp_port_max = 0` lets the system pick any free port.
    pub rtp_port_min: u16,
    /// Highest UDP port for a call's RTP socket (`HELPLINE_RTP_PORT_MAX`).
    pub rtp_port_max: u16,
    /// `sqlite://…` or `postgres://…` (`HELPLINE_DATABASE_URL`).
    pub database_url: String,
    /// Folder for the server's own files (`HELPLINE_DATA_DIR`).
    pub data_dir: PathBuf,
    /// The server key (`HELPLINE_SECRET`): at least 32 characters. Required with PostgreSQL
    /// ([`Settings::check_for_serve`]); with SQLite, empty means "generate on first start and keep
    /// it in the database".
    pub secret: SecretString,
    /// `auto`, `pretty` or `json` (`HELPLINE_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// The menus (`HELPLINE_FLOW_FILE`); when the file is absent the built-in default flow runs.
    pub flow_file: PathBuf,
    /// The prompt texts and rendered WAVs, one folder per language (`HELPLINE_PROMPTS_DIR`).
    pub prompts_dir: PathBuf,
    /// The URL carriers use to reach this server, e.g. `https://helpline.example.org`, when it sits
    /// behind a reverse proxy; empty means `http://<Host header>` (`HELPLINE_PUBLIC_URL`). Twilio
    /// signs the URL it requested, so this must match what the carrier is configured with.
    pub public_url: String,
    /// The Twilio-style account auth token that signs TwiML requests (`HELPLINE_TWILIO_AUTH_TOKEN`);
    /// empty disables the TwiML endpoints.
    pub twilio_auth_token: SecretString,
    /// The key that signs JSON call-event requests (`HELPLINE_WEBHOOK_SECRET`); empty disables the
    /// JSON webhook.
    pub webhook_secret: SecretString,
    /// Days a call's detail is kept before only its KPI counts remain (`HELPLINE_RETENTION_DAYS`).
    pub retention_days: u32,
    /// Days an audit-log row is kept (`HELPLINE_AUDIT_RETENTION_DAYS`): longer than the calls, so
    /// who read a record can be answered for the record's whole life and a while after.
    pub audit_retention_days: u32,
    /// The operator console's settings: dispositions, wrap-up, ACD timings
    /// (`HELPLINE_CONSOLE_FILE`); when the file is absent the built-in defaults apply.
    pub console_file: PathBuf,
    /// Seconds a connection may take to send a request's headers, and may sit idle between
    /// requests (`HELPLINE_HTTP_HEADER_TIMEOUT_SECS`): slow-header connections are closed.
    pub http_header_timeout_secs: u64,
    /// Seconds a request may take to send its body (`HELPLINE_HTTP_BODY_TIMEOUT_SECS`).
    pub http_body_timeout_secs: u64,
    /// HTTP connections served at once (`HELPLINE_HTTP_MAX_CONNECTIONS`); past it new ones wait
    /// in the kernel's backlog.
    pub http_max_connections: usize,
    /// Call events waiting to be written, per writer (`HELPLINE_CALL_QUEUE_LIMIT`); past it a
    /// carrier's request is answered 503 with `Retry-After` at once.
    pub call_queue_limit: usize,
    /// Milliseconds a call event may wait to be written (`HELPLINE_CALL_DEADLINE_MS`); past it
    /// the request is answered 503 with `Retry-After` rather than waiting for ever.
    pub call_deadline_ms: u64,
    /// The UDP address of the browser phones' media (`HELPLINE_WEBRTC_ADDR`): one socket, one
    /// port to open, for every operator's WebRTC leg (docs/media.md).
    pub webrtc_addr: SocketAddr,
    /// The address announced to browsers as the media's ICE candidate when the server is behind
    /// NAT (`HELPLINE_WEBRTC_PUBLIC_IP`); empty: `webrtc_addr`'s own address.
    pub webrtc_public_ip: String,
    /// TURN servers for operators behind strict firewalls, comma-separated `turn:`/`turns:` URLs
    /// (`HELPLINE_TURN_URLS`), handed to the page as its `iceServers`; empty: none.
    pub turn_urls: String,
    /// The TURN servers' user name (`HELPLINE_TURN_USERNAME`).
    pub turn_username: String,
    /// The TURN servers' password (`HELPLINE_TURN_PASSWORD`): sent only to signed-in operators.
    pub turn_password: SecretString,
    /// The networks that may send SIP (`HELPLINE_SIP_ALLOW`): comma-separated addresses or CIDRs
    /// of the trunks and proxies; others get `403` before anything is taken. Empty: anyone (and
    /// `serve` warns when `sip_addr` is not a loopback address).
    pub sip_allow: String,
    /// New INVITEs a second one source may send (`HELPLINE_SIP_RATE`), a token bucket holding one
    /// second's worth; past it `503` with `Retry-After`. 0: no limit.
    pub sip_rate: u32,
    /// Calls this node holds at once (`HELPLINE_SIP_MAX_CALLS`); past it new INVITEs get `503`.
    /// 0: no limit (the RTP port range is then the limit).
    pub sip_max_calls: usize,
    /// Requests other than INVITE, ACK and CANCEL a second one source may send outside the calls
    /// this node holds (`HELPLINE_SIP_REQUEST_RATE`): OPTIONS, REGISTER, MESSAGE, stray BYE or
    /// INFO…; a token bucket holding one second's worth; past it `503` with `Retry-After`. 0: no
    /// limit.
    pub sip_request_rate: u32,
    /// The user name trunks outside `sip_allow` authenticate with (`HELPLINE_SIP_AUTH_USER`,
    /// digest, RFC 3261 §22); with `sip_auth_password`. Both empty: no digest authentication, a
    /// source outside `sip_allow` gets `403`.
    pub sip_auth_user: String,
    /// The password of `sip_auth_user` (`HELPLINE_SIP_AUTH_PASSWORD`).
    pub sip_auth_password: SecretString,
    /// The realm of the digest challenge (`HELPLINE_SIP_AUTH_REALM`), as the trunk is configured.
    pub sip_auth_realm: String,
    /// Seconds without any RTP packet from a SIP caller after which the call is hung up
    /// (`HELPLINE_RTP_TIMEOUT_SECS`): BYE, and `hung_up` in the call log. 0: never.
    pub rtp_timeout_secs: u64,
    /// Seconds a node keeps its live SIP calls after SIGTERM (`HELPLINE_DRAIN_SECS`): new INVITEs
    /// and OPTIONS get `503` meanwhile; then the calls hear the goodbye and get a BYE.
    pub drain_secs: u64,
    /// Seconds without a heartbeat after which the other nodes on the database take a node for
    /// dead (`HELPLINE_NODE_TIMEOUT_SECS`, at least 3): its SIP calls are ended in the call log
    /// and never offered to operators (`calls/nodes.rs`). Nodes beat every second.
    pub node_timeout_secs: u64,
    /// The built-in HTTPS listener's certificate chain, a PEM file (`HELPLINE_TLS_CERT`): with
    /// `tls_key`, `http_addr` serves HTTPS; both empty (the default), plain HTTP. Reloaded on
    /// SIGHUP.
    pub tls_cert: PathBuf,
    /// The private key of `tls_cert`, a PEM file (`HELPLINE_TLS_KEY`).
    pub tls_key: PathBuf,
    /// The longest voice message a caller may leave, seconds (`HELPLINE_VOICEMAIL_MAX_SECS`).
    pub voicemail_max_secs: u32,
    /// The longest call recording, seconds (`HELPLINE_RECORDING_MAX_SECS`): past it, the rest of
    /// the call is not recorded (the recording is stored when the operator stops it or the call
    /// ends).
    pub recording_max_secs: u32,
    /// The SIP trunk callbacks are placed through (`HELPLINE_TRUNK_URI`), e.g.
    /// `sip:trunk.example.org:5060`; empty: no trunk (`sip::trunk`).
    pub trunk_uri: String,
    /// The user name of the trunk's digest authentication (`HELPLINE_TRUNK_USER`).
    pub trunk_user: String,
    /// Its password (`HELPLINE_TRUNK_PASSWORD`): never logged.
    pub trunk_password: SecretString,
    /// The number the helpline calls from (`HELPLINE_TRUNK_CALLER_ID`), e.g. `803001`.
    pub trunk_caller_id: String,
    /// Attempts to reach a caller before the callback is closed as unreachable
    /// (`HELPLINE_CALLBACK_MAX_ATTEMPTS`, at least 1).
    pub callback_max_attempts: u32,
    /// Seconds a callback may ring before it counts as not answered (`HELPLINE_CALLBACK_RING_SECS`).
    pub callback_ring_secs: u64,
    /// How the services read back are sent by text message (`HELPLINE_SMS_VIA`): `trunk` (SIP
    /// `MESSAGE` through `trunk_uri`), `twilio` (the carrier's messages API), or empty: no texts,
    /// and the readback offers none (`texts`).
    pub sms_via: String,
    /// The sender of those texts (`HELPLINE_SMS_SENDER`): the `From` user of the `MESSAGE`, the
    /// `From` field of the carrier's request. Required with `sms_via`.
    pub sms_sender: String,
    /// The account of a Twilio-compatible carrier's REST API (`HELPLINE_TWILIO_ACCOUNT_SID`), used
    /// with `twilio_auth_token` to place calls and send messages (`carrier`); empty: none.
    pub twilio_account_sid: String,
    /// That API's base URL (`HELPLINE_TWILIO_API_URL`), so another Twilio-compatible carrier can be
    /// named; requests go to `<url>/2010-04-01/Accounts/<sid>/…`.
    pub twilio_api_url: String,
    /// Where callbacks of JSON-API callers are asked for when no trunk is set
    /// (`HELPLINE_CARRIER_CALLS_URL`): a signed JSON `POST` (`carrier::SignedCalls`,
    /// docs/webhooks.md); empty: none.
    pub carrier_calls_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            sip_addr: SocketAddr::from(([127, 0, 0, 1], 5080)),
            rtp_port_min: 20000,
            rtp_port_max: 30000,
            database_url: "sqlite://data/helpline.db".to_owned(),
            data_dir: PathBuf::from("data"),
            secret: SecretString::default(),
            log_format: LogFormat::Auto,
            flow_file: PathBuf::from("config/ivr.toml"),
            prompts_dir: PathBuf::from("prompts"),
            public_url: String::new(),
            twilio_auth_token: SecretString::default(),
            webhook_secret: SecretString::default(),
            retention_days: 365,
            http_header_timeout_secs: 10,
            http_body_timeout_secs: 30,
            http_max_connections: 1024,
            call_queue_limit: 1024,
            call_deadline_ms: 5000,
            audit_retention_days: 730,
            console_file: PathBuf::from("config/console.toml"),
            webrtc_addr: SocketAddr::from(([127, 0, 0, 1], 5090)),
            webrtc_public_ip: String::new(),
            turn_urls: String::new(),
            turn_username: String::new(),
            turn_password: SecretString::default(),
            sip_allow: String::new(),
            sip_rate: 100,
            sip_max_calls: 1000,
            sip_request_rate: 50,
            sip_auth_user: String::new(),
            sip_auth_password: SecretString::default(),
            sip_auth_realm: "helpline".to_owned(),
            rtp_timeout_secs: 60,
            drain_secs: 300,
            node_timeout_secs: 10,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            voicemail_max_secs: 60,
            recording_max_secs: 3600,
            trunk_uri: String::new(),
            trunk_user: String::new(),
            trunk_password: SecretString::default(),
            trunk_caller_id: String::new(),
            callback_max_attempts: 3,
            callback_ring_secs: 30,
            sms_via: String::new(),
            sms_sender: String::new(),
            twilio_account_sid: String::new(),
            twilio_api_url: "https://api.twilio.com".to_owned(),
            carrier_calls_url: String::new(),
        }
    }
}

/// Which sender `HELPLINE_SMS_VIA` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsVia {
    Trunk,
    Twilio,
}

impl SmsVia {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsVia::Trunk => "trunk",
            SmsVia::Twilio => "twilio",
        }
    }
}

/// Texts on: the sender they go through, and the `From` they carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSettings {
    pub via: SmsVia,
    pub sender: String,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    Pretty,
    Json,
}

/// A string that is never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "<unset>" } else { "<redacted>" })
    }
}

/// Why the settings could not be loaded. The message names where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the settings file: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: line {line}, column {column}: key `{key}`: {reason}")]
    File { path: PathBuf, line: usize, column: usize, key: String, reason: String },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
}

/// Where the settings came from, for `check-config` and the start-up log.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// The `HELPLINE_…` variables that overrode a key.
    pub overrides: Vec<String>,
}

impl Settings {
    /// Loads from the process environment: `HELPLINE_CONFIG` (or the default file if present),
    /// then every `HELPLINE_…` variable on top.
    pub fn load() -> Result<Loaded, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(&vars)
    }

    /// Like [`Settings::load`], with the environment given (tests pass their own).
    pub fn load_from(vars: &[(String, String)]) -> Result<Loaded, ConfigError> {
        let get = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let (path, required) = match get(CONFIG_ENV) {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let (mut table, file) = match std::fs::read_to_string(&path) {
            Ok(src) => {
                let table = parse_file(&path, &src)?;
                (table, Some(path))
            }
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => (toml::Table::new(), None),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };

        let defaults = toml::Table::try_from(Settings::default()).unwrap_or_default();
        let mut overrides = Vec::new();
        for (var, key_path, template) in leaf_keys(&defaults) {
            let Some(raw) = get(&var) else { continue };
            let value = env_value(&raw, &template).map_err(|reason| ConfigError::Env { var: var.clone(), reason })?;
            // Check the variable on its own so an error names it, not the file.
            let mut probe = defaults.clone();
            set_path(&mut probe, &key_path, value.clone());
            if let Err(e) = probe.try_into::<Settings>() {
                return Err(ConfigError::Env { var, reason: e.message().trim().to_owned() });
            }
            set_path(&mut table, &key_path, value);
            overrides.push(var);
        }
        let settings: Settings = table.try_into().map_err(|e: toml::de::Error| ConfigError::Env {
            var: "(combined settings)".into(),
            reason: e.message().trim().to_owned(),
        })?;
        Ok(Loaded { settings, file, overrides })
    }

    /// What `serve` needs beyond well-typed settings: a server key of at least 32 characters
    /// when one is given, and one given from outside the database when the database is
    /// PostgreSQL — there the generated key would sit in the database whose phone hashes (and
    /// retry fingerprints) it protects, so a dump would carry its own key.
    pub fn check_for_serve(&self) -> Result<(), ConfigError> {
        let err = |reason: String| ConfigError::Env { var: "HELPLINE_SECRET".into(), reason };
        let postgres = self.database_url.starts_with("postgres://") || self.database_url.starts_with("postgresql://");
        if self.secret.is_empty() && postgres {
            return Err(err(
                "required with a PostgreSQL database (the `secret` key of the settings file also does): the \
                 server key must not be stored in the database it protects. Set it to at least 32 random \
                 characters, the same on every node (e.g. `openssl rand -hex 32`), and keep it with the \
                 deployment's other secrets"
                    .into(),
            ));
        }
        self.webrtc_candidate_ip()
            .map_err(|reason| ConfigError::Env { var: "HELPLINE_WEBRTC_PUBLIC_IP".into(), reason })?;
        self.tls_files()?;
        self.sip_auth_credentials()?;
        self.sms()?;
        let len = self.secret.expose().len();
        if !self.secret.is_empty() && len < ivr::domain::ServerSecret::MIN_LEN {
            return Err(err(format!(
                "must be at least {} characters long, got {len}",
                ivr::domain::ServerSecret::MIN_LEN
            )));
        }
        Ok(())
    }

    /// The address browsers are told to send media to: `webrtc_public_ip`, or `webrtc_addr`'s own
    /// address (which must then be a concrete one: a wildcard cannot be a candidate).
    pub fn webrtc_candidate_ip(&self) -> Result<std::net::IpAddr, String> {
        let public = self.webrtc_public_ip.trim();
        if !public.is_empty() {
            return public.parse().map_err(|_| format!("{public:?} is not an IP address"));
        }
        let ip = self.webrtc_addr.ip();
        if ip.is_unspecified() {
            return Err(format!(
                "required when HELPLINE_WEBRTC_ADDR ({}) listens on every address: the address browsers \
                 reach the media at",
                self.webrtc_addr
            ));
        }
        Ok(ip)
    }

    /// The digest credentials of the trunks outside `sip_allow`: both the user and the password,
    /// or neither (no digest authentication).
    pub fn sip_auth_credentials(&self) -> Result<Option<ivr::sip::DigestCredentials>, ConfigError> {
        let (user, password) = (self.sip_auth_user.trim(), self.sip_auth_password.expose());
        let missing = |var: &str, other: &str| ConfigError::Env {
            var: var.into(),
            reason: format!(
                "required when {other} is set: trunks outside HELPLINE_SIP_ALLOW authenticate with both \
                 (digest, docs/sip.md \"Facing the internet\"); set both, or neither"
            ),
        };
        match (user.is_empty(), password.is_empty()) {
            (true, true) => Ok(None),
            (false, true) => Err(missing("HELPLINE_SIP_AUTH_PASSWORD", "HELPLINE_SIP_AUTH_USER")),
            (true, false) => Err(missing("HELPLINE_SIP_AUTH_USER", "HELPLINE_SIP_AUTH_PASSWORD")),
            (false, false) if self.sip_auth_realm.trim().is_empty() => Err(ConfigError::Env {
                var: "HELPLINE_SIP_AUTH_REALM".into(),
                reason: "must not be empty when HELPLINE_SIP_AUTH_USER is set".into(),
            }),
            (false, false) => {
                Ok(Some(ivr::sip::DigestCredentials { username: user.to_owned(), password: password.to_owned() }))
            }
        }
    }

    /// How texts are sent (`HELPLINE_SMS_VIA`, `HELPLINE_SMS_SENDER`), checked against the
    /// sender each needs; `None`: texts are off.
    pub fn sms(&self) -> Result<Option<SmsSettings>, ConfigError> {
        let env = |var: &str, reason: String| ConfigError::Env { var: var.into(), reason };
        let via = match self.sms_via.trim() {
            "" => return Ok(None),
            "trunk" => SmsVia::Trunk,
            "twilio" => SmsVia::Twilio,
            other => return Err(env("HELPLINE_SMS_VIA", format!("must be trunk, twilio or empty, not {other:?}"))),
        };
        match via {
            SmsVia::Trunk if self.trunk_uri.trim().is_empty() => {
                return Err(env(
                    "HELPLINE_SMS_VIA",
                    "is trunk, but HELPLINE_TRUNK_URI is not set: texts go out as SIP MESSAGE through the trunk".into(),
                ))
            }
            SmsVia::Twilio if self.twilio_account_sid.trim().is_empty() || self.twilio_auth_token.is_empty() => {
                return Err(env(
                    "HELPLINE_SMS_VIA",
                    "is twilio, but HELPLINE_TWILIO_ACCOUNT_SID or HELPLINE_TWILIO_AUTH_TOKEN is not set: texts go \
                     out through the carrier's messages API, which needs both"
                        .into(),
                ))
            }
            _ => {}
        }
        let sender = self.sms_sender.trim();
        let valid = match via {
            // The From user of a SIP URI: a number, as the trunk knows the helpline.
            SmsVia::Trunk => {
                let digits = sender.strip_prefix('+').unwrap_or(sender);
                !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit())
            }
            // A number (E.164) or an alphanumeric sender id (at most 11 characters).
            SmsVia::Twilio => {
                let digits = sender.strip_prefix('+').unwrap_or(sender);
                (!digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                    || ((1..=11).contains(&sender.len())
                        && sender.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
                        && sender.bytes().any(|b| b.is_ascii_alphabetic()))
            }
        };
        if !valid {
            let what = match via {
                SmsVia::Trunk => "a number (digits, optionally after +), the From of the MESSAGE",
                SmsVia::Twilio => {
                    "a number (digits, optionally after +) or an alphanumeric sender id of at most 11 characters"
                }
            };
            let got = if sender.is_empty() { "it is empty".to_owned() } else { format!("got {sender:?}") };
            return Err(env("HELPLINE_SMS_SENDER", format!("required with HELPLINE_SMS_VIA: {what}; {got}")));
        }
        Ok(Some(SmsSettings { via, sender: sender.to_owned() }))
    }

    /// The TURN URLs, one per comma-separated entry.
    pub fn turn_url_list(&self) -> Vec<String> {
        self.turn_urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
    }

    /// The built-in HTTPS listener's files: both set or neither.
    pub fn tls_files(&self) -> Result<Option<crate::listener::TlsFiles>, ConfigError> {
        let (cert, key) = (self.tls_cert.as_os_str().is_empty(), self.tls_key.as_os_str().is_empty());
        let missing = |var: &str, other: &str| ConfigError::Env {
            var: var.into(),
            reason: format!(
                "required when {other} is set: HTTPS needs both the certificate chain (HELPLINE_TLS_CERT) and \
                 its private key (HELPLINE_TLS_KEY), PEM files; set both, or neither for plain HTTP"
            ),
        };
        match (cert, key) {
            (true, true) => Ok(None),
            (false, true) => Err(missing("HELPLINE_TLS_KEY", "HELPLINE_TLS_CERT")),
            (true, false) => Err(missing("HELPLINE_TLS_CERT", "HELPLINE_TLS_KEY")),
            (false, false) => {
                Ok(Some(crate::listener::TlsFiles { cert: self.tls_cert.clone(), key: self.tls_key.clone() }))
            }
        }
    }

    /// The folder of the speech synthesised on demand (`<data_dir>/tts-cache`).
    pub fn speech_cache_dir(&self) -> PathBuf {
        self.data_dir.join("tts-cache")
    }

    /// Every environment variable that overrides a key, with the key it sets.
    pub fn env_names() -> Vec<(String, String)> {
        let defaults = toml::Table::try_from(Settings::default()).unwrap_or_default();
        leaf_keys(&defaults).into_iter().map(|(var, path, _)| (var, path.join("."))).collect()
    }
}

/// Parses and checks the file, turning errors into file + line + key + reason.
fn parse_file(path: &Path, src: &str) -> Result<toml::Table, ConfigError> {
    let file_error = |span: Option<std::ops::Range<usize>>, key: String, reason: String| {
        let offset = span.map(|s| s.start).unwrap_or(0).min(src.len());
        let before = &src[..offset];
        let line = before.matches('\n').count() + 1;
        let column = offset - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        ConfigError::File { path: path.to_owned(), line, column, key, reason }
    };
    let table: toml::Table = toml::from_str(src)
        .map_err(|e: toml::de::Error| file_error(e.span(), "(syntax)".into(), e.message().trim().to_owned()))?;
    let de = toml::Deserializer::new(src);
    let checked: Result<Settings, _> = serde_path_to_error::deserialize(de);
    if let Err(e) = checked {
        let key = e.path().to_string();
        let inner = e.into_inner();
        return Err(file_error(inner.span(), key, inner.message().trim().to_owned()));
    }
    Ok(table)
}

/// Every leaf of the defaults table: (variable name, key path, default value as type template).
fn leaf_keys(table: &toml::Table) -> Vec<(String, Vec<String>, toml::Value)> {
    fn walk(t: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<(String, Vec<String>, toml::Value)>) {
        for (k, v) in t {
            prefix.push(k.clone());
            match v {
                toml::Value::Table(inner) => walk(inner, prefix, out),
                leaf => {
                    let var = format!("{ENV_PREFIX}{}", prefix.join("_").to_ascii_uppercase());
                    out.push((var, prefix.clone(), leaf.clone()));
                }
            }
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(table, &mut Vec::new(), &mut out);
    out
}

/// Turns a variable's text into a TOML value of the same type as the key's default.
fn env_value(raw: &str, template: &toml::Value) -> Result<toml::Value, String> {
    match template {
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected a whole number, got {raw:?}")),
        toml::Value::Float(_) => {
            raw.trim().parse::<f64>().map(toml::Value::Float).map_err(|_| format!("expected a number, got {raw:?}"))
        }
        toml::Value::Boolean(_) => match raw.trim() {
            "true" | "1" | "yes" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        toml::Value::Array(_) => Ok(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        )),
        _ => Ok(toml::Value::String(raw.to_owned())),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut t = table;
    for p in parents {
        let entry = t.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(inner) = entry else { return };
        t = inner;
    }
    t.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn with_file(contents: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("helpline.toml");
        std::fs::write(&path, contents).unwrap();
        (dir, path.display().to_string())
    }

    #[test]
    fn env_overrides_file_and_defaults() {
        let (_d, path) = with_file("http_addr = \"127.0.0.1:9000\"\nlog_format = \"json\"\n");
        let loaded =
            Settings::load_from(&vars(&[("HELPLINE_CONFIG", &path), ("HELPLINE_SIP_ADDR", "0.0.0.0:5999")])).unwrap();
        assert_eq!(loaded.settings.http_addr.port(), 9000);
        assert_eq!(loaded.settings.sip_addr.port(), 5999);
        assert_eq!(loaded.settings.log_format, LogFormat::Json);
        assert_eq!(loaded.overrides, vec!["HELPLINE_SIP_ADDR".to_string()]);
    }

    #[test]
    fn file_errors_name_file_line_and_key() {
        let (_d, path) = with_file("# comment\nhttp_addr = \"nowhere\"\n");
        let err = Settings::load_from(&vars(&[("HELPLINE_CONFIG", &path)])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains("`http_addr`"), "{msg}");

        let (_d, path) = with_file("htp_addr = \"127.0.0.1:1\"\n");
        let msg = Settings::load_from(&vars(&[("HELPLINE_CONFIG", &path)])).unwrap_err().to_string();
        assert!(msg.contains("unknown field `htp_addr`") && msg.contains("line 1"), "{msg}");

        let (_d, path) = with_file("http_addr = \n");
        let msg = Settings::load_from(&vars(&[("HELPLINE_CONFIG", &path)])).unwrap_err().to_string();
        assert!(msg.contains("line 1") && msg.contains("(syntax)"), "{msg}");
    }

    #[test]
    fn env_errors_name_the_variable() {
        let err = Settings::load_from(&vars(&[("HELPLINE_CONFIG", "/nonexistent/none.toml")])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/none.toml"), "{err}");
        let (_d, path) = with_file("");
        let err =
            Settings::load_from(&vars(&[("HELPLINE_CONFIG", &path), ("HELPLINE_HTTP_ADDR", "localhost")])).unwrap_err();
        assert!(err.to_string().starts_with("environment variable HELPLINE_HTTP_ADDR:"), "{err}");
    }

    #[test]
    fn texts_name_their_sender_and_fail_fast_naming_the_setting() {
        let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let load = |pairs: &[(&str, &str)]| Settings::load_from(&vars(pairs)).expect("loads").settings;
        assert_eq!(load(&[]).sms().expect("off"), None);
        let no_trunk = load(&[("HELPLINE_SMS_VIA", "trunk"), ("HELPLINE_SMS_SENDER", "803001")]);
        let err = no_trunk.check_for_serve().unwrap_err().to_string();
        assert!(err.contains("HELPLINE_SMS_VIA") && err.contains("HELPLINE_TRUNK_URI"), "{err}");
        let trunk = |sender: &str| {
            load(&[
                ("HELPLINE_SMS_VIA", "trunk"),
                ("HELPLINE_TRUNK_URI", "sip:t.example"),
                ("HELPLINE_SMS_SENDER", sender),
            ])
        };
        assert_eq!(
            trunk("+39803001").sms().expect("valid"),
            Some(SmsSettings { via: SmsVia::Trunk, sender: "+39803001".into() })
        );
        for bad in ["", "Helpline", "80 3001"] {
            let err = trunk(bad).sms().unwrap_err().to_string();
            assert!(err.contains("HELPLINE_SMS_SENDER"), "{bad:?}: {err}");
        }
        let err = load(&[("HELPLINE_SMS_VIA", "pigeon")]).sms().unwrap_err().to_string();
        assert!(err.contains("HELPLINE_SMS_VIA") && err.contains("pigeon"), "{err}");
        let twilio = load(&[("HELPLINE_SMS_VIA", "twilio"), ("HELPLINE_SMS_SENDER", "Helpline")]);
        assert!(twilio.sms().unwrap_err().to_string().contains("HELPLINE_TWILIO_ACCOUNT_SID"));
        let twilio = load(&[
            ("HELPLINE_SMS_VIA", "twilio"),
            ("HELPLINE_SMS_SENDER", "Helpline"),
            ("HELPLINE_TWILIO_ACCOUNT_SID", "AC123"),
            ("HELPLINE_TWILIO_AUTH_TOKEN", "token"),
        ]);
        assert_eq!(twilio.sms().expect("valid").map(|s| s.via), Some(SmsVia::Twilio));
    }

    #[test]
    fn sip_digest_credentials_are_both_or_neither() {
        let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let load = |pairs: &[(&str, &str)]| Settings::load_from(&vars(pairs)).expect("loads").settings;
        assert!(load(&[]).sip_auth_credentials().expect("neither").is_none());
        let both = load(&[("HELPLINE_SIP_AUTH_USER", "trunk"), ("HELPLINE_SIP_AUTH_PASSWORD", "pw-pw-pw")]);
        let creds = both.sip_auth_credentials().expect("both").expect("set");
        assert_eq!((creds.username.as_str(), both.sip_auth_realm.as_str()), ("trunk", "helpline"));
        assert!(!format!("{both:?}").contains("pw-pw-pw"), "the password is never printed");
        let user_only = load(&[("HELPLINE_SIP_AUTH_USER", "trunk")]);
        let err = user_only.check_for_serve().expect_err("a user without a password").to_string();
        assert!(err.contains("HELPLINE_SIP_AUTH_PASSWORD"), "{err}");
        let password_only = load(&[("HELPLINE_SIP_AUTH_PASSWORD", "pw")]);
        assert!(password_only
            .sip_auth_credentials()
            .expect_err("alone")
            .to_string()
            .contains("HELPLINE_SIP_AUTH_USER"));
    }

    #[test]
    fn every_key_has_a_documented_variable() {
        let names: Vec<String> = Settings::env_names().into_iter().map(|(v, _)| v).collect();
        for required in [
            "HELPLINE_HTTP_ADDR",
            "HELPLINE_SIP_ADDR",
            "HELPLINE_DATABASE_URL",
            "HELPLINE_SECRET",
            "HELPLINE_LOG_FORMAT",
        ] {
            assert!(names.iter().any(|n| n == required), "{required} missing from {names:?}");
        }
        let readme = include_str!("../../README.md");
        for name in &names {
            assert!(readme.contains(name.as_str()), "README does not document {name}");
        }
    }

    #[test]
    fn postgres_needs_a_server_key_from_outside_the_database() {
        let pg = Settings { database_url: "postgres://u@h/db".into(), ..Settings::default() };
        let err = pg.check_for_serve().unwrap_err().to_string();
        assert!(err.starts_with("environment variable HELPLINE_SECRET: required with a PostgreSQL database"), "{err}");
        let short = Settings { secret: SecretString::new("too short"), ..pg.clone() };
        let err = short.check_for_serve().unwrap_err().to_string();
        assert!(err.contains("HELPLINE_SECRET") && err.contains("at least 32"), "{err}");
        assert!(!err.contains("too short"), "the secret is not echoed: {err}");
        let keyed = Settings { secret: SecretString::new("k".repeat(32)), ..pg };
        keyed.check_for_serve().unwrap();
        // SQLite may generate and store its own (recommended: give one anyway).
        Settings::default().check_for_serve().unwrap();
    }

    #[test]
    fn tls_needs_both_files_or_neither() {
        assert_eq!(Settings::default().tls_files().unwrap(), None);
        let cert_only = Settings { tls_cert: "cert.pem".into(), ..Settings::default() };
        let err = cert_only.check_for_serve().unwrap_err().to_string();
        assert!(err.starts_with("environment variable HELPLINE_TLS_KEY: required when HELPLINE_TLS_CERT"), "{err}");
        let key_only = Settings { tls_key: "key.pem".into(), ..Settings::default() };
        let err = key_only.check_for_serve().unwrap_err().to_string();
        assert!(err.starts_with("environment variable HELPLINE_TLS_CERT: required when HELPLINE_TLS_KEY"), "{err}");
        let both = Settings { tls_cert: "c.pem".into(), tls_key: "k.pem".into(), ..Settings::default() };
        assert_eq!(both.tls_files().unwrap().map(|f| f.cert), Some("c.pem".into()));
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = Settings { secret: SecretString::new("x".repeat(40)), ..Settings::default() };
        assert!(!format!("{s:?}").contains("xxxx"));
    }
}
