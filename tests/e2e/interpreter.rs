//! An outside interpreter dialled into a live call through the SIP trunk ("Aggiungi mediatore" /
//! "Add mediator", the number field), proven by tones end to end: a SIP caller plays 440 Hz and
//! presses 0, the operator (a console websocket, its phone a str0m WebRTC peer playing 1 kHz)
//! answers in the browser and dials the interpreter, and the trunk (a UDP SIP peer that
//! challenges with 401 and checks the digest exactly) answers and plays 1.6 kHz. Each party
//! hears the two others and not itself; the interpreter hangs up and the call goes on; the
//! operator hangs up a second interpreter (`DELETE /api/calls/{id}/interpreter`: BYE) and a
//! third one while it rings (CANCEL). Each step reaches the operator's console as an
//! `interpreter` message and the audit log; the number is nowhere in the database. On
//! PostgreSQL the operator's console is on a second node: the call's node dials and hangs up.

use crate::callback_calls::{
    app_with_trunk_on, assert_tone, browser, md5_hex, run_browser_into, sdp_addr, tone, trunk_answers, Heard, Req,
    Trunk, PASSWORD, USER,
};
use crate::console_client::{add_user, connect, sign_in, until, ClientMessage, Session, Ws};
use crate::helpers::TestApp;
use crate::privacy::database_contents;
use crate::sip::{goertzel, SipPhone};
use console::db::users::Role;
use console::operators::protocol::{CallState, Device, InterpreterState, PhoneStatus, PresenceChoice, ServerMessage};
use ivr::domain::{Language, PhoneNumber};
use ivr::rtp::{decode, encode, RtpHeader, RtpPacket};
use ivr::sdp::Codec;
use reqwest::Method;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use tokio::net::UdpSocket;

/// The interpreter's number, and its digits (searched for in the database).
const NUMBER: &str = "+390298765431";
const DIGITS: &str = "0298765431";

/// A SIP party's RTP: every 20 ms it sends `freq` in `codec` (payload type `pt`) to `to`, and
/// what it receives goes into the returned [`Heard`]; until `stop` is set.
fn sip_party(socket: UdpSocket, to: SocketAddr, codec: Codec, pt: u8, freq: f64, stop: Arc<AtomicBool>) -> Heard {
    let heard = Heard::default();
    let into = heard.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        let mut sent = 0u32;
        while !stop.load(Ordering::SeqCst) {
            tokio::select! {
                _ = ticks.tick() => {
                    let header = RtpHeader { marker: sent == 0, payload_type: pt, sequence: sent as u16, timestamp: 160 * sent, ssrc: 0x1600 + u32::from(pt), csrcs: Vec::new() };
                    let payload = encode(codec, &tone(freq, sent as usize * 160, 160));
                    socket.send_to(&header.encode(&payload), to).await.unwrap();
                    sent += 1;
                }
                r = socket.recv_from(&mut buf) => {
                    let (n, _) = r.unwrap();
                    let Ok(packet) = RtpPacket::decode(&buf[..n]) else { continue };
                    if packet.header.payload_type == pt {
                        into.push(decode(codec, packet.payload));
                    }
                }
            }
        }
    });
    heard
}

/// `samples` hold each of `want` clearly and little of `not` (on this scale two tones of one
/// level mixed measure about 0.5 each, and a tone that is absent under 0.001).
fn assert_hears(samples: &[i16], want: &[f64], not: f64, who: &str) {
    assert!(samples.len() >= 8000, "{who}: only {} samples", samples.len());
    let powers: Vec<f64> = want.iter().map(|f| goertzel(samples, *f)).collect();
    let own = goertzel(samples, not);
    assert!(
        powers.iter().all(|p| *p > 0.3) && own < 0.02,
        "{who}: power at {want:?} Hz {powers:.4?}, at {not} Hz {own:.4}"
    );
}

/// The samples each party received over two seconds from one second after now (the mixer's
/// buffers and the parties' jitter settled).
async fn listen(parties: &[&Heard]) -> Vec<Vec<i16>> {
    let from = Instant::now() + Duration::from_secs(1);
    let to = from + Duration::from_secs(2);
    tokio::time::sleep_until(to.into()).await;
    parties.iter().map(|h| h.samples_between(from, to)).collect()
}

