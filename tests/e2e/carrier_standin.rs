//! A stand-in for a Twilio-compatible carrier's REST API, for the tests of what the helpline asks
//! of it (there is no real peer to run here). It checks every request as Twilio documents it and
//! answers as Twilio does, errors included:
//!
//! - the path: `/2010-04-01/Accounts/{AccountSid}/Calls.json`, `…/Messages.json`,
//!   `…/Recordings/{RecordingSid}[.wav]`, and `GET …/Calls/{CallSid}.json` (a call the test put
//!   there with `put_call`; its `from`);
//! - HTTP basic authentication with the account SID and auth token (else 401, error 20003);
//! - `POST`s form-encoded (`application/x-www-form-urlencoded`), with the fields each resource
//!   requires: `To` (E.164) and `From`, then `Url` for a call (21205) or `Body` for a message
//!   (21602; at most 1,600 characters, 21617);
//! - a placed call ended (`POST …/Calls/{CallSid}.json` with `Status=completed` or `canceled`, as
//!   Twilio's "update a call" documents): a sid this stand-in handed out, else 404 (20404);
//!   any other `Status`, 400 (21218);
//! - answers `201 Created` with the resource's JSON (`sid`, `status`, and `num_segments` for a
//!   message), errors as `{"code", "message", "more_info", "status"}`.
//!
//! Every request that passed the checks is handed to the test (`next_request`), so a test awaits
//! the request instead of sleeping; a test can make the next answers fail (`fail_next`) and serve
//! recordings (`put_recording`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::Engine;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// One request the stand-in accepted.
#[derive(Debug, Clone)]
pub struct CarrierRequest {
    /// `Calls.json`, `Messages.json`, or `Recordings/<name>`.
    pub resource: String,
    /// The form fields in the order sent (a field may repeat, e.g. `StatusCallbackEvent`).
    pub form: Vec<(String, String)>,
}

