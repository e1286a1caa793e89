//! The SIP adapter against a real SIP peer: `sipp` (Debian package `sip-tester`) places calls at
//! the in-process server with the scenarios in `tests/sipp/*.xml`; the call log in the database,
//! the metrics and the audio that came back (a small RTP receiver here) are then checked.
//!
//! Without sipp these tests print `SKIPPED (sipp not installed)` and pass, except with `CI=true`,
//! where they fail. One test is its own SIP phone (`SipPhone`), to press keys when the audio it
//! waits for has been heard, which a sipp scenario cannot do.

use crate::helpers::{repo_path, spawn_app};
use console::db::Backend;
use console::startup::AppState;
use ivr::rtp::{linear_to_ulaw, RtpPacket};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Whether sipp can be run; prints the skip notice when not (a failure when `CI=true`).
pub fn sipp_available() -> bool {
    let found = std::process::Command::new("sipp").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "sipp is required when CI=true (apt-get install sip-tester)"
        );
        eprintln!("SKIPPED (sipp not installed)");
    }
    found
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// The outcome of one sipp run.
pub struct SippRun {
    pub success: bool,
    pub report: String,
}

/// Runs `sipp` with `tests/sipp/<scenario>` against the server; `args` are added as given.
pub async fn sipp(sip: SocketAddr, scenario: &str, args: &[&str]) -> SippRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let local_port = free_udp_port().to_string();
    let media_port = free_udp_port().to_string();
    let scenario_path = repo_path("tests/sipp").join(scenario);
    let out = tokio::process::Command::new("sipp")
        .arg(sip.to_string())
        .arg("-sf")
        .arg(&scenario_path)
        .args(["-i", "127.0.0.1", "-p", &local_port, "-mp", &media_port])
        .args(["-timeout", "60s", "-timeout_error", "-trace_err", "-nostdin"])
        // The caller's user part is `sipp` (no number) unless the test names one.
        .args(if args.windows(2).any(|w| w == ["-key", "caller"]) { &[][..] } else { &["-key", "caller", "sipp"][..] })
        .args(args)
        .current_dir(dir.path())
        .output()
        .await
        .expect("run sipp");
    let mut report = String::from_utf8_lossy(&out.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&out.stderr));
    if let Ok(entries) = std::fs::read_dir(dir.path()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with("errors.log") {
                report.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    SippRun { success: out.status.success(), report }
}

/// A UDP socket standing for the caller's phone: collects the RTP we send it.
pub struct RtpSink {
    pub port: u16,
    rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
}

impl RtpSink {
    pub async fn bind() -> RtpSink {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind rtp sink");
        let port = socket.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
        RtpSink { port, rx }
    }

    /// Every packet received so far.
    pub fn drain(&mut self) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        while let Ok(p) = self.rx.try_recv() {
            out.push(p);
        }
        out
    }

    /// The next packet within `wait`, if any.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        tokio::time::timeout(wait, self.rx.recv()).await.ok().flatten().map(|(_, p)| p)
    }
}

/// Waits (up to 20 s) until `sql` (one BIGINT column) returns at least `want`.
async fn wait_count(state: &AppState, sql: &str, want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (n,): (i64,) = sqlx::query_as(sql).fetch_one(state.db.pool()).await.expect("count query");
        if n >= want || Instant::now() > deadline {
            return n;
        }
        // Polls the count until its deadline (the callers assert on what it returns).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A call's row: language, area, town, outcome, channel, ended_at.
type CallRow = (Option<String>, Option<String>, Option<String>, Option<String>, String, Option<i64>);

/// The single call of a test: (language, area, town, outcome, ended).
async fn only_call(state: &AppState) -> (Option<String>, Option<String>, Option<String>, Option<String>, bool) {
    let n = wait_count(state, "SELECT COUNT(*) FROM calls WHERE ended_at IS NOT NULL", 1).await;
    assert_eq!(n, 1, "the call ended in the call log");
    let (language, area, town, outcome, channel, ended): CallRow =
        sqlx::query_as("SELECT language, area, town, outcome, channel, ended_at FROM calls")
            .fetch_one(state.db.pool())
            .await
            .expect("one call");
    assert_eq!(channel, "sip");
    (language, area, town, outcome, ended.is_some())
}

async fn event_kinds(state: &AppState) -> Vec<String> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT kind FROM call_events ORDER BY seq").fetch_all(state.db.pool()).await.expect("events");
    rows.into_iter().map(|(k,)| k).collect()
}

