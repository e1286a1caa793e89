//! A Twilio-compatible carrier's REST API: the server's one outgoing HTTP client.
//!
//! Settings (public contracts): `HELPLINE_TWILIO_ACCOUNT_SID`, `HELPLINE_TWILIO_API_URL` (default
//! `https://api.twilio.com`, so another Twilio-compatible carrier can be named) and the existing
//! `HELPLINE_TWILIO_AUTH_TOKEN`, which is the account's password here as it is the TwiML signing
//! key there. Requests follow Twilio's documented REST interface: form-encoded `POST`s under
//! `/2010-04-01/Accounts/{AccountSid}/`, HTTP basic authentication with the account SID and auth
//! token, JSON answers, and errors as `{"code", "message", "status"}`.
//!
//! - [`Carrier::create_call`]: `Calls.json` (`To`, `From`, `Url`, `StatusCallback`), for callbacks
//!   of callers who came in over TwiML;
//! - [`Carrier::end_call`]: `Calls/{CallSid}.json` with `Status=completed`, hanging a placed call
//!   up whether it still rings or was answered;
//! - [`Carrier::send_message`]: `Messages.json` (`To`, `From`, `Body`, `StatusCallback`);
//! - [`Carrier::call_from`]: `Calls/{CallSid}.json`, the number a live call came from (read at
//!   once for an operator's text message, never kept);
//! - [`Carrier::fetch_recording`]: a `<Record>`ed message's audio, fetched as WAV from a
//!   `RecordingUrl` under the same account (credentials are never sent to another origin), bounded.
//!
//! [`SignedCalls`] is the other carrier interface callbacks use: JSON `POST`s to
//! `HELPLINE_CARRIER_CALLS_URL`, signed as the JSON API's requests are (`docs/webhooks.md`).
//!
//! Every request has a deadline; an answer body is read up to a bound. Nothing here knows a
//! feature: callers decide what a refusal means for the person waiting.

use crate::config::{SecretString, Settings};
use axum::body::Bytes;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The path every request of an account lives under, after the API's base URL.
const API_VERSION: &str = "2010-04-01";
/// Connecting to the carrier: a carrier that does not accept a connection in this long is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request (calls and messages): the carrier answers these at once.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A recording's download: up to a few megabytes.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest JSON answer read from the carrier.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What went wrong talking to the carrier.
#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    #[error("HELPLINE_TWILIO_API_URL must be an http:// or https:// URL without a path, not {0:?}")]
    BadApiUrl(String),
    #[error("HELPLINE_TWILIO_ACCOUNT_SID must be letters and digits, not {0:?}")]
    BadAccountSid(String),
    #[error("HELPLINE_TWILIO_ACCOUNT_SID needs HELPLINE_TWILIO_AUTH_TOKEN (the account's password)")]
    NoAuthToken,
    #[error("HELPLINE_CARRIER_CALLS_URL must be an http:// or https:// URL, not {0:?}")]
    BadCallsUrl(String),
    #[error("HELPLINE_CARRIER_CALLS_URL needs HELPLINE_WEBHOOK_SECRET (its requests are signed with it)")]
    NoWebhookSecret,
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
    /// The carrier answered with an error status.
    #[error("the carrier refused the request: HTTP {status}{}: {message}", code.map(|c| format!(", error {c}")).unwrap_or_default())]
    Refused { status: u16, code: Option<u32>, message: String },
    /// No answer: connection refused, DNS, TLS, or the deadline passed.
    #[error("the carrier could not be reached: {0}")]
    Unreachable(String),
    /// An answer that is not what the interface documents.
    #[error("the carrier's answer could not be read: {0}")]
    BadAnswer(String),
    /// A recording URL outside the account's API: its credentials are not sent there.
    #[error("the recording URL is not under the carrier's API for this account: {0}")]
    ForeignRecordingUrl(String),
    #[error("the recording is larger than {0} bytes")]
    TooLarge(usize),
}

/// A call to place (`Calls.json`).
#[derive(Debug, Clone)]
pub struct OutboundCall<'a> {
    /// The callee, E.164 (`+39…`).
    pub to: &'a str,
    /// The number the call comes from.
    pub from: &'a str,
    /// The TwiML URL the carrier requests when the callee answers.
    pub url: &'a str,
    /// Where the carrier posts the call's progress (initiated, ringing, answered, completed).
    pub status_callback: Option<&'a str>,
    /// Seconds to let it ring before giving up (`Timeout`).
    pub ring_secs: u32,
}

/// The carrier's answer to [`Carrier::create_call`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CreatedCall {
    pub sid: String,
    pub status: String,
}

