//! A real websocket client for the operator console (tokio-tungstenite) that sends and reads the
//! server's own protocol types, and the users and calls the console tests need.

use crate::helpers::TestApp;
use console::db::users::{self, NewUser, Password, Role, UserName};
use console::operators::presence::PresenceState;
pub use console::operators::protocol::*;
use futures_util::{SinkExt, StreamExt};
use ivr::domain::{Language, ServiceArea};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub const PASSWORD: &str = "correct horse battery";

/// Creates a user; returns its id.
pub async fn add_user(
    app: &TestApp,
    name: &str,
    role: Role,
    languages: &[Language],
    areas: &[ServiceArea],
    mediator: bool,
) -> i64 {
    let u = users::add_user(
        &app.state.db,
        &NewUser {
            name: UserName::parse(name).unwrap(),
            role,
            languages: languages.to_vec(),
            areas: areas.to_vec(),
            password: Password::parse(PASSWORD).unwrap(),
            sip_target: Some(format!("sip:{name}@pbx.example.org")),
            organization_id: None,
        },
        app.state.clock.now().timestamp_millis(),
        &console::db::audit::Actor::system("test"),
    )
    .await
    .unwrap();
    if mediator {
        console::operators::presence::set_mediator(&app.state.db, u.id, true).await.unwrap();
    }
    u.id
}

/// Creates an organisation editor bound to `organization_id`; returns its id.
pub async fn add_org_editor(app: &TestApp, name: &str, organization_id: &str) -> i64 {
    users::add_user(
        &app.state.db,
        &NewUser {
            name: UserName::parse(name).unwrap(),
            role: Role::OrgEditor,
            languages: vec![],
            areas: vec![],
            password: Password::parse(PASSWORD).unwrap(),
            sip_target: None,
            organization_id: Some(organization_id.to_owned()),
        },
        app.state.clock.now().timestamp_millis(),
        &console::db::audit::Actor::system("test"),
    )
    .await
    .unwrap()
    .id
}

/// A signed-in browser: its cookie and CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub async fn sign_in(app: &TestApp, name: &str) -> Session {
    sign_in_with(app, name, PASSWORD).await
}