async fn request(app: &TestApp, who: &Session, method: Method, path: &str, body: Option<serde_json::Value>) -> u16 {
    let mut r =
        app.client.request(method, app.url(path)).header("cookie", &who.cookie).header("x-csrf-token", &who.csrf);
    if let Some(body) = body {
        r = r.json(&body);
    }
    r.send().await.unwrap().status().as_u16()
}

/// The trunk's side of a dial up to the INVITE carrying credentials: the first INVITE (to
/// `sip:<number>@<trunk host>`, no credentials) is challenged with 401, and the second's
/// `Authorization` must be the digest of the configured user and password.
async fn challenge(trunk: &Trunk, nonce: &str) -> Req {
    let want_uri = format!("sip:{NUMBER}@127.0.0.1");
    let invite = trunk.expect("INVITE").await;
    assert_eq!(invite.uri, want_uri);
    assert!(invite.header("Authorization").is_none(), "{}", invite.text);
    let www = format!("WWW-Authenticate: Digest realm=\"trunk\", nonce=\"{nonce}\"");
    trunk.send(invite.from, &invite.response(401, "Unauthorized", &[www], "")).await;
    trunk.expect("ACK").await;
    let invite = trunk.expect("INVITE").await;
    assert_eq!(invite.uri, want_uri);
    let ha1 = md5_hex(&format!("{USER}:trunk:{PASSWORD}"));
    let ha2 = md5_hex(&format!("INVITE:{want_uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
    assert_eq!(
        invite.header("Authorization").unwrap(),
        format!(
            "Digest username=\"{USER}\", realm=\"trunk\", nonce=\"{nonce}\", uri=\"{want_uri}\", \
             response=\"{response}\", algorithm=MD5"
        )
    );
    assert!(invite.body().contains("a=rtpmap:8 PCMA/8000"), "A-law offered: {}", invite.body());
    invite
}

/// The interpreter hangs up: BYE within the dialog `invite` made, answered 200.
async fn interpreter_hangs_up(trunk: &Trunk, invite: &Req) {
    let contact = invite.header("Contact").unwrap();
    let target = contact.trim_start_matches('<').split('>').next().unwrap();
    let bye = format!(
        "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {trunk};branch=z9hG4bKinterpreterbye\r\nFrom: {to};tag=trunk1\r\n\
         To: {from}\r\nCall-ID: {call_id}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        trunk = trunk.addr(),
        to = invite.header("To").unwrap(),
        from = invite.header("From").unwrap(),
        call_id = invite.header("Call-ID").unwrap(),
    );
    trunk.send(invite.from, &bye).await;
    loop {
        let r = trunk.next(Duration::from_secs(10)).await.expect("an answer to the BYE");
        if r.text.starts_with("SIP/2.0 200") && r.header("CSeq") == Some("1 BYE") {
            return;
        }
    }
}

/// The `interpreter` message of `state` on my socket (`why` with `left`).
async fn news(ws: &mut Ws, call_id: &str, want: InterpreterState) -> Option<String> {
    until!(ws, ServerMessage::Interpreter { call_id: c, state, why } if c == call_id && state == want => why)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interpreter_dialled_through_the_trunk_hears_and_is_heard_and_the_operator_hangs_them_up() {
    let trunk = Trunk::bind().await;
    let db = crate::helpers::fresh_database().await;
    let url = db.url.clone();
    let app = app_with_trunk_on(db, trunk.addr(), PASSWORD, 30).await;
    // On PostgreSQL the operator's console is on a second node (the call's media stays on the
    // first, which dials and hangs up the interpreters, asked through the phone's relay).
    let second = if app.db.is_postgres() {
        let db = crate::helpers::TestDb { url, dir: tempfile::tempdir().unwrap() };
        Some(app_with_trunk_on(db, trunk.addr(), PASSWORD, 30).await)
    } else {
        None
    };
    let ops = second.as_ref().unwrap_or(&app);
    add_user(&app, "anna", Role::Operator, &[Language::It], &[], false).await;
    add_user(&app, "bruno", Role::Operator, &[Language::It], &[], false).await;
    add_user(&app, "sara", Role::Supervisor, &[Language::It], &[], false).await;
    let anna = sign_in(ops, "anna").await;
    let mut ws = connect(ops.addr, &anna).await;
    ws.hello(0).await;
    ws.presence(PresenceChoice::Available, None).await;

    // The caller: 440 Hz µ-law from the start; 0 once the welcome is heard.
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut phone = SipPhone::call(app.sip_addr, "+393331112233", caller_rtp.local_addr().unwrap().port()).await;
    let stop_caller = Arc::new(AtomicBool::new(false));
    let caller = sip_party(caller_rtp, sdp_addr(phone.answer_sdp()), Codec::Pcmu, 0, 440.0, stop_caller.clone());
    let until = Instant::now() + Duration::from_secs(10);
    while caller.samples_between(Instant::now() - Duration::from_secs(60), Instant::now()).is_empty() {
        assert!(Instant::now() < until, "the caller hears nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    phone.press("0").await;

    // Anna answers in the browser; her page's phone plays 1 kHz.
    let offer = until!(ws, ServerMessage::Offer(o) => o);
    let id = offer.call_id.clone();
    ws.send(ClientMessage::Accept { offer_id: offer.offer_id, device: Some(Device::Browser) }).await;
    let connected = until!(ws, ServerMessage::Call(c) if c.state == CallState::Connected => c);
    assert_eq!(connected.device, Some(Device::Browser));
    let (mut rtc, mid, sdp, pending, socket) = browser();
    ws.send(ClientMessage::PhoneOffer { call_id: id.clone(), sdp, restart: false }).await;
    let answer_sdp = until!(ws, ServerMessage::PhoneAnswer { call_id, sdp } if call_id == id => sdp);
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer_sdp).unwrap()).unwrap();
    // The law the server chose for the browser (the first of the answer's formats).
    let m = answer_sdp.lines().find_map(|l| l.strip_prefix("m=audio ")).unwrap();
    let law = if m.split(' ').nth(2) == Some("0") { Codec::Pcmu } else { Codec::Pcma };
    let operator = Heard::default();
    let stop_browser = Arc::new(AtomicBool::new(false));
    let browser_thread = {
        let (heard, stop) = (operator.clone(), stop_browser.clone());
        std::thread::spawn(move || run_browser_into(rtc, mid, socket, law, &heard, move || stop.load(Ordering::SeqCst)))
    };
    let state = until!(ws, ServerMessage::PhoneState { call_id, state, .. } if call_id == id && state != PhoneStatus::Connecting => state);
    assert_eq!(state, PhoneStatus::Connected);

    // Nothing to hang up yet.
    let path = format!("/api/calls/{id}/interpreter");
    assert_eq!(request(ops, &anna, Method::DELETE, &path, None).await, 409, "no interpreter's call is up");

    // The interpreter: dialled, challenged, answered; plays 1.6 kHz A-law.
    let status = request(ops, &anna, Method::POST, &path, Some(serde_json::json!({"number": NUMBER}))).await;
    assert_eq!(status, 202);
    assert_eq!(news(&mut ws, &id, InterpreterState::Dialling).await, None);
    let invite = challenge(&trunk, "nonce-1").await;
    let interpreter_rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    trunk_answers(&trunk, &invite, "interpreter", &interpreter_rtp).await;
    let stop_interpreter = Arc::new(AtomicBool::new(false));
    let interpreter =
        sip_party(interpreter_rtp, sdp_addr(invite.body()), Codec::Pcma, 8, 1600.0, stop_interpreter.clone());
    assert_eq!(news(&mut ws, &id, InterpreterState::Joined).await, None);

    let heard = listen(&[&caller, &operator, &interpreter]).await;
    assert_hears(&heard[0], &[1000.0, 1600.0], 440.0, "the caller, from the operator and the interpreter");
    assert_hears(&heard[1], &[440.0, 1600.0], 1000.0, "the operator, from the caller and the interpreter");
    assert_hears(&heard[2], &[440.0, 1000.0], 1600.0, "the interpreter, from the caller and the operator");

    // The interpreter hangs up; the caller and the operator go on.
    stop_interpreter.store(true, Ordering::SeqCst);
    interpreter_hangs_up(&trunk, &invite).await;
    assert_eq!(news(&mut ws, &id, InterpreterState::Left).await.as_deref(), Some("ended"));
    let heard = listen(&[&caller, &operator]).await;
    assert_tone(&heard[0], 1000.0, 1600.0, "the caller, from the operator, the interpreter gone");
    assert_tone(&heard[1], 440.0, 1600.0, "the operator, from the caller, the interpreter gone");
    assert_eq!(request(ops, &anna, Method::DELETE, &path, None).await, 409, "the interpreter already left");

    // A second interpreter: only the call's operator hangs them up (BYE).
    let status = request(ops, &anna, Method::POST, &path, Some(serde_json::json!({"number": NUMBER}))).await;
    assert_eq!(status, 202);
    let invite = challenge(&trunk, "nonce-2").await;
    let interpreter_rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    trunk_answers(&trunk, &invite, "interpreter", &interpreter_rtp).await;
    assert_eq!(news(&mut ws, &id, InterpreterState::Joined).await, None);
    let bruno = sign_in(ops, "bruno").await;
    let sara = sign_in(ops, "sara").await;
    assert_eq!(request(ops, &bruno, Method::DELETE, &path, None).await, 403, "another operator");
    assert_eq!(request(ops, &sara, Method::DELETE, &path, None).await, 403, "a supervisor not on the call");
    assert_eq!(request(ops, &anna, Method::DELETE, "/api/calls/nope/interpreter", None).await, 404);
    let r = ops.client.delete(ops.url(&path)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "not signed in");
    assert_eq!(request(ops, &anna, Method::DELETE, &path, None).await, 202);
    let bye = trunk.expect("BYE").await;
    assert_eq!(bye.uri, format!("sip:interpreter@{}", trunk.addr()));
    trunk.send(bye.from, &bye.response(200, "OK", &[], "")).await;
    assert_eq!(news(&mut ws, &id, InterpreterState::Left).await.as_deref(), Some("hung_up"));

    // A third one hung up while it rings: CANCEL, and the INVITE ends 487.
    let status = request(ops, &anna, Method::POST, &path, Some(serde_json::json!({"number": NUMBER}))).await;
    assert_eq!(status, 202);
    let invite = challenge(&trunk, "nonce-3").await;
    trunk.send(invite.from, &invite.response(180, "Ringing", &[], "")).await;
    assert_eq!(request(ops, &anna, Method::DELETE, &path, None).await, 202);
    let cancel = trunk.expect("CANCEL").await;
    assert_eq!(cancel.header("Call-ID"), invite.header("Call-ID"));
    trunk.send(cancel.from, &cancel.response(200, "OK", &[], "")).await;
    trunk.send(invite.from, &invite.response(487, "Request Terminated", &[], "")).await;
    trunk.expect("ACK").await;
    assert_eq!(news(&mut ws, &id, InterpreterState::Left).await.as_deref(), Some("hung_up"));

    // Still the two of them.
    let heard = listen(&[&caller, &operator]).await;
    assert_tone(&heard[0], 1000.0, 1600.0, "the caller, from the operator, at the end");
    assert_tone(&heard[1], 440.0, 1600.0, "the operator, from the caller, at the end");
    stop_browser.store(true, Ordering::SeqCst);
    stop_caller.store(true, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || browser_thread.join().unwrap()).await.unwrap();
    phone.hang_up().await;

    // Audited with the number masked, and nowhere in clear.
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT a.action, a.detail, a.user_name FROM audit_log a WHERE a.action LIKE 'interpreter%' AND a.call_id = $1 ORDER BY a.id",
    )
    .bind(&id)
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    let masked = PhoneNumber::parse(NUMBER).unwrap().masked();
    let want: Vec<(String, String, String)> = [
        ("interpreter_dial", masked.as_str()),
        ("interpreter_join", masked.as_str()),
        ("interpreter_leave", "ended"),
        ("interpreter_dial", masked.as_str()),
        ("interpreter_join", masked.as_str()),
        ("interpreter_leave", "hung_up"),
        ("interpreter_dial", masked.as_str()),
        ("interpreter_leave", "hung_up"),
    ]
    .iter()
    .map(|(a, d)| (a.to_string(), d.to_string(), "anna".to_owned()))
    .collect();
    assert_eq!(rows, want);
    assert!(!masked.contains(DIGITS) && !masked.contains(&DIGITS[..6]), "{masked}");
    let contents = database_contents(&app).await;
    assert!(!contents.contains(DIGITS), "the interpreter's number is nowhere in the database");
    if let Some(second) = second {
        second.stop().await;
    }
    app.stop().await;
}