/// A text message to send (`Messages.json`).
#[derive(Debug, Clone)]
pub struct OutboundMessage<'a> {
    pub to: &'a str,
    pub from: &'a str,
    pub body: &'a str,
    /// Where the carrier posts the delivery status.
    pub status_callback: Option<&'a str>,
}

/// The carrier's answer to [`Carrier::send_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub sid: String,
    pub status: String,
    /// The segments the carrier counted (`num_segments`, a string in Twilio's answer).
    pub segments: Option<u32>,
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A Twilio-compatible account.
#[derive(Clone)]
pub struct Carrier {
    http: Client<Https, Full<Bytes>>,
    /// `<api url>/2010-04-01/Accounts/<sid>`.
    account_url: String,
    account_sid: String,
    /// `Basic base64(sid:token)`.
    authorization: SecretString,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier").field("account_url", &self.account_url).finish_non_exhaustive()
    }
}

impl Carrier {
    /// The account the settings name, or `None` when `twilio_account_sid` is empty.
    pub fn from_settings(settings: &Settings) -> Result<Option<Carrier>, CarrierError> {
        let sid = settings.twilio_account_sid.trim();
        if sid.is_empty() {
            return Ok(None);
        }
        Carrier::new(&settings.twilio_api_url, sid, &settings.twilio_auth_token).map(Some)
    }

    /// An account at `api_url` (scheme, host and port; no path).
    pub fn new(api_url: &str, account_sid: &str, auth_token: &SecretString) -> Result<Carrier, CarrierError> {
        let base = api_url.trim().trim_end_matches('/');
        let uri: Uri = base.parse().map_err(|_| CarrierError::BadApiUrl(api_url.to_owned()))?;
        let origin_only = matches!(uri.path_and_query().map(|p| p.as_str()), None | Some("/"));
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() || !origin_only {
            return Err(CarrierError::BadApiUrl(api_url.to_owned()));
        }
        if account_sid.is_empty() || !account_sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CarrierError::BadAccountSid(account_sid.to_owned()));
        }
        if auth_token.is_empty() {
            return Err(CarrierError::NoAuthToken);
        }
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{account_sid}:{}", auth_token.expose()));
        Ok(Carrier {
            http: http_client(),
            account_url: format!("{base}/{API_VERSION}/Accounts/{account_sid}"),
            account_sid: account_sid.to_owned(),
            authorization: SecretString::new(format!("Basic {credentials}")),
        })
    }

    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// Places a call (`POST …/Calls.json`); the carrier then requests `call.url` for its TwiML.
    pub async fn create_call(&self, call: &OutboundCall<'_>) -> Result<CreatedCall, CarrierError> {
        let ring = call.ring_secs.clamp(5, 600).to_string();
        let mut form =
            vec![("To", call.to), ("From", call.from), ("Url", call.url), ("Method", "POST"), ("Timeout", &ring)];
        if let Some(cb) = call.status_callback {
            form.push(("StatusCallback", cb));
            form.push(("StatusCallbackMethod", "POST"));
            for event in ["initiated", "ringing", "answered", "completed"] {
                form.push(("StatusCallbackEvent", event));
            }
        }
        let body = self.post("Calls.json", &form).await?;
        serde_json::from_slice(&body).map_err(|e| CarrierError::BadAnswer(e.to_string()))
    }

    /// Hangs up a call placed earlier (`POST …/Calls/{sid}.json` with `Status=completed`, which
    /// Twilio documents as ending the call whether it is queued, ringing or in progress).
    pub async fn end_call(&self, sid: &str) -> Result<(), CarrierError> {
        if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CarrierError::BadAnswer(format!("not a call sid: {sid:?}")));
        }
        self.post(&format!("Calls/{sid}.json"), &[("Status", "completed")]).await.map(|_| ())
    }

    /// Sends a text message (`POST …/Messages.json`).
    pub async fn send_message(&self, message: &OutboundMessage<'_>) -> Result<SentMessage, CarrierError> {
        let mut form = vec![("To", message.to), ("From", message.from), ("Body", message.body)];
        if let Some(cb) = message.status_callback {
            form.push(("StatusCallback", cb));
        }
        let body = self.post("Messages.json", &form).await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            sid: String,
            status: String,
            #[serde(default)]
            num_segments: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| CarrierError::BadAnswer(e.to_string()))?;
        Ok(SentMessage {
            sid: answer.sid,
            status: answer.status,
            segments: answer.num_segments.and_then(|n| n.parse().ok()),
        })
    }

    /// The number a call came from (`GET …/Calls/{CallSid}.json`, its `from`): asked when it is
    /// needed (an operator's text to a TwiML caller), never kept.
    pub async fn call_from(&self, call_sid: &str) -> Result<String, CarrierError> {
        if call_sid.is_empty() || call_sid.len() > 64 || !call_sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CarrierError::BadAnswer(format!("{call_sid:?} is not a call sid")));
        }
        let url = format!("{}/Calls/{call_sid}.json", self.account_url);
        let body =
            self.send(self.request(Method::GET, &url).body(Full::default()), REQUEST_TIMEOUT, MAX_ANSWER_BYTES).await?;
        #[derive(serde::Deserialize)]
        struct Call {
            #[serde(default)]
            from: Option<String>,
        }
        let call: Call = serde_json::from_slice(&body).map_err(|e| CarrierError::BadAnswer(e.to_string()))?;
        Ok(call.from.unwrap_or_default())
    }

    /// A recording's audio as WAV, at most `max_bytes`. `recording_url` is the `RecordingUrl` a
    /// signed TwiML request named; it must lie under this account's `Recordings/` (the account's
    /// credentials go nowhere else). `.wav` is appended when the URL has no extension, as Twilio
    /// documents.
    pub async fn fetch_recording(&self, recording_url: &str, max_bytes: usize) -> Result<Vec<u8>, CarrierError> {
        let prefix = format!("{}/Recordings/", self.account_url);
        let Some(name) = recording_url.strip_prefix(&prefix) else {
            return Err(CarrierError::ForeignRecordingUrl(recording_url.to_owned()));
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '.';
        if name.is_empty() || name.starts_with('.') || name.contains("..") || !name.chars().all(plain) {
            return Err(CarrierError::ForeignRecordingUrl(recording_url.to_owned()));
        }
        let url = if name.contains('.') { recording_url.to_owned() } else { format!("{recording_url}.wav") };
        let request = self.request(Method::GET, &url).body(Full::default());
        self.send(request, FETCH_TIMEOUT, max_bytes).await
    }

    async fn post(&self, resource: &str, form: &[(&str, &str)]) -> Result<Vec<u8>, CarrierError> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let request = self
            .request(Method::POST, &format!("{}/{resource}", self.account_url))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)));
        self.send(request, REQUEST_TIMEOUT, MAX_ANSWER_BYTES).await
    }

    fn request(&self, method: Method, url: &str) -> hyper::http::request::Builder {
        hyper::Request::builder()
            .method(method)
            .uri(url)
            .header(header::AUTHORIZATION, self.authorization.expose())
            .header(header::USER_AGENT, concat!("helpline/", env!("CARGO_PKG_VERSION")))
            .header(header::ACCEPT, "application/json")
    }

    /// Sends `request` and reads a successful answer's body (at most `max_bytes`) within `deadline`.
    async fn send(
        &self,
        request: Result<hyper::Request<Full<Bytes>>, hyper::http::Error>,
        deadline: Duration,
        max_bytes: usize,
    ) -> Result<Vec<u8>, CarrierError> {
        send(&self.http, request, deadline, max_bytes).await
    }
}

