//! Callbacks the helpline places itself over a SIP trunk ("Call back" in the console): the test
//! is the trunk (a UDP SIP peer that challenges with 407 then 401 and checks the INVITE's request
//! URI and credentials exactly, then answers and plays 440 Hz) and the operator's browser (a
//! str0m WebRTC peer playing 1 kHz); the tones prove the bridge both ways. Busy, wrong
//! credentials and no answer put the request back until the third attempt closes it as
//! unreachable; two operators clicking on one request place one call.

use crate::callbacks::{api, twiml_callback_request};
use crate::console_client::{add_user, sign_in, Session};
use crate::helpers::{fresh_database, spawn_app_with, TestApp};
use crate::privacy::database_contents;
use crate::sip::goertzel;
use console::clock::Clock;
use console::db::users::Role;
use ivr::domain::Language;
use ivr::rtp::{decode, encode, RtpHeader, RtpPacket};
use ivr::sdp::Codec;
use md5::{Digest, Md5};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

/// The caller's number (`webhook_twiml::post`'s `From`) and its digits.
const NUMBER: &str = "+393331234512";
const DIGITS: &str = "3331234512";
pub(crate) const USER: &str = "803001";
pub(crate) const PASSWORD: &str = "trunk-password-7";

pub(crate) fn tone(freq: f64, from: usize, samples: usize) -> Vec<i16> {
    (from..from + samples)
        .map(|n| (8000.0 * (2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0).sin()) as i16)
        .collect()
}

pub(crate) fn assert_tone(samples: &[i16], freq: f64, other: f64, who: &str) {
    assert!(samples.len() >= 4000, "{who}: only {} samples", samples.len());
    let (want, not) = (goertzel(samples, freq), goertzel(samples, other));
    assert!(want > 0.3 && not < 0.02, "{who}: power at {freq} Hz {want:.4}, at {other} Hz {not:.4}");
}

pub(crate) fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

pub(crate) async fn app_with_trunk(trunk: SocketAddr, password: &str, ring_secs: u64) -> TestApp {
    app_with_trunk_on(fresh_database().await, trunk, password, ring_secs).await
}

/// The same on `db` (a second node on the same PostgreSQL database, say).
pub(crate) async fn app_with_trunk_on(
    db: crate::helpers::TestDb,
    trunk: SocketAddr,
    password: &str,
    ring_secs: u64,
) -> TestApp {
    let password = password.to_owned();
    spawn_app_with(db, move |s| {
        s.trunk_uri = format!("sip:{trunk}");
        s.trunk_user = USER.into();
        s.trunk_password = console::config::SecretString::new(password);
        s.trunk_caller_id = USER.into();
        s.callback_ring_secs = ring_secs;
    })
    .await
}

