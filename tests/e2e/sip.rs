//! The SIP adapter against a real SIP peer: `sipp` (Debian package `sip-tester`) places calls at
//! the in-process server with the scenarios in `tests/sipp/*.xml`; the call log in the database,
//! the metrics and the audio that came back (a small RTP receiver here) are then checked.
//!
//! Without sipp these tests print `SKIPPED (sipp not installed)` and pass, except with `CI=true`,
//! where they fail.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_hang_up_mid_prompt_stops_the_audio_at_once() {
    if !sipp_available() {
        return;
    }
    let app = spawn_app().await;
    let mut sink = RtpSink::bind().await;
    let port = sink.port.to_string();
    let run = sipp(app.sip_addr, "hangup_mid_prompt.xml", &["-m", "1", "-l", "1", "-key", "rtp_port", &port]).await;
    assert!(run.success, "sipp failed:\n{}", run.report);
    let (_, _, _, outcome, _) = only_call(&app.state).await;
    assert_eq!(outcome.as_deref(), Some("hung_up_in_menu"));
    let heard = sink.drain();
    // About one second of the 6.4 s welcome, then nothing after the BYE.
    assert!((30..150).contains(&heard.len()), "{} packets", heard.len());
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
    let app = spawn_app().await;
    let sink = RtpSink::bind().await;
    let port = sink.port.to_string();
    let run = sipp(
        app.sip_addr,
        "short_call.xml",
        &["-m", "50", "-l", "50", "-r", "50", "-d", "2000", "-key", "rtp_port", &port],
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
    // Each call heard about two seconds of welcome.
    assert!(metric(&app.state, "helpline_rtp_packets_sent_total") >= 50.0 * 80.0);
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