/// The carrier's own calls interface for callbacks of JSON-API callers
/// (`HELPLINE_CARRIER_CALLS_URL`): JSON `POST`s signed as the JSON API's requests are, both ways
/// (`X-Helpline-Timestamp`, `X-Helpline-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`
/// under `HELPLINE_WEBHOOK_SECRET`), answered with any `2xx`.
#[derive(Clone)]
pub struct SignedCalls {
    http: Client<Https, Full<Bytes>>,
    url: String,
    key: SecretString,
}

impl std::fmt::Debug for SignedCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedCalls").field("url", &self.url).finish_non_exhaustive()
    }
}

impl SignedCalls {
    /// The interface the settings name, or `None` when `carrier_calls_url` is empty.
    pub fn from_settings(settings: &Settings) -> Result<Option<SignedCalls>, CarrierError> {
        let url = settings.carrier_calls_url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        let uri: Uri = url.parse().map_err(|_| CarrierError::BadCallsUrl(url.to_owned()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(CarrierError::BadCallsUrl(url.to_owned()));
        }
        if settings.webhook_secret.is_empty() {
            return Err(CarrierError::NoWebhookSecret);
        }
        Ok(Some(SignedCalls { http: http_client(), url: url.to_owned(), key: settings.webhook_secret.clone() }))
    }

    /// Posts `body` (JSON), signed for `timestamp` (Unix seconds).
    pub async fn post<T: serde::Serialize>(&self, body: &T, timestamp: i64) -> Result<(), CarrierError> {
        let body = serde_json::to_vec(body).map_err(|e| CarrierError::BadAnswer(e.to_string()))?;
        let request = hyper::Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("helpline/", env!("CARGO_PKG_VERSION")))
            .header("x-helpline-timestamp", timestamp.to_string())
            .header("x-helpline-signature", json_signature(self.key.expose().as_bytes(), timestamp, &body))
            .body(Full::new(Bytes::from(body)));
        send(&self.http, request, REQUEST_TIMEOUT, MAX_ANSWER_BYTES).await.map(|_| ())
    }
}