/// The trunk's far end (`user`) answers `invite` in A-law, its RTP on `rtp`: 200 OK with SDP,
/// the ACK (to its Contact) awaited.
pub(crate) async fn trunk_answers(trunk: &Trunk, invite: &Req, user: &str, rtp: &UdpSocket) {
    let port = rtp.local_addr().unwrap().port();
    let sdp = format!(
        "v=0\r\no=trunk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    );
    let contact = format!("Contact: <sip:{user}@{}>", trunk.addr());
    trunk.send(invite.from, &invite.response(200, "OK", &[contact], &sdp)).await;
    let ack = trunk.expect("ACK").await;
    assert_eq!(ack.uri, format!("sip:{user}@{}", trunk.addr()));
}

/// The callee's side for 4 s: plays 440 Hz A-law to `helpline_rtp` and returns what it heard.
pub(crate) async fn callee_plays_440(callee: &UdpSocket, helpline_rtp: SocketAddr) -> Vec<i16> {
    let mut heard: Vec<i16> = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut sent = 0u32;
    while sent < 200 {
        tokio::select! {
            _ = ticks.tick() => {
                let header = RtpHeader { marker: sent == 0, payload_type: 8, sequence: sent as u16, timestamp: 160 * sent, ssrc: 0x4404, csrcs: Vec::new() };
                let payload = encode(Codec::Pcma, &tone(440.0, sent as usize * 160, 160));
                callee.send_to(&header.encode(&payload), helpline_rtp).await.unwrap();
                sent += 1;
            }
            r = callee.recv_from(&mut buf) => {
                let (n, _) = r.unwrap();
                let packet = RtpPacket::decode(&buf[..n]).unwrap();
                assert_eq!(packet.header.payload_type, 8, "A-law towards the callee");
                heard.extend(decode(Codec::Pcma, packet.payload));
            }
        }
    }
    heard
}

/// One SIP request as the trunk sees it.
pub(crate) struct Req {
    pub(crate) method: String,
    pub(crate) uri: String,
    pub(crate) text: String,
    pub(crate) from: SocketAddr,
}

impl Req {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub(crate) fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// A response copying Via, From, To (with our tag), Call-ID and CSeq.
    pub(crate) fn response(&self, status: u16, reason: &str, extra: &[String], body: &str) -> String {
        let mut out = format!("SIP/2.0 {status} {reason}\r\n");
        for name in ["Via", "From"] {
            out.push_str(&format!("{name}: {}\r\n", self.header(name).unwrap()));
        }
        let to = self.header("To").unwrap();
        let to = if to.contains("tag=") || status == 100 { to.to_owned() } else { format!("{to};tag=trunk1") };
        out.push_str(&format!(
            "To: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
            self.header("Call-ID").unwrap(),
            self.header("CSeq").unwrap()
        ));
        for e in extra {
            out.push_str(e);
            out.push_str("\r\n");
        }
        if !body.is_empty() {
            out.push_str("Content-Type: application/sdp\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        out
    }
}

pub(crate) struct Trunk {
    socket: UdpSocket,
}

impl Trunk {
    pub(crate) async fn bind() -> Trunk {
        Trunk { socket: UdpSocket::bind("127.0.0.1:0").await.unwrap() }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// The next request (skipping nothing), within `limit`.
    pub(crate) async fn next(&self, limit: Duration) -> Option<Req> {
        let mut buf = vec![0u8; 65536];
        let (n, from) = tokio::time::timeout(limit, self.socket.recv_from(&mut buf)).await.ok()?.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let line = text.lines().next().unwrap_or_default().to_owned();
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let uri = parts.next().unwrap_or_default().to_owned();
        Some(Req { method, uri, text, from })
    }

    /// The next request of `method` (retransmissions of others skipped).
    pub(crate) async fn expect(&self, method: &str) -> Req {
        loop {
            let r = self.next(Duration::from_secs(10)).await.unwrap_or_else(|| panic!("no {method} came"));
            if r.method == method {
                return r;
            }
        }
    }

    pub(crate) async fn send(&self, to: SocketAddr, text: &str) {
        self.socket.send_to(text.as_bytes(), to).await.unwrap();
    }
}

/// The RTP address in an SDP.
pub(crate) fn sdp_addr(sdp: &str) -> SocketAddr {
    let ip = sdp.lines().find_map(|l| l.strip_prefix("c=IN IP4 ")).unwrap().trim();
    let port = sdp.lines().find_map(|l| l.strip_prefix("m=audio ")).unwrap().split(' ').next().unwrap();
    format!("{ip}:{port}").parse().unwrap()
}

/// What a browser offers: G.711 both laws (str0m's RTP mode, so the test sees the packets).
pub(crate) fn browser() -> (Rtc, Mid, String, str0m::change::SdpPendingOffer, std::net::UdpSocket) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut builder = Rtc::builder()
        .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
        .set_rtp_mode(true)
        .clear_codecs();
    let config = builder.codec_config();
    config.enable_pcmu(true, false);
    config.enable_pcma(true, false);
    let mut rtc = builder.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    (rtc, mid, offer.to_sdp_string(), pending, socket)
}

/// The browser's side on its own thread: once connected it sends 1 kHz A-law every 20 ms for
/// `limit`, and returns what it received, decoded.
pub(crate) fn run_browser(rtc: Rtc, mid: Mid, socket: std::net::UdpSocket, limit: Duration) -> Vec<i16> {
    let heard = Heard::default();
    let started = Instant::now();
    run_browser_into(rtc, mid, socket, Codec::Pcma, &heard, move || started.elapsed() > limit);
    heard.samples_between(started, Instant::now() + Duration::from_secs(1))
}

/// What a party received, decoded, packet by packet with when it came (shared with the thread
/// or task that receives it, so the test reads windows of it while the call goes on).
#[derive(Clone, Default)]
pub(crate) struct Heard(std::sync::Arc<std::sync::Mutex<Vec<Packet>>>);

/// When a packet came, and its samples.
type Packet = (Instant, Vec<i16>);

impl Heard {
    pub(crate) fn push(&self, samples: Vec<i16>) {
        self.0.lock().unwrap().push((Instant::now(), samples));
    }

    /// The samples of the packets received in `from..to`.
    pub(crate) fn samples_between(&self, from: Instant, to: Instant) -> Vec<i16> {
        let packets = self.0.lock().unwrap();
        packets.iter().filter(|(at, _)| (from..to).contains(at)).flat_map(|(_, s)| s.iter().copied()).collect()
    }
}

/// [`run_browser`] in the law `codec` (the one the server's answer chose) until `done()`, what
/// it receives going into `heard` as it comes.
pub(crate) fn run_browser_into(
    mut rtc: Rtc,
    mid: Mid,
    socket: std::net::UdpSocket,
    codec: Codec,
    heard: &Heard,
    done: impl Fn() -> bool,
) {
    let local = socket.local_addr().unwrap();
    let mut next_send: Option<Instant> = None;
    let mut sent = 0u64;
    let mut buf = vec![0u8; 2048];
    let law = if codec == Codec::Pcmu { RtcCodec::PCMU } else { RtcCodec::PCMA };
    let pt = rtc.codec_config().params().iter().find(|p| p.spec().codec == law).unwrap().pt();
    loop {
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    socket.send_to(&t.contents, t.destination).unwrap();
                }
                Output::Event(Event::Connected) => next_send = Some(Instant::now()),
                Output::Event(Event::RtpPacket(p)) if p.header.payload_type == pt => {
                    heard.push(decode(codec, &p.payload));
                }
                Output::Event(_) => {}
            }
        };
        if done() {
            return;
        }
        let wake = next_send.map_or(timeout, |s| s.min(timeout));
        let wait = wake.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).unwrap();
        match socket.recv_from(&mut buf) {
            Ok((n, source)) => {
                let receive = Receive::new(Protocol::Udp, source, local, &buf[..n]).unwrap();
                rtc.handle_input(Input::Receive(Instant::now(), receive)).unwrap();
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                let now = Instant::now();
                match next_send {
                    Some(at) if at <= now => {
                        let payload = encode(codec, &tone(1000.0, sent as usize * 160, 160));
                        let write = RtpWrite::new(pt, (1000 + sent).into(), 5000 + 160 * sent as u32, now, payload)
                            .marker(sent == 0);
                        rtc.direct_api().stream_tx_by_mid(mid, None).unwrap().write_rtp(write);
                        sent += 1;
                        next_send = Some(at + Duration::from_millis(20));
                    }
                    _ => rtc.handle_input(Input::Timeout(now)).unwrap(),
                }
            }
            Err(e) => panic!("browser socket: {e}"),
        }
    }
}