pub async fn sign_in_with(app: &TestApp, name: &str, password: &str) -> Session {
    let r = app
        .client
        .post(app.url("/api/session"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "sign-in of {name}");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    Session { cookie, csrf: body["csrf_token"].as_str().unwrap().to_owned() }
}

/// The password the tests' first admin chooses for themselves.
pub const ADMIN_PASSWORD: &str = "the admin's own password";

/// The first admin, signed in, having chosen their own password (the server asks for that before
/// anything else), as a browser would.
pub async fn first_admin(app: &TestApp) -> Session {
    let (name, password) = app.first_admin.clone().expect("a first admin");
    let body = json!({"name": name, "password": password});
    let r = app.client.post(app.url("/api/session")).json(&body).send().await.unwrap();
    if r.status() == 401 {
        return sign_in_with(app, &name, ADMIN_PASSWORD).await;
    }
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["must_change_password"], true, "the first admin must choose a password: {body}");
    let session = Session { cookie, csrf: body["csrf_token"].as_str().unwrap().to_owned() };
    let r = app
        .client
        .post(app.url("/api/session/password"))
        .header("cookie", &session.cookie)
        .header("x-csrf-token", &session.csrf)
        .json(&json!({"current_password": password, "new_password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    session
}

/// One console socket, speaking `console::operators::protocol`.
pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    pub last_seq: i64,
}

pub async fn connect(addr: std::net::SocketAddr, session: &Session) -> Ws {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert("cookie", session.cookie.parse().unwrap());
    req.headers_mut().insert("origin", format!("http://{addr}").parse().unwrap());
    let (stream, _) = tokio_tungstenite::connect_async(req).await.expect("websocket connects");
    Ws { stream, last_seq: 0 }
}

/// A message's `type` (for failure messages).
pub fn type_of(m: &ServerMessage) -> String {
    serde_json::to_value(m).ok().and_then(|v| v["type"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// Waits on `$ws` for the first message matching the pattern (and the guard, if any), skipping
/// the others; evaluates to the expression (`ServerMessage` and its types are in scope).
macro_rules! until {
    ($ws:expr, $pat:pat $(if $guard:expr)? => $out:expr) => {
        $ws.until(stringify!($pat), |m| match m {
            $pat $(if $guard)? => Some($out),
            _ => None,
        })
        .await
    };
}
pub(crate) use until;

impl Ws {
    pub async fn send(&mut self, m: ClientMessage) {
        self.send_raw(&serde_json::to_string(&m).unwrap()).await;
    }

    /// Any text: for frames that are not valid messages.
    pub async fn send_raw(&mut self, text: &str) {
        self.stream.send(Message::Text(text.to_owned().into())).await.unwrap();
    }

    /// The next frame (10 s at most), or `None` when the socket closed.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            let m =
                tokio::time::timeout(Duration::from_secs(10), self.stream.next()).await.expect("a message within 10 s");
            match m {
                Some(Ok(Message::Text(t))) => {
                    let f: Frame = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{t} is no server message: {e}"));
                    if let Some(s) = f.seq {
                        assert!(s > self.last_seq, "seq increases: {s} after {} in {t}", self.last_seq);
                        self.last_seq = s;
                    }
                    return Some(f);
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Skips messages until `pick` takes one (see [`until!`]); `what` names it if none comes.
    pub async fn until<T>(&mut self, what: &str, mut pick: impl FnMut(ServerMessage) -> Option<T>) -> T {
        let mut seen = Vec::new();
        loop {
            let Some(f) = self.next().await else { panic!("socket closed waiting for {what}; saw {seen:?}") };
            let kind = type_of(&f.message);
            match pick(f.message) {
                Some(t) => return t,
                None => seen.push(kind),
            }
        }
    }

    pub async fn hello(&mut self, last_seq: i64) -> Welcome {
        self.send(ClientMessage::Hello { last_seq }).await;
        until!(self, ServerMessage::Welcome(w) => *w)
    }

    /// Sets presence (`paused` with a reason) and waits for my presence message.
    pub async fn presence(&mut self, state: PresenceChoice, reason: Option<&str>) -> OperatorStatus {
        self.send(ClientMessage::Presence { state, reason: reason.map(str::to_owned) }).await;
        let want = match state {
            PresenceChoice::Available => PresenceState::Available,
            PresenceChoice::Paused => PresenceState::Paused,
            PresenceChoice::Offline => PresenceState::Offline,
        };
        until!(self, ServerMessage::Presence { operator } if operator.state == want => operator)
    }

    /// Sends a ping and returns the messages that came before its pong.
    pub async fn ping(&mut self, tag: &str) -> Vec<ServerMessage> {
        self.send(ClientMessage::Ping { r#ref: Some(json!(tag)) }).await;
        let mut before = Vec::new();
        loop {
            match self.next().await.expect("a pong").message {
                ServerMessage::Pong { r#ref: Some(r) } if r == tag => return before,
                m => before.push(m),
            }
        }
    }

    /// Waits until the socket is closed by the server.
    pub async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_secs(40), self.stream.next()).await {
                Err(_) => return false,
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// Signs in and opens a socket, said hello; available when asked.
pub async fn operator_online(app: &TestApp, name: &str, available: bool) -> Ws {
    let s = sign_in(app, name).await;
    let mut ws = connect(app.addr, &s).await;
    ws.hello(0).await;
    if available {
        ws.presence(PresenceChoice::Available, None).await;
    }
    ws
}

/// A JSON-webhook call driven into the queue: `digits` after call.started, until an enqueue.
pub struct Call<'a> {
    pub app: &'a TestApp,
    pub id: String,
    seq: i64,
}

impl<'a> Call<'a> {
    pub fn new(app: &'a TestApp, id: &str) -> Self {
        Call { app, id: id.into(), seq: 0 }
    }

    pub async fn send(&mut self, mut event: Value) -> Value {
        self.seq += 1;
        event["call_id"] = json!(self.id);
        event["seq"] = json!(self.seq);
        let (status, body) = self.app.voice_event(&event).await;
        assert_eq!(status, 200, "{event} → {body}");
        body
    }

    /// Starts the call from `from` and sends `digits` one by one; the last answer must enqueue.
    pub async fn to_queue(app: &'a TestApp, id: &str, from: &str, digits: &[&str]) -> Call<'a> {
        let mut call = Call::new(app, id);
        call.send(json!({"type": "call.started", "from": from, "to": "803001"})).await;
        let mut last = Value::Null;
        for d in digits {
            last = call.send(json!({"type": "digits", "digits": d})).await;
        }
        assert!(
            last["actions"].as_array().unwrap().iter().any(|a| a["type"] == "enqueue"),
            "{id} reaches the queue: {last}"
        );
        call
    }
}

/// An Italian caller from Como for housing (it, casa).
pub async fn italian_housing_call<'a>(app: &'a TestApp, id: &str) -> Call<'a> {
    Call::to_queue(app, id, "+39 333 123 4512", &["1", "3", "22100", "2"]).await
}

/// A French caller for housing, no CAP (fr, casa).
pub async fn french_housing_call<'a>(app: &'a TestApp, id: &str) -> Call<'a> {
    Call::to_queue(app, id, "+33 6 12 34 56 78", &["1", "3", "#"]).await
}