/// `v1=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`: the JSON API's signature (`webhook::signature`
/// checks the same on requests coming in).
fn json_signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// An HTTP/1 client over rustls (or plain HTTP, for a test carrier).
fn http_client() -> Client<Https, Full<Bytes>> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config())
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new()).build(https)
}

/// Sends `request` and reads a successful answer's body (at most `max_bytes`) within `deadline`.
async fn send(
    http: &Client<Https, Full<Bytes>>,
    request: Result<hyper::Request<Full<Bytes>>, hyper::http::Error>,
    deadline: Duration,
    max_bytes: usize,
) -> Result<Vec<u8>, CarrierError> {
    let request = request.map_err(|e| CarrierError::BadApiUrl(e.to_string()))?;
    let exchange = async {
        let response = http.request(request).await.map_err(|e| CarrierError::Unreachable(chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_bounded(response.into_body(), MAX_ANSWER_BYTES).await.unwrap_or_default();
            return Err(refusal(status.as_u16(), &body));
        }
        read_bounded(response.into_body(), max_bytes).await
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| CarrierError::Unreachable(format!("no answer within {} s", deadline.as_secs())))?
}

/// An error and its sources (refused, timed out, TLS): the URL is ours, never a secret.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Twilio's error body (`{"code": 21211, "message": "…", "status": 400}`), or the bare status.
fn refusal(status: u16, body: &[u8]) -> CarrierError {
    #[derive(serde::Deserialize)]
    struct Problem {
        code: Option<u32>,
        message: Option<String>,
    }
    let problem = serde_json::from_slice::<Problem>(body).ok();
    let code = problem.as_ref().and_then(|p| p.code);
    let message = problem.and_then(|p| p.message).unwrap_or_else(|| {
        hyper::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error").to_owned()
    });
    CarrierError::Refused { status, code, message }
}

async fn read_bounded(mut body: hyper::body::Incoming, max_bytes: usize) -> Result<Vec<u8>, CarrierError> {
    if hyper::body::Body::size_hint(&body).lower() > max_bytes as u64 {
        return Err(CarrierError::TooLarge(max_bytes));
    }
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CarrierError::Unreachable(chain(&e)))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > max_bytes {
                return Err(CarrierError::TooLarge(max_bytes));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// rustls on the aws-lc-rs provider the rest of the server uses, trusting the Mozilla roots
/// (`webpki-roots`): the server has no system certificate store to rely on in a container.
fn tls_config() -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> SecretString {
        SecretString::new("tok")
    }

    #[test]
    fn the_api_url_is_a_bare_origin() {
        assert!(Carrier::new("https://api.twilio.com", "AC1", &token()).is_ok());
        assert!(Carrier::new("http://127.0.0.1:9/", "AC1", &token()).is_ok());
        for bad in ["ftp://x", "api.twilio.com", "https://api.twilio.com/2010-04-01", ""] {
            assert!(matches!(Carrier::new(bad, "AC1", &token()), Err(CarrierError::BadApiUrl(_))), "{bad}");
        }
        assert!(matches!(Carrier::new("https://x", "AC/../x", &token()), Err(CarrierError::BadAccountSid(_))));
        assert!(matches!(Carrier::new("https://x", "AC1", &SecretString::default()), Err(CarrierError::NoAuthToken)));
    }

    #[test]
    fn errors_read_twilios_problem_body() {
        let e = refusal(400, br#"{"code": 21211, "message": "The 'To' number is not valid.", "status": 400}"#);
        assert_eq!(
            e.to_string(),
            "the carrier refused the request: HTTP 400, error 21211: The 'To' number is not valid."
        );
        let e = refusal(502, b"<html>bad gateway</html>");
        assert_eq!(e.to_string(), "the carrier refused the request: HTTP 502: Bad Gateway");
    }

    #[tokio::test]
    async fn credentials_never_leave_the_account() {
        let carrier = Carrier::new("http://127.0.0.1:9", "AC1", &token()).unwrap();
        for url in [
            "http://evil.example/2010-04-01/Accounts/AC1/Recordings/RE1",
            "http://127.0.0.1:9/2010-04-01/Accounts/AC2/Recordings/RE1",
            "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Recordings/../../AC2/Recordings/RE1",
            "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Recordings/",
        ] {
            let e = carrier.fetch_recording(url, 1024).await.unwrap_err();
            assert!(matches!(e, CarrierError::ForeignRecordingUrl(_)), "{url}: {e}");
        }
    }
}