fn metric(state: &AppState, line_prefix: &str) -> f64 {
    state
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The RTP packets of one stream, decoded: (marker, pt, seq, ts, ssrc, payload).
fn decode_all(packets: &[(Instant, Vec<u8>)]) -> Vec<(bool, u8, u16, u32, u32, Vec<u8>)> {
    packets
        .iter()
        .map(|(_, bytes)| {
            let p = RtpPacket::decode(bytes).expect("valid RTP from the server");
            (
                p.header.marker,
                p.header.payload_type,
                p.header.sequence,
                p.header.timestamp,
                p.header.ssrc,
                p.payload.to_vec(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_menus_by_info_reach_the_queue_and_the_welcome_is_heard() {
    if !sipp_available() {
        return;
    }
    // Exact timestamps are checked below: not beside a flood test.
    let _quiet = crate::helpers::SIP_FLOODS.read().await;
    let app = spawn_app().await;
    let mut sink = RtpSink::bind().await;
    let port = sink.port.to_string();
    let run = sipp(app.sip_addr, "menu_to_queue_info.xml", &["-m", "1", "-l", "1", "-key", "rtp_port", &port]).await;
    assert!(run.success, "sipp failed:\n{}", run.report);

    // No number: Italian offered first; the caller lets it pass (1.5 s after the offer), and 2 is
    // French in the menu of the others (English 1, French 2, Spanish 3…), then 3 housing.
    let (language, area, town, outcome, _) = only_call(&app.state).await;
    assert_eq!(language.as_deref(), Some("fr"));
    assert_eq!(area.as_deref(), Some("casa"));
    assert!(town.as_deref().is_some_and(|t| t.contains("Milano")), "{town:?}");
    assert_eq!(outcome.as_deref(), Some("hung_up_in_queue"));
    let (status, q_language, q_area): (String, String, Option<String>) =
        sqlx::query_as("SELECT status, language, area FROM queue_entries")
            .fetch_one(app.state.db.pool())
            .await
            .expect("queue entry");
    assert_eq!((status.as_str(), q_language.as_str(), q_area.as_deref()), ("abandoned", "fr", Some("casa")));
    let kinds = event_kinds(&app.state).await;
    assert_eq!(kinds.first().map(String::as_str), Some("call_started"));
    assert_eq!(kinds.iter().filter(|k| *k == "digits").count(), 4, "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("hung_up"));
    assert_eq!(metric(&app.state, "helpline_dtmf_received_total{source=\"info\"}"), 8.0);

    // The first talkspurt is Italian offered with its key, exactly: μ-law of the server's own
    // rendering of the text (the same pipeline, deterministic), 20 ms packets.
    let packets = decode_all(&sink.drain());
    assert!(!packets.is_empty(), "no audio came back");
    let welcome = ivr::prompts::Espeak::default()
        .synthesize(ivr::domain::Language::It, "Italiano, premi 1.", ivr::prompts::Pace::Normal)
        .expect("espeak-ng renders the offer");
    let expected_packets = welcome.len().div_ceil(160);
    let first = &packets[0];
    assert!(first.0, "marker bit on the first packet of a prompt");
    assert_eq!(first.1, 0, "PCMU, the caller's first choice");
    let spurt_len = packets.iter().skip(1).position(|p| p.0).map(|i| i + 1).unwrap_or(packets.len());
    assert_eq!(spurt_len, expected_packets, "the welcome is {} ms long", welcome.len() / 8);
    let mut expected = welcome.iter().map(|s| linear_to_ulaw(*s)).collect::<Vec<u8>>();
    expected.resize(expected_packets * 160, linear_to_ulaw(0));
    let got: Vec<u8> = packets[..spurt_len].iter().flat_map(|p| p.5.clone()).collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the audio is the welcome prompt, μ-law encoded");
    assert!(got.iter().filter(|b| **b != 0xFF && **b != 0x7F).count() > got.len() / 2, "not silence");
    for w in packets.windows(2) {
        assert_eq!(w[1].2, w[0].2.wrapping_add(1), "sequence numbers grow by one");
        assert_eq!(w[1].4, w[0].4, "one SSRC per call");
        if !w[1].0 {
            assert_eq!(w[1].3, w[0].3.wrapping_add(160), "timestamps grow by 160 within a prompt");
        } else {
            assert!(w[1].3.wrapping_sub(w[0].3) >= 160, "timestamps keep the clock across gaps");
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_rfc4733_zero_during_the_welcome_goes_to_the_operator_queue() {
    if !sipp_available() {
        return;
    }
    let pcap = Path::new("/usr/share/sip-tester/dtmf_2833_0.pcap");
    assert!(pcap.exists(), "sip-tester ships {}", pcap.display());
    let app = spawn_app().await;
    let sink = RtpSink::bind().await;
    let port = sink.port.to_string();
    let pcap = pcap.display().to_string();
    let run = sipp(
        app.sip_addr,
        "operator_rfc4733.xml",
        &["-m", "1", "-l", "1", "-key", "rtp_port", &port, "-key", "pcap", &pcap],
    )
    .await;
    assert!(run.success, "sipp failed:\n{}", run.report);
    let (_, _, _, outcome, _) = only_call(&app.state).await;
    assert_eq!(outcome.as_deref(), Some("hung_up_in_queue"));
    let (digits,): (String,) = sqlx::query_as("SELECT data FROM call_events WHERE kind = 'digits'")
        .fetch_one(app.state.db.pool())
        .await
        .expect("one digits event: the key was counted once");
    assert!(digits.contains("\"digits\":\"0\""), "{digits}");
    assert_eq!(metric(&app.state, "helpline_dtmf_received_total{source=\"rfc4733\"}"), 1.0);
    let (language,): (String,) =
        sqlx::query_as("SELECT language FROM queue_entries").fetch_one(app.state.db.pool()).await.expect("queued");
    assert_eq!(language, "it");
    app.stop().await;
}

/// The first prompt a caller hears (the language offer, spoken on demand and then cached) rendered
/// into the app's speech cache before the call: the timed tests measure the call's audio, not
/// espeak-ng on a machine busy with the other tests.
async fn warm_first_prompt(state: &AppState) {
    let p = &state.prompts;
    let audio = console::sip::PromptAudio::new(p.voice.prompts.clone(), p.voice.catalog.clone(), Some(p.tts.clone()));
    let args = std::collections::BTreeMap::from([("digit".to_owned(), ivr::engine::SayArg::Number(1.0))]);
    let id = ivr::domain::PromptId::parse("language-guess").expect("prompt id");
    audio
        .say(ivr::domain::Language::It, &id, &args, ivr::engine::Pace::Normal)
        .await
        .expect("the first prompt renders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_hang_up_mid_prompt_stops_the_audio_at_once() {
    if !sipp_available() {
        return;
    }
    let app = spawn_app().await;
    warm_first_prompt(&app.state).await;
    let mut sink = RtpSink::bind().await;
    let port = sink.port.to_string();
    let run = sipp(app.sip_addr, "hangup_mid_prompt.xml", &["-m", "1", "-l", "1", "-key", "rtp_port", &port]).await;
    assert!(run.success, "sipp failed:\n{}", run.report);
    let (_, _, _, outcome, _) = only_call(&app.state).await;
    assert_eq!(outcome.as_deref(), Some("hung_up_in_menu"));
    let heard = sink.drain();
    // The caller hangs up 1 s after the answer, in the middle of the first prompt: some audio, at
    // most that second of it, and none after the BYE.
    assert!((10..60).contains(&heard.len()), "{} packets", heard.len());
    assert!(sink.next_within(Duration::from_millis(300)).await.is_none(), "audio went on after the BYE");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_cancel_while_ringing_gets_487_and_the_call_is_logged_as_hung_up() {
    if !sipp_available() {
        return;
    }
    let app = spawn_app().await;
    // The helpline answers once the call is recorded. To make the CANCEL arrive before the answer
    // every time (not just usually), the test holds the table of calls locked while sipp rings
    // and cancels: the call's first write waits, so no 200 OK can go out before the 487.
    let mut lock = app.state.db.pool().begin().await.expect("begin");
    let lock_sql = match app.state.db.backend() {
        // Any write takes SQLite's single write lock, even one that changes no row.
        Backend::Sqlite => "UPDATE calls SET updated_at = updated_at WHERE 1 = 0",
        Backend::Postgres => "LOCK TABLE calls IN SHARE MODE",
    };
    sqlx::query(lock_sql).execute(&mut *lock).await.expect("lock the calls");
    let run = sipp(app.sip_addr, "cancel_ringing.xml", &["-m", "1", "-l", "1", "-key", "rtp_port", "9"]).await;
    assert!(run.success, "sipp failed:\n{}", run.report);
    // The only 200 so far is the CANCEL's: the INVITE was never answered.
    assert_eq!(metric(&app.state, "helpline_sip_responses_total{status=\"200\"}"), 1.0);
    lock.rollback().await.expect("unlock");
    let (_, _, _, outcome, ended) = only_call(&app.state).await;
    assert!(ended);
    assert_eq!(outcome.as_deref(), Some("hung_up_in_menu"));
    assert_eq!(metric(&app.state, "helpline_sip_responses_total{status=\"487\"}"), 1.0);
    assert_eq!(metric(&app.state, "helpline_rtp_packets_sent_total"), 0.0, "no audio for a call never answered");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_options_gets_200_and_a_malformed_invite_gets_400_with_the_reason() {
    if !sipp_available() {
        return;
    }
    let app = spawn_app().await;
    let run = sipp(app.sip_addr, "options.xml", &["-m", "1", "-l", "1"]).await;
    assert!(run.success, "sipp failed:\n{}", run.report);
    let run = sipp(app.sip_addr, "malformed_invite.xml", &["-m", "1", "-l", "1"]).await;
    assert!(run.success, "sipp failed:\n{}", run.report);
    assert_eq!(metric(&app.state, "helpline_sip_requests_total{method=\"OPTIONS\"}"), 1.0);
    assert_eq!(metric(&app.state, "helpline_sip_requests_total{method=\"malformed\"}"), 1.0);
    assert_eq!(metric(&app.state, "helpline_sip_responses_total{status=\"400\"}"), 1.0);
    let (calls,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM calls").fetch_one(app.state.db.pool()).await.expect("count");
    assert_eq!(calls, 0, "neither started a call");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_fifty_calls_at_once_are_all_answered_and_ended() {
    if !sipp_available() {
        return;
    }
    let _quiet = crate::helpers::SIP_FLOODS.read().await;
    let app = spawn_app().await;
    warm_first_prompt(&app.state).await;
    let sink = RtpSink::bind().await;
    let port = sink.port.to_string();
    let run = sipp(
        app.sip_addr,
        "short_call.xml",
        &["-m", "50", "-l", "50", "-r", "50", "-d", "4000", "-key", "rtp_port", &port],
    )
    .await;
    assert!(run.success, "sipp failed:\n{}", run.report);
    let ended = wait_count(&app.state, "SELECT COUNT(*) FROM calls WHERE ended_at IS NOT NULL", 50).await;
    assert_eq!(ended, 50);
    let (menu,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM calls WHERE channel = 'sip' AND outcome = 'hung_up_in_menu'")
            .fetch_one(app.state.db.pool())
            .await
            .expect("count");
    assert_eq!(menu, 50);
    // Each call heard audio for a good part of its four seconds: at least one second on average
    // (the first prompt, the spoken offer, is rendered as the fifty calls begin together, on a
    // machine that may be running the other tests).
    let sent = metric(&app.state, "helpline_rtp_packets_sent_total");
    assert!(sent >= 50.0 * 50.0, "{sent} packets sent");
    assert_eq!(metric(&app.state, "helpline_calls_active{channel=\"sip\"}"), 0.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_assigned_operator_gets_the_call_by_refer() {
    if !sipp_available() {
        return;
    }
    let app = spawn_app().await;
    let sink = RtpSink::bind().await;
    let port = sink.port.to_string();
    let sip = app.sip_addr;
    let run = tokio::spawn(async move {
        sipp(sip, "transfer_refer.xml", &["-m", "1", "-l", "1", "-key", "rtp_port", &port]).await
    });
    // The ACD's part: once the call waits, assign it to an operator.
    let waiting = wait_count(&app.state, "SELECT COUNT(*) FROM queue_entries WHERE status = 'waiting'", 1).await;
    assert_eq!(waiting, 1, "the caller reached the queue");
    sqlx::query("UPDATE queue_entries SET status = 'assigned', operator = 'operator-7', target = 'sip:operator-7@127.0.0.1:5999'")
        .execute(app.state.db.pool())
        .await
        .expect("assign");
    let run = run.await.expect("sipp task");
    assert!(run.success, "sipp failed:\n{}", run.report);
    let (_, _, _, outcome, _) = only_call(&app.state).await;
    assert_eq!(outcome.as_deref(), Some("answered"));
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM queue_entries").fetch_one(app.state.db.pool()).await.expect("entry");
    assert_eq!(status, "answered");
    assert!(event_kinds(&app.state).await.iter().any(|k| k == "operator_assigned"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_hold_by_re_invite_is_answered_recvonly_and_stops_the_audio() {
    if !sipp_available() {
        return;
    }
    let app = spawn_app().await;
    warm_first_prompt(&app.state).await;
    let mut sink = RtpSink::bind().await;
    let port = sink.port.to_string();
    let run = sipp(app.sip_addr, "hold_reinvite.xml", &["-m", "1", "-l", "1", "-key", "rtp_port", &port]).await;
    assert!(run.success, "sipp failed:\n{}", run.report);
    let (_, _, _, outcome, _) = only_call(&app.state).await;
    assert_eq!(outcome.as_deref(), Some("hung_up_in_menu"));
    // About 0.5 s of audio before the hold (25 packets), none during the 1 s on hold (without the
    // hold it would have been about 75).
    let heard = sink.drain().len();
    assert!((10..45).contains(&heard), "{heard} packets");
    assert_eq!(metric(&app.state, "helpline_sip_requests_total{method=\"INVITE\"}"), 2.0);
    app.stop().await;
}

/// A caller from Romania hears Romanian first on the SIP channel: the first talkspurt is the
/// server's Romanian rendering of the offer, real speech, and not the Italian one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_a_romanian_caller_hears_romanian_first() {
    if !sipp_available() {
        return;
    }
    let app = spawn_app().await;
    let mut sink = RtpSink::bind().await;
    let port = sink.port.to_string();
    let run = sipp(
        app.sip_addr,
        "menu_to_queue_info.xml",
        &["-m", "1", "-l", "1", "-key", "rtp_port", &port, "-key", "caller", "+40712345678"],
    )
    .await;
    assert!(run.success, "sipp failed:\n{}", run.report);
    let (_, _, _, _, ended) = only_call(&app.state).await;
    assert!(ended);
    let (data,): (String,) = sqlx::query_as("SELECT data FROM call_events WHERE kind = 'call_started'")
        .fetch_one(app.state.db.pool())
        .await
        .expect("call started");
    assert!(data.contains(r#""country_code":"40""#), "{data}");
    let packets = decode_all(&sink.drain());
    let spurt_len = packets.iter().skip(1).position(|p| p.0).map(|i| i + 1).unwrap_or(packets.len());
    let heard: Vec<u8> = packets[..spurt_len].iter().flat_map(|p| p.5.clone()).collect();
    let espeak = ivr::prompts::Espeak::default();
    let romanian = espeak
        .synthesize(ivr::domain::Language::parse("ro").unwrap(), "Română, apăsați 1.", ivr::prompts::Pace::Normal)
        .unwrap();
    let italian =
        espeak.synthesize(ivr::domain::Language::It, "Italiano, premi 1.", ivr::prompts::Pace::Normal).unwrap();
    let mut expected: Vec<u8> = romanian.iter().map(|s| linear_to_ulaw(*s)).collect();
    expected.resize(romanian.len().div_ceil(160) * 160, linear_to_ulaw(0));
    assert!(heard == expected, "the first audio is the Romanian offer");
    let italian: Vec<u8> = italian.iter().map(|s| linear_to_ulaw(*s)).collect();
    assert_ne!(heard[..italian.len().min(heard.len())], italian[..italian.len().min(heard.len())]);
    assert!(heard.iter().filter(|b| **b != 0xFF && **b != 0x7F).count() > heard.len() / 2, "not silence");
    app.stop().await;
}

/// A caller's phone that speaks SIP itself over UDP (INVITE, ACK, INFO keys, BYE), so that the
/// test presses each key once it has heard what it waits for, not after a fixed pause.
pub(crate) struct SipPhone {
    socket: tokio::net::UdpSocket,
    server: SocketAddr,
    /// The request URI of every request.
    uri: String,
    call_id: String,
    from: String,
    /// The To header, with the helpline's tag once it answered.
    to: String,
    cseq: u32,
    branches: u32,
    /// The helpline's 200 OK to the INVITE (its SDP says where to send audio).
    answer: String,
}

impl SipPhone {
    /// Calls the helpline from `caller`, its audio to be sent to `rtp_port` (PCMU only); returns
    /// once the call is answered and acknowledged.
    pub(crate) async fn call(server: SocketAddr, caller: &str, rtp_port: u16) -> SipPhone {
        let sdp = format!(
            "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\n"
        );
        SipPhone::dial(server, &format!("sip:helpline@{server}"), caller, &sdp).await
    }

    /// Calls `uri` (at the helpline's SIP address `server`) from `caller`, offering `sdp`;
    /// returns once the call is answered and acknowledged.
    pub(crate) async fn dial(server: SocketAddr, uri: &str, caller: &str, sdp: &str) -> SipPhone {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind the phone");
        let port = socket.local_addr().expect("addr").port();
        let mut phone = SipPhone {
            socket,
            server,
            uri: uri.to_owned(),
            call_id: format!("phone-{port}@127.0.0.1"),
            from: format!("<sip:{caller}@127.0.0.1:{port}>;tag=phone{port}"),
            to: format!("<{uri}>"),
            cseq: 0,
            branches: 0,
            answer: String::new(),
        };
        let ok = phone.request("INVITE", Some(("application/sdp", sdp))).await;
        assert!(ok.starts_with("SIP/2.0 200"), "the helpline answers: {ok}");
        phone.to = header(&ok, "To").expect("To in the 200 OK").to_owned();
        phone.answer = ok.clone();
        assert!(phone.to.contains("tag="), "{ok}");
        let ack = phone.message("ACK", phone.cseq, None);
        phone.socket.send_to(ack.as_bytes(), server).await.expect("send ACK");
        phone
    }

    /// The helpline's answer's SDP body.
    pub(crate) fn answer_sdp(&self) -> &str {
        self.answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
    }

    /// Waits (up to `within`) for the helpline's BYE, and answers it 200 OK.
    pub(crate) async fn expect_bye(&mut self, within: Duration) {
        let mut buf = vec![0u8; 4096];
        let until = Instant::now() + within;
        loop {
            let (n, from) = tokio::time::timeout_at(until.into(), self.socket.recv_from(&mut buf))
                .await
                .expect("no BYE in time")
                .expect("recv");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("BYE ") {
                continue;
            }
            let mut ok = String::from("SIP/2.0 200 OK\r\n");
            for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                if let Some(v) = header(&text, name) {
                    ok.push_str(&format!("{name}: {v}\r\n"));
                }
            }
            ok.push_str("Content-Length: 0\r\n\r\n");
            self.socket.send_to(ok.as_bytes(), from).await.expect("send 200 to BYE");
            return;
        }
    }

    fn message(&mut self, method: &str, cseq: u32, body: Option<(&str, &str)>) -> String {
        self.branches += 1;
        let local = self.socket.local_addr().expect("addr");
        let mut m = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{port}x{branch}\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:phone@{local}>\r\nMax-Forwards: 70\r\n",
            uri = self.uri,
            port = local.port(),
            branch = self.branches,
            from = self.from,
            to = self.to,
            call_id = self.call_id,
        );
        let (content_type, body) = body.unwrap_or(("", ""));
        if !content_type.is_empty() {
            m.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        m.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        m
    }

    /// Sends a request and returns its final response, retransmitting every 500 ms (UDP).
    async fn request(&mut self, method: &str, body: Option<(&str, &str)>) -> String {
        self.cseq += 1;
        let cseq = format!("{} {method}", self.cseq);
        let msg = self.message(method, self.cseq, body);
        let mut buf = vec![0u8; 4096];
        for _ in 0..40 {
            self.socket.send_to(msg.as_bytes(), self.server).await.expect("send");
            let deadline = Instant::now() + Duration::from_millis(500);
            while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline.into(), self.socket.recv_from(&mut buf)).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = text.strip_prefix("SIP/2.0 ").and_then(|s| s.get(..3)).and_then(|s| s.parse::<u16>().ok());
                if status.is_some_and(|s| s >= 200) && header(&text, "CSeq") == Some(cseq.as_str()) {
                    return text;
                }
            }
        }
        panic!("no final response to {method} in 20 s");
    }

    /// Presses `keys`, one SIP INFO (application/dtmf-relay) each.
    pub(crate) async fn press(&mut self, keys: &str) {
        for key in keys.chars() {
            let body = format!("Signal={key}\r\nDuration=160\r\n");
            let ok = self.request("INFO", Some(("application/dtmf-relay", &body))).await;
            assert!(ok.starts_with("SIP/2.0 200"), "key {key}: {ok}");
        }
    }

    pub(crate) async fn hang_up(mut self) {
        let ok = self.request("BYE", None).await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    }
}

/// The value of a SIP message's header `name`.
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// What a caller hears, talkspurt by talkspurt (a marker bit starts each prompt).
struct Ear {
    sink: RtpSink,
    spurts: Vec<Vec<u8>>,
    heard: usize,
    /// The last sequence number received: every packet is checked to follow it.
    last_seq: Option<u16>,
}

impl Ear {
    /// Waits (up to their length plus 30 s) for the next `expected.len()` talkspurts, the last one
    /// at least as long as its expected audio, and returns them.
    async fn hear(&mut self, expected: &[Vec<u8>], step: &str) -> Vec<Vec<u8>> {
        let want = self.heard + expected.len();
        let audio_ms = expected.iter().map(Vec::len).sum::<usize>() / 8;
        let deadline = Instant::now() + Duration::from_millis(audio_ms as u64) + Duration::from_secs(30);
        while self.spurts.len() < want || self.spurts[want - 1].len() < expected.last().map_or(0, Vec::len) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(bytes) = self.sink.next_within(left).await else {
                panic!(
                    "{step}: heard {} of {} prompts ({:?} bytes), expected {:?} bytes",
                    self.spurts.len() - self.heard,
                    expected.len(),
                    self.spurts[self.heard..].iter().map(Vec::len).collect::<Vec<_>>(),
                    expected.iter().map(Vec::len).collect::<Vec<_>>()
                );
            };
            let p = RtpPacket::decode(&bytes).expect("valid RTP from the server");
            assert_eq!(p.header.payload_type, 0, "PCMU, the only codec offered");
            if let Some(last) = self.last_seq {
                assert_eq!(p.header.sequence, last.wrapping_add(1), "{step}: a packet lost or reordered");
            }
            self.last_seq = Some(p.header.sequence);
            if p.header.marker || self.spurts.is_empty() {
                self.spurts.push(Vec::new());
            }
            self.spurts.last_mut().expect("a talkspurt").extend_from_slice(p.payload);
        }
        let got = self.spurts[self.heard..want].to_vec();
        self.heard = want;
        got
    }
}

/// The μ-law a SIP caller hears for one carrier action of the JSON channel (a prompt's rendered
/// WAV, or the server's rendering of a text), padded to whole 20 ms packets; `None` for actions
/// that are not heard.
fn rendered(action: &serde_json::Value) -> Option<Vec<u8>> {
    let samples = match action["type"].as_str()? {
        "play" => {
            let url = action["url"].as_str().expect("url");
            let rel = &url[url.find("/prompts/").expect("a prompt URL") + 1..];
            let (lang, file) = rel.trim_start_matches("prompts/").split_once('/').expect("lang/id.wav");
            ivr::prompts::load_wav(&repo_path(&format!("prompts/{lang}/wav/{file}"))).expect("rendered prompt")
        }
        "say" => {
            assert_eq!(action["pace"], "normal", "{action}");
            let tag = action["language"].as_str().expect("language").split('-').next().expect("tag");
            let text = action["text"].as_str().expect("text").split_whitespace().collect::<Vec<_>>().join(" ");
            ivr::prompts::Espeak::default()
                .synthesize(ivr::domain::Language::parse(tag).expect("configured"), &text, ivr::prompts::Pace::Normal)
                .expect("espeak-ng renders the text")
        }
        _ => return None,
    };
    let mut ulaw: Vec<u8> = samples.iter().map(|s| linear_to_ulaw(*s)).collect();
    ulaw.resize(samples.len().div_ceil(160) * 160, linear_to_ulaw(0));
    Some(ulaw)
}

/// One call on the JSON channel: per step (the call's start, then each of `keys`), the μ-law of
/// every prompt and text it says, in order; stops at the step that enqueues, then hangs up.
async fn json_reference(app: &crate::helpers::TestApp, id: &str, from: &str, keys: &[&str]) -> Vec<Vec<Vec<u8>>> {
    let mut seq = 0;
    let mut steps = Vec::new();
    let mut event = serde_json::json!({"type": "call.started", "from": from, "to": "803001"});
    for key in std::iter::once(None).chain(keys.iter().map(Some)) {
        if let Some(key) = key {
            event = serde_json::json!({"type": "digits", "digits": key});
        }
        seq += 1;
        event["call_id"] = id.into();
        event["seq"] = seq.into();
        let (status, answer) = app.voice_event(&event).await;
        assert_eq!(status, 200, "{event} → {answer}");
        let actions = answer["actions"].as_array().expect("actions");
        steps.push(actions.iter().filter_map(rendered).collect::<Vec<_>>());
        if actions.iter().any(|a| a["type"] == "enqueue") {
            break;
        }
    }
    seq += 1;
    let (status, _) = app.voice_event(&serde_json::json!({"type": "call.ended", "call_id": id, "seq": seq})).await;
    assert_eq!(status, 200);
    steps
}

/// Issue 22 on SIP: a caller from Romania accepts Romanian (1, the key its offer names) and goes
/// through the whole call: the area (3), the CAP (22100), the services read back (1), the queue
/// (2). Each key is pressed once the step's audio has been heard. Every talkspurt of every step is
/// real speech, exactly the server's Romanian rendering of that step's prompts and texts (as the
/// JSON channel names them for the same call), and none is an Italian rendering of the same step;
/// the call log has Romanian throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_a_romanian_caller_goes_through_the_whole_call_in_romanian() {
    if !ivr::prompts::Espeak::default().is_available() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI installs espeak-ng");
        eprintln!("SKIPPED (espeak-ng not installed)");
        return;
    }
    // This phone sends its keys by INFO and no audio, and the call lasts over a minute: no RTP
    // timeout (HELPLINE_RTP_TIMEOUT_SECS would hang a silent caller up at 60 s).
    let app = crate::helpers::spawn_app_with(crate::helpers::fresh_database().await, |s| s.rtp_timeout_secs = 0).await;
    let keys = ["1", "3", "22100", "1", "2"];
    let romanian = json_reference(&app, "ref-ro", "+40712345678", &keys).await;
    let italian = json_reference(&app, "ref-it", "+393471234567", &keys).await;
    assert!(romanian.len() >= 5, "offer, area, CAP, services and queue: {} steps", romanian.len());
    assert_eq!(romanian.len(), italian.len(), "the same path in both languages");

    let sink = RtpSink::bind().await;
    let mut phone = SipPhone::call(app.sip_addr, "+40712345678", sink.port).await;
    let mut ear = Ear { sink, spurts: Vec::new(), heard: 0, last_seq: None };
    let names =
        ["offer", "accept: welcome and areas", "area: CAP", "CAP: place and services", "services read back", "queue"];
    let mut heard_in_all = 0;
    for (i, expected) in romanian.iter().enumerate() {
        let step = names.get(i).copied().unwrap_or("queue");
        assert!(!expected.is_empty(), "{step}: something is said");
        let heard = ear.hear(expected, step).await;
        for (n, (got, want)) in heard.iter().zip(expected).enumerate() {
            let voiced = got.iter().filter(|b| **b != 0xFF && **b != 0x7F).count();
            assert!(voiced > got.len() / 2, "{step}, prompt {n}: silence ({voiced} of {} bytes)", got.len());
            assert!(
                got == want,
                "{step}, prompt {n}: not the Romanian rendering ({} bytes, {} expected)",
                got.len(),
                want.len()
            );
            for it in &italian[i] {
                assert!(got != it, "{step}, prompt {n}: the Italian rendering");
            }
            heard_in_all += 1;
        }
        if let Some(key) = keys.get(i) {
            phone.press(key).await;
        }
    }
    phone.hang_up().await;

    let n =
        wait_count(&app.state, "SELECT COUNT(*) FROM calls WHERE channel = 'sip' AND ended_at IS NOT NULL", 1).await;
    assert_eq!(n, 1, "the SIP call ended in the call log");
    let (call_id, language, area, outcome): (String, Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT call_id, language, area, outcome FROM calls WHERE channel = 'sip'")
            .fetch_one(app.state.db.pool())
            .await
            .expect("the SIP call");
    assert_eq!((language.as_deref(), area.as_deref()), (Some("ro"), Some("casa")));
    assert_eq!(outcome.as_deref(), Some("hung_up_in_queue"));
    let (queued,): (String,) = sqlx::query_as("SELECT language FROM queue_entries WHERE call_id = $1")
        .bind(&call_id)
        .fetch_one(app.state.db.pool())
        .await
        .expect("queued");
    assert_eq!(queued, "ro", "an operator who speaks Romanian");
    // Each engine step's row holds its log lines: what was said, in which language, and the choice.
    let rows: Vec<(String,)> = sqlx::query_as("SELECT data FROM call_events WHERE call_id = $1 ORDER BY seq")
        .bind(&call_id)
        .fetch_all(app.state.db.pool())
        .await
        .expect("the call's steps");
    let log: Vec<serde_json::Value> = rows
        .iter()
        .flat_map(|(data,)| {
            let step: serde_json::Value = serde_json::from_str(data).expect("a step as JSON");
            step["log"].as_array().cloned().unwrap_or_default()
        })
        .collect();
    let said: Vec<&serde_json::Value> = log.iter().filter(|l| l["kind"] == "prompt").collect();
    assert!(said.len() >= heard_in_all, "{} prompts logged, {heard_in_all} heard", said.len());
    for line in &said {
        assert_eq!(line["language"], "ro", "{line}");
    }
    let chosen: Vec<&serde_json::Value> = log.iter().filter(|l| l["kind"] == "language_chosen").collect();
    assert_eq!(chosen.len(), 1, "{chosen:?}");
    assert_eq!(chosen[0]["language"], "ro");
    app.stop().await;
}

/// The power of `freq` in `samples` (Goertzel), normalised by the signal's energy: about 0.5 for
/// a pure tone at `freq`, near 0 for another.
pub(crate) fn goertzel(samples: &[i16], freq: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * freq / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s0 = f64::from(*x) + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - k * s1 * s2;
    let energy: f64 = samples.iter().map(|x| f64::from(*x).powi(2)).sum();
    power / (energy * samples.len() as f64 / 2.0).max(1.0)
}

/// Calls out of hours from `number`, asks for a callback (1), waits for the beep (heard as
/// 1 kHz), sends `message` paced at 20 ms, then presses `#` if `hash`.
async fn leave_voice_message(app: &crate::helpers::TestApp, number: &str, message: &[i16], hash: bool) {
    use ivr::rtp::{ulaw_to_linear, RtpHeader};
    let rtp = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let rtp_port = rtp.local_addr().unwrap().port();
    let (tx, mut heard) = mpsc::unbounded_channel::<Vec<u8>>();
    let reader = rtp.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = reader.recv_from(&mut buf).await {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut phone = SipPhone::call(app.sip_addr, number, rtp_port).await;
    let media_port: u16 = phone
        .answer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("the answer's media port");
    let server_rtp = SocketAddr::from(([127, 0, 0, 1], media_port));
    async fn next_spurt(heard: &mut mpsc::UnboundedReceiver<Vec<u8>>, step: &str) {
        loop {
            let p = tokio::time::timeout(Duration::from_secs(30), heard.recv())
                .await
                .unwrap_or_else(|_| panic!("{step}: nothing heard"))
                .expect("the reader runs");
            if RtpPacket::decode(&p).is_ok_and(|p| p.header.marker) {
                return;
            }
        }
    }
    next_spurt(&mut heard, "the Italian offer").await;
    phone.press("1").await;
    next_spurt(&mut heard, "the welcome").await;
    phone.press("1").await; // out of hours: 1 is a callback
                            // The beep: a talkspurt of 1 kHz, 400 ms.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut spurt: Vec<i16> = Vec::new();
    loop {
        let p = tokio::time::timeout_at(deadline.into(), heard.recv()).await.expect("the beep").unwrap();
        let p = RtpPacket::decode(&p).unwrap();
        if p.header.marker {
            spurt.clear();
        }
        spurt.extend(p.payload.iter().map(|b| ulaw_to_linear(*b)));
        if spurt.len() >= 3200 && goertzel(&spurt[..3200], 1000.0) > 0.4 {
            break;
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (i, chunk) in message.chunks(160).enumerate() {
        let header = RtpHeader {
            marker: i == 0,
            payload_type: 0,
            sequence: i as u16,
            timestamp: i as u32 * 160,
            ssrc: 0x0440_0440,
            csrcs: vec![],
        };
        let packet = header.encode(&chunk.iter().map(|s| linear_to_ulaw(*s)).collect::<Vec<u8>>());
        tick.tick().await;
        rtp.send_to(&packet, server_rtp).await.unwrap();
    }
    if hash {
        phone.press("#").await;
    }
}

/// `ms` milliseconds of a 440 Hz tone (`silence`: of nothing).
fn tone_440(ms: usize, silence: bool) -> Vec<i16> {
    (0..ms * 8)
        .map(
            |n| {
                if silence {
                    0
                } else {
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 8000.0).sin()) as i16
                }
            },
        )
        .collect()
}

/// A Tuesday at 21:00 in Rome: closed.
fn closed_hours() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2026, 11, 24, 20, 0, 0).single().unwrap()
}

/// A SIP caller out of hours asks to be called back and leaves a voice message: after the
/// voicemail prompt and the beep (heard as 1 kHz), one second of silence, two of a 440 Hz tone,
/// one of silence, then `#`. The message is stored trimmed of the silence, the callback request
/// is in the list with its length, and the operator's player gets a WAV holding 440 Hz (and the
/// listening is in the audit log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_out_of_hours_caller_leaves_a_voice_message_the_operator_plays() {
    use console::db::users::Role;
    let _quiet = crate::helpers::SIP_FLOODS.read().await;
    let app = spawn_app().await;
    app.clock.set(closed_hours());
    let mut message = tone_440(1000, true);
    message.extend(tone_440(2000, false));
    message.extend(tone_440(1000, true));
    leave_voice_message(&app, "+393331234567", &message, true).await;
    assert_eq!(wait_count(&app.state, "SELECT COUNT(*) FROM callbacks", 1).await, 1, "the request is recorded");
    let (duration,): (i64,) =
        sqlx::query_as("SELECT duration_ms FROM voicemails").fetch_one(app.state.db.pool()).await.unwrap();
    assert!((1900..=2500).contains(&duration), "two seconds of tone, the silence trimmed: {duration} ms");

    // The operator's list and player.
    crate::console_client::add_user(
        &app,
        "vera",
        Role::Operator,
        &[ivr::domain::Language::parse("it").unwrap()],
        &[],
        false,
    )
    .await;
    let s = crate::console_client::sign_in(&app, "vera").await;
    let list: serde_json::Value = app
        .client
        .get(app.url("/api/callbacks"))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &list["callbacks"][0];
    assert_eq!((entry["language"].as_str(), entry["voicemail_ms"].as_i64()), (Some("it"), Some(duration)), "{list}");
    assert!(!list.to_string().contains("3331234567"), "{list}");
    let id = entry["id"].as_i64().unwrap();
    let r = app
        .client
        .get(app.url(&format!("/api/callbacks/{id}/voicemail")))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    let wav = r.bytes().await.unwrap();
    let mut reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).expect("a WAV file");
    assert_eq!((reader.spec().sample_rate, reader.spec().channels), (8000, 1));
    let got: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let middle = &got[got.len() / 4..got.len() * 3 / 4];
    let (at_440, at_1k) = (goertzel(middle, 440.0), goertzel(middle, 1000.0));
    assert!(at_440 > 0.4 && at_1k < 0.01, "the message holds 440 Hz: {at_440:.3}, 1 kHz {at_1k:.3}");
    let (audited,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE action = 'play_voicemail'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(audited, 1, "the listening is audited");
    app.stop().await;
}

/// The limit and the empty message: with `voicemail_max_secs = 1` three seconds of tone are cut
/// to one (without `#`: the deadline ends it); a message of silence alone leaves the request and
/// no message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_a_voice_message_stops_at_its_limit_and_silence_leaves_none() {
    let _quiet = crate::helpers::SIP_FLOODS.read().await;
    let app =
        crate::helpers::spawn_app_with(crate::helpers::fresh_database().await, |s| s.voicemail_max_secs = 1).await;
    app.clock.set(closed_hours());
    leave_voice_message(&app, "+393331234567", &tone_440(3000, false), false).await;
    assert_eq!(wait_count(&app.state, "SELECT COUNT(*) FROM callbacks", 1).await, 1, "the request is recorded");
    let (duration,): (i64,) =
        sqlx::query_as("SELECT duration_ms FROM voicemails").fetch_one(app.state.db.pool()).await.unwrap();
    assert!((500..=1000).contains(&duration), "cut at one second: {duration} ms");

    leave_voice_message(&app, "+393337654321", &tone_440(1500, true), true).await;
    assert_eq!(wait_count(&app.state, "SELECT COUNT(*) FROM callbacks", 2).await, 2, "the second request too");
    let (messages,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM voicemails").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(messages, 1, "silence is not a message");
    let (outcome,): (Option<String>,) = sqlx::query_as(
        "SELECT c.outcome FROM calls c JOIN callbacks b ON b.call_id = c.call_id ORDER BY b.id DESC LIMIT 1",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(outcome.as_deref(), Some("callback"));
    app.stop().await;
}