pub(crate) async fn post_json(
    app: &TestApp,
    s: &Session,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = app
        .client
        .post(app.url(path))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The KPI API's total for the test's day (a supervisor asks).
pub(crate) async fn kpi_total(app: &TestApp) -> serde_json::Value {
    if sqlx::query("SELECT 1 FROM users WHERE name = 'kim'")
        .fetch_optional(app.state.db.pool())
        .await
        .unwrap()
        .is_none()
    {
        add_user(app, "kim", Role::Supervisor, &[Language::parse("it").unwrap()], &[], false).await;
    }
    let kim = sign_in(app, "kim").await;
    let (status, k) = api(app, &kim, reqwest::Method::GET, "/api/kpis?group=day").await;
    assert_eq!(status, 200, "{k}");
    k["total"].clone()
}

pub(crate) async fn operator(app: &TestApp, name: &str) -> Session {
    add_user(app, name, Role::Operator, &[Language::parse("it").unwrap()], &[], false).await;
    sign_in(app, name).await
}

pub(crate) async fn the_callback(app: &TestApp) -> i64 {
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM callbacks").fetch_one(app.state.db.pool()).await.unwrap();
    id
}

/// Waits until the callback's attempt is over (its state as the page reads it).
pub(crate) async fn attempt_over(app: &TestApp, s: &Session, id: i64, attempts: i64) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, st) = api(app, s, reqwest::Method::GET, &format!("/api/callbacks/{id}/call")).await;
        assert_eq!(status, 200, "{st}");
        if st["call_state"].is_null() && st["attempts"] == attempts {
            return st;
        }
        assert!(Instant::now() < until, "the attempt did not end: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_callback_over_the_trunk_answers_the_digest_challenges_and_bridges_the_operator_both_ways() {
    let trunk = Trunk::bind().await;
    let app = app_with_trunk(trunk.addr(), PASSWORD, 30).await;
    twiml_callback_request(&app, "CAcall00000000000000000000000001").await;
    let id = the_callback(&app).await;
    let s = operator(&app, "cora").await;

    let (rtc, mid, offer, pending, socket) = browser();
    let (status, placed) =
        post_json(&app, &s, &format!("/api/callbacks/{id}/call"), serde_json::json!({"sdp": offer})).await;
    assert_eq!(status, 200, "{placed}");
    assert!(!placed.to_string().contains(DIGITS), "the page never gets the number: {placed}");
    let mut rtc = rtc;
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(placed["sdp"].as_str().unwrap()).unwrap()).unwrap();
    let browser = std::thread::spawn(move || run_browser(rtc, mid, socket, Duration::from_secs(6)));

    let want_uri = format!("sip:{NUMBER}@127.0.0.1");
    // 1: no credentials yet → 407.
    let invite = trunk.expect("INVITE").await;
    assert_eq!(invite.uri, want_uri);
    assert!(invite.header("Authorization").is_none() && invite.header("Proxy-Authorization").is_none());
    assert!(invite.header("From").unwrap().starts_with(&format!("<sip:{USER}@127.0.0.1>;tag=")), "{}", invite.text);
    let proxy_challenge =
        "Proxy-Authenticate: Digest realm=\"proxy\", nonce=\"p-nonce-1\", qop=\"auth\", opaque=\"op1\"";
    trunk
        .send(invite.from, &invite.response(407, "Proxy Authentication Required", &[proxy_challenge.into()], ""))
        .await;
    assert_eq!(trunk.expect("ACK").await.header("CSeq"), Some("1 ACK"));
    // 2: the proxy's credentials → 401.
    let invite = trunk.expect("INVITE").await;
    assert_eq!(invite.uri, want_uri);
    let pa = invite.header("Proxy-Authorization").expect("Proxy-Authorization").to_owned();
    let cnonce = pa.split("cnonce=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    let ha1 = md5_hex(&format!("{USER}:proxy:{PASSWORD}"));
    let ha2 = md5_hex(&format!("INVITE:{want_uri}"));
    let response = md5_hex(&format!("{ha1}:p-nonce-1:00000001:{cnonce}:auth:{ha2}"));
    assert_eq!(
        pa,
        format!(
            "Digest username=\"{USER}\", realm=\"proxy\", nonce=\"p-nonce-1\", uri=\"{want_uri}\", \
             response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\", opaque=\"op1\""
        )
    );
    let www = "WWW-Authenticate: Digest realm=\"trunk\", nonce=\"w-nonce-2\"";
    trunk.send(invite.from, &invite.response(401, "Unauthorized", &[www.into()], "")).await;
    trunk.expect("ACK").await;
    // 3: both → ringing, then answered.
    let invite = trunk.expect("INVITE").await;
    assert_eq!(invite.uri, want_uri);
    assert_eq!(invite.header("CSeq"), Some("3 INVITE"));
    assert!(
        invite
            .header("Proxy-Authorization")
            .unwrap()
            .starts_with(&format!("Digest username=\"{USER}\", realm=\"proxy\", nonce=\"p-nonce-1\"")),
        "the proxy's credentials again: {}",
        invite.text
    );
    let ha1 = md5_hex(&format!("{USER}:trunk:{PASSWORD}"));
    let response = md5_hex(&format!("{ha1}:w-nonce-2:{ha2}"));
    assert_eq!(
        invite.header("Authorization").unwrap(),
        format!(
            "Digest username=\"{USER}\", realm=\"trunk\", nonce=\"w-nonce-2\", uri=\"{want_uri}\", \
             response=\"{response}\", algorithm=MD5"
        )
    );
    assert!(invite.body().contains("a=rtpmap:8 PCMA/8000"), "{}", invite.body());
    let helpline_rtp = sdp_addr(invite.body());
    trunk.send(invite.from, &invite.response(180, "Ringing", &[], "")).await;
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, st) = api(&app, &s, reqwest::Method::GET, &format!("/api/callbacks/{id}/call")).await;
        if st["call_state"] == "ringing" {
            break;
        }
        assert!(Instant::now() < until, "not ringing: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let callee = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    trunk_answers(&trunk, &invite, "callee", &callee).await;

    // The callee plays 440 Hz and records what it hears.
    let heard = callee_plays_440(&callee, helpline_rtp).await;
    let browser_heard = tokio::task::spawn_blocking(move || browser.join().unwrap()).await.unwrap();
    assert_tone(&heard, 1000.0, 440.0, "the callee, from the operator");
    assert_tone(&browser_heard, 440.0, 1000.0, "the operator, from the callee");

    // The operator hangs up: BYE, and the callback is done with the number gone.
    let (status, body) = post_json(&app, &s, &format!("/api/callbacks/{id}/hangup"), serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    let bye = trunk.expect("BYE").await;
    trunk.send(bye.from, &bye.response(200, "OK", &[], "")).await;
    let st = attempt_over(&app, &s, id, 1).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("done"), Some("reached")), "{st}");
    let (sealed,): (Option<String>,) = sqlx::query_as("SELECT number_sealed FROM callbacks WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(sealed, None);
    assert!(!database_contents(&app).await.contains(DIGITS), "the number is nowhere in the database");
    let k = kpi_total(&app).await;
    assert_eq!(
        (k["callback"].as_i64(), k["callbacks_reached"].as_i64(), k["callbacks_unreachable"].as_i64()),
        (Some(1), Some(1), Some(0)),
        "{k}"
    );
    app.stop().await;
}