impl CarrierRequest {
    /// The first value of `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// Every value of `name`.
    pub fn fields(&self, name: &str) -> Vec<&str> {
        self.form.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// An error answer queued by [`CarrierStandIn::fail_next`].
#[derive(Debug, Clone)]
struct Failure {
    status: u16,
    code: u32,
    message: String,
}

struct Shared {
    account_sid: String,
    auth_token: String,
    failures: Mutex<VecDeque<Failure>>,
    recordings: Mutex<HashMap<String, Vec<u8>>>,
    /// Live calls by sid: the number each came from.
    calls: Mutex<HashMap<String, String>>,
    sequence: Mutex<u64>,
    accepted: mpsc::UnboundedSender<CarrierRequest>,
}

/// The running stand-in; dropped, it stops.
pub struct CarrierStandIn {
    /// `http://127.0.0.1:<port>`: what `HELPLINE_TWILIO_API_URL` is set to.
    pub url: String,
    pub account_sid: String,
    pub auth_token: String,
    shared: Arc<Shared>,
    accepted: mpsc::UnboundedReceiver<CarrierRequest>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for CarrierStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl CarrierStandIn {
    pub async fn start(account_sid: &str, auth_token: &str) -> CarrierStandIn {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            failures: Mutex::new(VecDeque::new()),
            recordings: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            sequence: Mutex::new(0),
            accepted: tx,
        });
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/{*resource}", any(handle))
            .fallback(|| async { problem(404, 20404, "The requested resource was not found") })
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        CarrierStandIn {
            url: format!("http://{addr}"),
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            shared,
            accepted: rx,
            server,
        }
    }

    /// The next request that passed the checks, waiting up to `within`.
    pub async fn next_request(&mut self, within: Duration) -> CarrierRequest {
        tokio::time::timeout(within, self.accepted.recv())
            .await
            .expect("the carrier stand-in received no request in time")
            .expect("the stand-in stopped")
    }

    /// Whether a request is already waiting (none expected: `None`).
    pub fn try_next_request(&mut self) -> Option<CarrierRequest> {
        self.accepted.try_recv().ok()
    }

    /// The next well-formed `POST` is answered with this Twilio error instead of being accepted.
    pub fn fail_next(&self, status: u16, code: u32, message: &str) {
        self.shared.failures.lock().unwrap().push_back(Failure { status, code, message: message.to_owned() });
    }

    /// Serves call `sid` (`GET …/Calls/{sid}.json`) as one from `from`.
    pub fn put_call(&self, sid: &str, from: &str) {
        self.shared.calls.lock().unwrap().insert(sid.to_owned(), from.to_owned());
    }

    /// Serves `wav` as recording `sid`; returns its `RecordingUrl` (without extension, as Twilio
    /// sends it).
    pub fn put_recording(&self, sid: &str, wav: Vec<u8>) -> String {
        self.shared.recordings.lock().unwrap().insert(sid.to_owned(), wav);
        format!("{}/2010-04-01/Accounts/{}/Recordings/{sid}", self.url, self.account_sid)
    }
}

fn problem(status: u16, code: u32, message: &str) -> Response {
    let body = serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", shared.account_sid, shared.auth_token));
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Basic {expected}"))
}

fn e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|d| (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((sid, resource)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sid != shared.account_sid || !authorized(&shared, &headers) {
        return problem(401, 20003, "Authenticate");
    }
    if let Some(name) = resource.strip_prefix("Recordings/") {
        if method != Method::GET {
            return problem(405, 20004, "Method not allowed");
        }
        let key = name.strip_suffix(".wav").unwrap_or(name);
        let Some(wav) = shared.recordings.lock().unwrap().get(key).cloned() else {
            return problem(404, 20404, "The requested resource was not found");
        };
        let _ = shared.accepted.send(CarrierRequest { resource, form: Vec::new() });
        return ([(header::CONTENT_TYPE, "audio/x-wav")], wav).into_response();
    }
    // A call read (`GET`); a placed call ended is a `POST` to the same resource, below.
    if let Some(call) =
        resource.strip_prefix("Calls/").and_then(|r| r.strip_suffix(".json")).filter(|_| method == Method::GET)
    {
        let Some(from) = shared.calls.lock().unwrap().get(call).cloned() else {
            return problem(404, 20404, "The requested resource was not found");
        };
        let _ = shared.accepted.send(CarrierRequest { resource: resource.clone(), form: Vec::new() });
        let answer = serde_json::json!({
            "sid": call, "account_sid": shared.account_sid, "from": from, "to": "+39803001",
            "status": "in-progress", "direction": "inbound", "api_version": "2010-04-01",
        });
        return (StatusCode::OK, axum::Json(answer)).into_response();
    }
    if method != Method::POST {
        return problem(405, 20004, "Method not allowed");
    }
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return problem(400, 20001, "Requests must be application/x-www-form-urlencoded");
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let request = CarrierRequest { resource: resource.clone(), form };
    if let Some(sid) = resource.strip_prefix("Calls/").and_then(|r| r.strip_suffix(".json")) {
        let issued = sid.strip_prefix("CA").and_then(|n| u64::from_str_radix(n, 16).ok());
        if sid.len() != 34 || issued.is_none_or(|n| n == 0 || n > *shared.sequence.lock().unwrap()) {
            return problem(404, 20404, "The requested resource was not found");
        }
        let status = request.field("Status").unwrap_or("");
        if !matches!(status, "completed" | "canceled") {
            return problem(400, 21218, &format!("Invalid call status {status:?}"));
        }
        let answer = serde_json::json!({ "sid": sid, "account_sid": shared.account_sid, "status": status });
        let _ = shared.accepted.send(request);
        return (StatusCode::OK, axum::Json(answer)).into_response();
    }
    let to = request.field("To").unwrap_or("");
    if to.is_empty() {
        return problem(400, 21201, "No 'To' number is specified");
    }
    if !e164(to) {
        return problem(400, 21211, &format!("The 'To' number {to} is not a valid phone number."));
    }
    if request.field("From").unwrap_or("").is_empty() {
        return problem(400, 21603, "A 'From' phone number is required.");
    }
    let (prefix, status, extra) = match resource.as_str() {
        "Calls.json" => {
            if request.field("Url").unwrap_or("").is_empty() && request.field("Twiml").unwrap_or("").is_empty() {
                return problem(400, 21205, "Url parameter is required.");
            }
            ("CA", "queued", serde_json::json!({}))
        }
        "Messages.json" => {
            let body = request.field("Body").unwrap_or("");
            if body.is_empty() {
                return problem(400, 21602, "Message body is required.");
            }
            if body.chars().count() > 1600 {
                return problem(400, 21617, "The concatenated message body exceeds the 1600 character limit.");
            }
            // Twilio's count: GSM-7 fits 153 characters per part of a long message, UCS-2 67.
            let gsm = body.chars().all(|c| c.is_ascii() && c != '`');
            let (single, part) = if gsm { (160, 153) } else { (70, 67) };
            let n = body.chars().count();
            let segments = if n <= single { 1 } else { n.div_ceil(part) };
            ("SM", "queued", serde_json::json!({ "num_segments": segments.to_string(), "body": body }))
        }
        _ => return problem(404, 20404, "The requested resource was not found"),
    };
    if let Some(f) = shared.failures.lock().unwrap().pop_front() {
        return problem(f.status, f.code, &f.message);
    }
    let n = {
        let mut seq = shared.sequence.lock().unwrap();
        *seq += 1;
        *seq
    };
    let mut answer = serde_json::json!({
        "sid": format!("{prefix}{n:032x}"),
        "account_sid": shared.account_sid,
        "to": to,
        "from": request.field("From"),
        "status": status,
        "api_version": "2010-04-01",
    });
    if let (Some(a), Some(e)) = (answer.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    let _ = shared.accepted.send(request);
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}