/// Answers every INVITE of one attempt as `behaviour` says; the number of INVITE dialogs seen.
async fn refuse(trunk: &Trunk, behaviour: &str) -> usize {
    let mut calls = std::collections::HashSet::new();
    loop {
        let Some(r) = trunk.next(Duration::from_millis(1500)).await else { return calls.len() };
        match r.method.as_str() {
            "INVITE" => {
                calls.insert(r.header("Call-ID").unwrap().to_owned());
                let reply = match behaviour {
                    "busy" => r.response(486, "Busy Here", &[], ""),
                    "forbidden" => r.response(403, "Forbidden", &[], ""),
                    "unavailable" => r.response(503, "Service Unavailable", &[], ""),
                    "drop" => {
                        // Rings, then the far end goes away before anyone answers.
                        trunk.send(r.from, &r.response(180, "Ringing", &[], "")).await;
                        r.response(480, "Temporarily Unavailable", &[], "")
                    }
                    "challenge" => r.response(
                        401,
                        "Unauthorized",
                        &["WWW-Authenticate: Digest realm=\"trunk\", nonce=\"n\"".into()],
                        "",
                    ),
                    _ => r.response(180, "Ringing", &[], ""),
                };
                trunk.send(r.from, &reply).await;
            }
            "CANCEL" => {
                trunk.send(r.from, &r.response(200, "OK", &[], "")).await;
                let mut invite = r.response(487, "Request Terminated", &[], "");
                invite = invite.replace("CANCEL", "INVITE");
                trunk.send(r.from, &invite).await;
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn busy_wrong_credentials_and_no_answer_close_the_callback_as_unreachable_and_a_double_click_calls_once() {
    let trunk = Trunk::bind().await;
    let app = app_with_trunk(trunk.addr(), "not-the-password", 1).await;
    twiml_callback_request(&app, "CAcall00000000000000000000000002").await;
    let id = the_callback(&app).await;
    let cora = operator(&app, "cora").await;
    let dino = operator(&app, "dino").await;
    let path = format!("/api/callbacks/{id}/call");

    // Two operators click at once: one call.
    let (o1, o2) = (browser().2, browser().2);
    let (a, b) = tokio::join!(
        post_json(&app, &cora, &path, serde_json::json!({"sdp": o1})),
        post_json(&app, &dino, &path, serde_json::json!({"sdp": o2}))
    );
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "{a:?} {b:?}");
    let loser = if a.0 == 409 { &a.1 } else { &b.1 };
    assert!(
        loser["message"].as_str().unwrap_or_default().contains("claimed")
            || loser.to_string().contains("already calling"),
        "a clear message: {loser}"
    );
    let winner = if a.0 == 200 { &cora } else { &dino };
    assert_eq!(refuse(&trunk, "busy").await, 1, "one call placed");
    let st = attempt_over(&app, winner, id, 1).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("open"), Some("busy")), "{st}");

    // Wrong credentials: challenged again after answering.
    let (status, body) = post_json(&app, &cora, &path, serde_json::json!({"sdp": browser().2})).await;
    assert_eq!(status, 200, "back in the list for anyone: {body}");
    refuse(&trunk, "challenge").await;
    let st = attempt_over(&app, &cora, id, 2).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("open"), Some("auth_failed")), "{st}");

    // No answer: rings past the ring timeout, cancelled; the third failure closes it.
    let (status, body) = post_json(&app, &dino, &path, serde_json::json!({"sdp": browser().2})).await;
    assert_eq!(status, 200, "{body}");
    refuse(&trunk, "ring").await;
    let st = attempt_over(&app, &dino, id, 3).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("failed"), Some("no_answer")), "{st}");
    let (status, _) = post_json(&app, &dino, &path, serde_json::json!({"sdp": browser().2})).await;
    assert_eq!(status, 409, "closed as unreachable");

    let results: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT result, CAST(sip_status AS BIGINT) FROM callback_attempts ORDER BY id")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(
        results,
        vec![("busy".into(), Some(486)), ("auth_failed".into(), Some(401)), ("no_answer".into(), None)]
    );
    let (sealed,): (Option<String>,) = sqlx::query_as("SELECT number_sealed FROM callbacks WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(sealed, None, "the number is wiped when the callback is given up");
    assert!(!database_contents(&app).await.contains(DIGITS));
    let k = kpi_total(&app).await;
    assert_eq!(
        (k["callback"].as_i64(), k["callbacks_reached"].as_i64(), k["callbacks_unreachable"].as_i64()),
        (Some(1), Some(0), Some(1)),
        "{k}"
    );
    // Settling the call does not change them.
    console::supervisor::settle::settle(&app.state.db, app.clock.now().timestamp_millis() + 3_600_000).await.unwrap();
    assert_eq!(kpi_total(&app).await, k);
    app.stop().await;
}

#[tokio::test]
async fn refusals_a_drop_mid_ring_a_number_that_does_not_open_and_hanging_up_while_it_rings_are_logged() {
    let trunk = Trunk::bind().await;
    let app = app_with_trunk(trunk.addr(), PASSWORD, 30).await;
    twiml_callback_request(&app, "CAcall00000000000000000000000003").await;
    let id = the_callback(&app).await;
    let cora = operator(&app, "cora").await;
    let path = format!("/api/callbacks/{id}/call");
    let www = "WWW-Authenticate: Digest realm=\"trunk\", nonce=\"n\"".to_owned();

    // A number that does not open (sealed for another call, as after a change of secret): a clear
    // message, a logged attempt that does not count, the request kept.
    let pool = app.state.db.pool();
    let (kept,): (String,) =
        sqlx::query_as("SELECT number_sealed FROM callbacks WHERE id = $1").bind(id).fetch_one(pool).await.unwrap();
    let foreign = console::calls::sealed::NumberSeal::new(&app.state.secret)
        .seal(&ivr::domain::CallId::parse("another-call").unwrap(), &ivr::domain::PhoneNumber::parse(NUMBER).unwrap());
    sqlx::query("UPDATE callbacks SET number_sealed = $2 WHERE id = $1")
        .bind(id)
        .bind(foreign.as_str())
        .execute(pool)
        .await
        .unwrap();
    let (status, body) = post_json(&app, &cora, &path, serde_json::json!({"sdp": browser().2})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no longer decrypts"), "{body}");
    assert!(!body.to_string().contains(DIGITS));
    let st = attempt_over(&app, &cora, id, 0).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("open"), Some("undecryptable")), "{st}");
    sqlx::query("UPDATE callbacks SET number_sealed = $2 WHERE id = $1")
        .bind(id)
        .bind(&kept)
        .execute(pool)
        .await
        .unwrap();
    // An attempt left by a node that died (no heartbeat) does not hold the request.
    sqlx::query(
        "UPDATE callbacks SET calling_at = 1, calling_node = 'node-gone', call_state = 'talking' WHERE id = $1",
    )
    .bind(id)
    .execute(app.state.db.pool())
    .await
    .unwrap();
    // 403: refused.
    assert_eq!(post_json(&app, &cora, &path, serde_json::json!({"sdp": browser().2})).await.0, 200);
    refuse(&trunk, "forbidden").await;
    let st = attempt_over(&app, &cora, id, 1).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("open"), Some("refused")), "{st}");

    // The operator hangs up while it rings: CANCEL, logged, not counted.
    assert_eq!(post_json(&app, &cora, &path, serde_json::json!({"sdp": browser().2})).await.0, 200);
    let invite = trunk.expect("INVITE").await;
    trunk.send(invite.from, &invite.response(401, "Unauthorized", std::slice::from_ref(&www), "")).await;
    let invite = trunk.expect("INVITE").await;
    trunk.send(invite.from, &invite.response(180, "Ringing", &[], "")).await;
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, st) = api(&app, &cora, reqwest::Method::GET, &path).await;
        if st["call_state"] == "ringing" {
            break;
        }
        assert!(Instant::now() < until, "not ringing: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dino = operator(&app, "dino").await;
    let (status, body) = post_json(&app, &dino, &format!("/api/callbacks/{id}/hangup"), serde_json::json!({})).await;
    assert_eq!(status, 409, "only the operator calling hangs up: {body}");
    let (status, body) = post_json(&app, &dino, &path, serde_json::json!({"sdp": browser().2})).await;
    assert_eq!(status, 409, "nobody calls while it rings: {body}");
    assert_eq!(post_json(&app, &cora, &format!("/api/callbacks/{id}/hangup"), serde_json::json!({})).await.0, 200);
    let cancel = trunk.expect("CANCEL").await;
    assert_eq!(cancel.uri, invite.uri);
    assert_eq!(cancel.header("CSeq"), Some("2 CANCEL"));
    trunk.send(cancel.from, &cancel.response(200, "OK", &[], "")).await;
    trunk.send(invite.from, &invite.response(487, "Request Terminated", &[], "")).await;
    assert_eq!(trunk.expect("ACK").await.header("CSeq"), Some("2 ACK"));
    let st = attempt_over(&app, &cora, id, 1).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("open"), Some("operator_left")), "{st}");

    // Still hers (she hung up, the request was not tried). 503, then a drop mid-ring: the third
    // attempt that did not reach the person closes it.
    assert_eq!(post_json(&app, &dino, &path, serde_json::json!({"sdp": browser().2})).await.0, 409);
    assert_eq!(post_json(&app, &cora, &path, serde_json::json!({"sdp": browser().2})).await.0, 200);
    refuse(&trunk, "unavailable").await;
    let st = attempt_over(&app, &cora, id, 2).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("open"), Some("unavailable")), "{st}");
    assert_eq!(post_json(&app, &dino, &path, serde_json::json!({"sdp": browser().2})).await.0, 200);
    refuse(&trunk, "drop").await;
    let st = attempt_over(&app, &dino, id, 3).await;
    assert_eq!((st["status"].as_str(), st["last_result"].as_str()), (Some("failed"), Some("no_answer")), "{st}");
    let results: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT result, CAST(sip_status AS BIGINT) FROM callback_attempts ORDER BY id")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(
        results,
        vec![
            ("undecryptable".into(), None),
            ("refused".into(), Some(403)),
            ("operator_left".into(), None),
            ("unavailable".into(), Some(503)),
            ("no_answer".into(), Some(480))
        ]
    );
    app.stop().await;
}

/// With neither a trunk nor a carrier account nothing places a callback: the button answers 503
/// with what is missing for the caller's channel (a TwiML caller: the trunk or the carrier's REST
/// API), and the request is left as it was (not claimed, no attempt).
#[tokio::test]
async fn without_a_trunk_or_a_carrier_a_twiml_callback_answers_503_naming_what_is_missing_and_leaves_the_request() {
    let app = spawn_app_with(fresh_database().await, |_| {}).await;
    twiml_callback_request(&app, "CAcall00000000000000000000000009").await;
    let id = the_callback(&app).await;
    let s = operator(&app, "cora").await;
    let (_rtc, _mid, offer, _pending, _socket) = browser();
    let (status, body) =
        post_json(&app, &s, &format!("/api/callbacks/{id}/call"), serde_json::json!({"sdp": offer})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("REST API")
            && message.contains("HELPLINE_TRUNK_URI")
            && message.contains("call back by phone"),
        "{message}"
    );
    let (status, st) = api(&app, &s, reqwest::Method::GET, &format!("/api/callbacks/{id}/call")).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!((st["status"].as_str(), st["attempts"].as_i64()), (Some("open"), Some(0)), "{st}");
    assert!(st["call_state"].is_null() && st["calling_since"].is_null(), "{st}");
    let (attempts,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM callback_attempts")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(attempts, 0);
}
