//! The helpline scaled out with the real engines, on loopback: `helpline serve` nodes on their own
//! addresses (127.0.0.2, 127.0.0.3) sharing one PostgreSQL, Kamailio in front of their SIP
//! (`config/kamailio/kamailio.cfg`: dispatcher, OPTIONS probing, failover) and HAProxy in front of
//! their HTTP (`config/haproxy/haproxy.cfg`), started from the committed templates as
//! `scripts/cluster` does. PostgreSQL only; skipped without kamailio, haproxy or sipp unless
//! `CI=true`.

use crate::helpers::{fresh_database, helpline, repo_path, ServeProcess, TestDb};
use crate::sip::sipp_available;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn engines_available() -> bool {
    let found =
        ["kamailio", "haproxy"].iter().all(|p| Command::new("which").arg(p).output().is_ok_and(|o| o.status.success()));
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kamailio and haproxy are required when CI=true (apt-get install kamailio haproxy)"
        );
    }
    found
}

fn free_tcp(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).expect("bind").local_addr().expect("addr").port()
}

fn free_udp(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0)).expect("bind").local_addr().expect("addr").port()
}

/// A child process stopped when dropped: SIGTERM, then SIGKILL for it and its children after 3 s.
struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One node's fixed addresses (so that a restarted node is where Kamailio and HAProxy look).
#[derive(Clone)]
struct NodeAddrs {
    http: SocketAddr,
    sip: SocketAddr,
    webrtc: SocketAddr,
}

impl NodeAddrs {
    fn on(ip: &str) -> NodeAddrs {
        let at = |port: u16| SocketAddr::new(ip.parse().expect("ip"), port);
        NodeAddrs { http: at(free_tcp(ip)), sip: at(free_udp(ip)), webrtc: at(free_udp(ip)) }
    }
}

struct Cluster {
    db: TestDb,
    flow: std::path::PathBuf,
    addrs: Vec<NodeAddrs>,
    nodes: Vec<Option<ServeProcess>>,
    sip: SocketAddr,
    http: SocketAddr,
    _kamailio: Engine,
    _haproxy: Engine,
}

impl Cluster {
    async fn start(n: usize) -> Option<Cluster> {
        if !sipp_available() || !engines_available() {
            return None;
        }
        let db = fresh_database().await;
        if !db.is_postgres() {
            return None;
        }
        Some(Cluster::on(n, db).await)
    }

    /// `n` nodes on `db` (a PostgreSQL database), behind Kamailio and HAProxy.
    async fn on(n: usize, db: TestDb) -> Cluster {
        let flow = crate::sip_edge::open_all_week_flow(db.dir.path());
        let addrs: Vec<NodeAddrs> = (0..n).map(|i| NodeAddrs::on(&format!("127.0.0.{}", i + 2))).collect();
        let mut nodes = Vec::new();
        for a in &addrs {
            nodes.push(Some(start_node(&db, &flow, a)));
        }
        let dir = db.dir.path();
        let ds_list = dir.join("dispatcher.list");
        let list: String = addrs.iter().map(|a| format!("1 sip:{} 0 0\n", a.sip)).collect();
        std::fs::write(&ds_list, list).expect("dispatcher list");
        let sip = SocketAddr::from(([127, 0, 0, 1], free_udp("127.0.0.1")));
        let kamailio = Command::new("kamailio")
            .args(["-DD", "-E", "-w"])
            .arg(dir)
            .arg("-f")
            .arg(repo_path("config/kamailio/kamailio.cfg"))
            .arg("-A")
            .arg(format!("LISTEN=udp:{sip}"))
            .arg("-A")
            .arg(format!("DS_LIST=\"{}\"", ds_list.display()))
            .args(["-A", "PIKE_DENSITY=5000", "-A", "PING_SECS=1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("kamailio.log")).expect("log"))
            .spawn()
            .expect("kamailio");
        let servers: String =
            addrs.iter().enumerate().map(|(i, a)| format!("    server node{} {} check\n", i + 1, a.http)).collect();
        let template = std::fs::read_to_string(repo_path("config/haproxy/haproxy.cfg")).expect("haproxy.cfg");
        let cfg = template.replace("    #@nodes\n", &servers);
        std::fs::write(dir.join("haproxy.cfg"), cfg).expect("write haproxy.cfg");
        let http = SocketAddr::from(([127, 0, 0, 1], free_tcp("127.0.0.1")));
        let haproxy = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(dir.join("haproxy.cfg"))
            .env("HELPLINE_EDGE_HTTP", http.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("haproxy.log")).expect("log"))
            .spawn()
            .expect("haproxy");
        let cluster =
            Cluster { db, flow, addrs, nodes, sip, http, _kamailio: Engine(kamailio), _haproxy: Engine(haproxy) };
        cluster.wait_until_up().await;
        cluster
    }

    /// Waits until HAProxy answers /readyz and Kamailio answers OPTIONS.
    async fn wait_until_up(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = client.get(format!("http://{}/readyz", self.http)).send().await.is_ok_and(|r| r.status() == 200);
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "HAProxy up: {}", self.log("haproxy.log"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ua = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        loop {
            let local = ua.local_addr().expect("addr");
            let probe = format!(
                "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-up{n}\r\n\
                 From: <sip:probe@{local}>;tag=p\r\nTo: <sip:{sip}>\r\nCall-ID: up-{n}\r\nCSeq: 1 OPTIONS\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                sip = self.sip,
                n = rand::random::<u32>()
            );
            ua.send_to(probe.as_bytes(), self.sip).await.expect("send");
            let mut buf = [0u8; 2048];
            if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(300), ua.recv_from(&mut buf)).await {
                if buf[..n].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "Kamailio up: {}", self.log("kamailio.log"));
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.db.dir.path().join(name)).unwrap_or_default()
    }

    async fn pool(&self) -> console::db::Db {
        console::db::Db::connect(&self.db.url).await.expect("db")
    }
}

fn start_node(db: &TestDb, flow: &std::path::Path, a: &NodeAddrs) -> ServeProcess {
    let mut cmd = helpline(db.dir.path());
    cmd.env("HELPLINE_HTTP_ADDR", a.http.to_string())
        .env("HELPLINE_SIP_ADDR", a.sip.to_string())
        .env("HELPLINE_WEBRTC_ADDR", a.webrtc.to_string())
        .env("HELPLINE_SIP_ALLOW", "127.0.0.1/32")
        .env("HELPLINE_SIP_RATE", "0")
        .env("HELPLINE_SIP_REQUEST_RATE", "0")
        .env("HELPLINE_FLOW_FILE", flow)
        .env("HELPLINE_NODE_TIMEOUT_SECS", "4")
        .env("HELPLINE_DRAIN_SECS", "3");
    ServeProcess::start_command(cmd, &db.url)
}

/// One sipp call through the proxy (`proxied_call.xml`, `pause_ms` between ACK and BYE).
async fn proxied_call(edge: SocketAddr, pause_ms: u32, extra: &[&str]) -> crate::sip::SippRun {
    let pause = pause_ms.to_string();
    let mut args = vec!["-m", "1", "-l", "1", "-d", &pause, "-timeout", "15s"];
    args.extend_from_slice(extra);
    crate::sip::sipp(edge, "proxied_call.xml", &args).await
}

/// Calls per node (by the node that held them).
async fn calls_per_node(db: &console::db::Db) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT node_id, COUNT(*) FROM calls WHERE node_id IS NOT NULL GROUP BY node_id")
            .fetch_all(db.pool())
            .await
            .expect("calls");
    rows.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_calls_through_kamailio_reach_every_node_and_webhook_calls_alternate_nodes_through_haproxy() {
    let Some(cluster) = Cluster::start(2).await else { return };
    // SIP: six calls in a row through Kamailio, round-robin over the two nodes.
    for _ in 0..6 {
        let run = proxied_call(cluster.sip, 200, &[]).await;
        assert!(run.success, "a call through Kamailio:\n{}", run.report);
    }
    let db = cluster.pool().await;
    let per_node = calls_per_node(&db).await;
    assert_eq!(per_node.len(), 2, "both nodes took calls: {per_node:?}");
    assert!(per_node.values().all(|&n| n >= 2), "round-robin: {per_node:?}");

    // HTTP: one webhook call's events through HAProxy, each answered by the next node.
    let client = reqwest::Client::new();
    let url = format!("http://{}/voice/events", cluster.http);
    let mut served_by = Vec::new();
    let events = [
        json!({"type": "call.started", "call_id": "lb-1", "seq": 1, "from": "+39 333 123 4512"}),
        json!({"type": "digits", "call_id": "lb-1", "seq": 2, "digits": "1"}),
        json!({"type": "digits", "call_id": "lb-1", "seq": 3, "digits": "3"}),
        json!({"type": "no_input", "call_id": "lb-1", "seq": 4}),
    ];
    for e in &events {
        let body = serde_json::to_vec(e).expect("json");
        let r = crate::helpers::post_signed_event(&client, &url, "application/json", body, chrono::Utc::now()).await;
        assert_eq!(r.status(), 200);
        served_by.push(r.headers().get("x-helpline-node").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned());
        let answer: Value = r.json().await.expect("answer");
        assert!(answer["actions"].is_array(), "{answer}");
    }
    for pair in served_by.windows(2) {
        assert_ne!(pair[0], pair[1], "consecutive events of one call on alternate nodes: {served_by:?}");
    }
    let (logged,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM call_events WHERE call_id = 'lb-1'")
        .fetch_one(db.pool())
        .await
        .expect("events");
    assert!(logged >= 4, "every event of the call is in the one log ({logged})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sigkilled_under_a_steady_call_rate_the_other_takes_new_calls_within_5_s_and_a_restarted_one_rejoins() {
    let Some(mut cluster) = Cluster::start(2).await else { return };
    let db = cluster.pool().await;
    // A caller every 250 ms, each staying 500 ms, through Kamailio; node 1 is killed after 3 s.
    let started = Instant::now();
    let mut calls = Vec::new();
    let mut killed_at = None;
    let mut node_a = None;
    while started.elapsed() < Duration::from_secs(12) {
        if killed_at.is_none() && started.elapsed() >= Duration::from_secs(3) {
            let a = cluster.nodes[0].take().expect("node 1");
            node_a = Some(a.child.id());
            a.kill_hard();
            killed_at = Some(started.elapsed());
        }
        let at = started.elapsed();
        let edge = cluster.sip;
        calls.push((at, tokio::spawn(async move { proxied_call(edge, 500, &[]).await })));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let killed_at = killed_at.expect("killed");
    let mut results = Vec::new();
    for (at, call) in calls {
        let run = call.await.expect("sipp");
        results.push((at, run.success));
    }
    let before: Vec<_> = results.iter().filter(|(at, _)| *at + Duration::from_secs(1) < killed_at).collect();
    assert!(before.iter().all(|(_, ok)| *ok), "every call well before the kill succeeded: {results:?}");
    // Failover: from the kill to the first call after which every call succeeded.
    let last_failure = results.iter().filter(|(_, ok)| !ok).map(|(at, _)| *at).max();
    let recovered = match last_failure {
        Some(at) => at.saturating_sub(killed_at) + Duration::from_millis(250),
        None => Duration::ZERO,
    };
    assert!(
        recovered <= Duration::from_secs(5),
        "new calls succeed within 5 s of the kill ({recovered:?}): {results:?}"
    );
    let after: Vec<_> = results.iter().filter(|(at, _)| *at >= killed_at + Duration::from_secs(5)).collect();
    assert!(after.len() >= 10 && after.iter().all(|(_, ok)| *ok), "{results:?}");
    eprintln!("failover after SIGKILL (pid {node_a:?}): {recovered:?}");

    // The dead node's calls are all ended in the log (its heartbeat stopped); none is left live.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (live,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM calls c JOIN nodes n ON n.node_id = c.node_id WHERE c.ended_at IS NULL \
             AND n.seen_at < $1",
        )
        .bind(console::calls::nodes::wall_ms() - 5_000)
        .fetch_one(db.pool())
        .await
        .expect("live");
        if live == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{live} calls of the dead node still live");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Restarted on its address, node 1 answers the probes again and takes calls.
    let before_restart = calls_per_node(&db).await;
    let node = start_node(&cluster.db, &cluster.flow, &cluster.addrs[0]);
    cluster.nodes[0] = Some(node);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = proxied_call(cluster.sip, 100, &[]).await;
        assert!(run.success, "{}", run.report);
        let now = calls_per_node(&db).await;
        if now.keys().any(|k| !before_restart.contains_key(k)) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted node rejoined: {now:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sent_sigterm_takes_no_new_call_finishes_its_live_one_then_leaves() {
    let Some(mut cluster) = Cluster::start(2).await else { return };
    let db = cluster.pool().await;
    // A long call on each node (round-robin), then SIGTERM to node 1.
    let edge = cluster.sip;
    let long: Vec<_> = (0..2).map(|_| tokio::spawn(async move { proxied_call(edge, 2_500, &[]).await })).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls_per_node(&db).await.len() < 2 {
        assert!(Instant::now() < deadline, "a call on each node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = cluster.nodes[0].take().expect("node 1");
    let (a_node,): (String,) = sqlx::query_as("SELECT node_id FROM nodes WHERE http_addr = $1 AND dead_at IS NULL")
        .bind(cluster.addrs[0].http.to_string())
        .fetch_one(db.pool())
        .await
        .expect("node 1's id");
    a.signal("TERM");
    let term = Instant::now();
    // New calls meanwhile all go to node 2 (node 1 answers 503 to INVITEs and OPTIONS).
    let before = calls_per_node(&db).await;
    for _ in 0..4 {
        let run = proxied_call(cluster.sip, 100, &[]).await;
        assert!(run.success, "{}", run.report);
    }
    let after = calls_per_node(&db).await;
    assert_eq!(after.get(&a_node), before.get(&a_node), "no new call reached the draining node");
    // Its live call finished normally (the caller's BYE within the drain time).
    for call in long {
        let run = call.await.expect("sipp");
        assert!(run.success, "the live calls finish: {}", run.report);
    }
    let (code, _) = a.terminate();
    assert_eq!(code, 0, "node 1 stopped by itself after its calls");
    assert!(term.elapsed() < Duration::from_secs(20));
    let (dead,): (Option<i64>,) = sqlx::query_as("SELECT dead_at FROM nodes WHERE node_id = $1")
        .bind(&a_node)
        .fetch_one(db.pool())
        .await
        .expect("node 1");
    assert!(dead.is_some(), "node 1 left the cluster");
}

/// A PostgreSQL server of the test's own on 127.0.0.1, which it may stop and start (the shared
/// throwaway server serves the other tests meanwhile); stopped when dropped.
struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    fn start() -> Option<OwnPostgres> {
        use crate::pg_tls::{is_root, pg, pg_bin};
        let bin = pg_bin()?;
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let chown = Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()).status().expect("chown");
            assert!(chown.success());
        }
        let data = dir.path().join("data");
        pg(
            &bin.join("initdb"),
            &["-D", data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
        );
        let own = OwnPostgres { bin, dir, port: free_tcp("127.0.0.1") };
        own.up();
        Some(own)
    }

    fn ctl(&self, args: &[&str]) -> Vec<String> {
        let data = self.dir.path().join("data").display().to_string();
        let mut all = vec!["-D".to_owned(), data];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let args = self.ctl(&["-l", &log, "-w", "-o", &options, "start"]);
        crate::pg_tls::pg(&self.bin.join("pg_ctl"), &args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// A fast shutdown: the server ends every session and stops.
    fn down(&self) {
        let args = self.ctl(&["-m", "fast", "-w", "stop"]);
        crate::pg_tls::pg(&self.bin.join("pg_ctl"), &args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let args = self.ctl(&["-m", "immediate", "stop"]);
        let tool = self.bin.join("pg_ctl");
        let _ = if crate::pg_tls::is_root() {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(tool).args(&args).output()
        } else {
            Command::new(tool).args(&args).output()
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_load_calls_are_answered_or_refused_at_once_none_left_open_and_the_nodes_recover() {
    // The PostgreSQL leg only, like the other cluster tests, on a server of the test's own.
    let postgres_leg = std::env::var("HELPLINE_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    if !postgres_leg || !sipp_available() || !engines_available() {
        return;
    }
    let Some(pg) = OwnPostgres::start() else {
        eprintln!("SKIPPED (no PostgreSQL server binaries)");
        return;
    };
    let mut cluster = Cluster::on(2, TestDb { url: pg.url(), dir: tempfile::tempdir().expect("dir") }).await;
    let pg = std::sync::Arc::new(pg);
    // A caller every 250 ms through Kamailio, each on the line 1.5 s; PostgreSQL stopped 3 s in,
    // started again 3 s later (longer than the nodes' 4 s timeout, counting the last beat before).
    let started = Instant::now();
    let mut calls = Vec::new();
    let (mut down, mut up) = (None, None);
    while started.elapsed() < Duration::from_secs(18) {
        if down.is_none() && started.elapsed() >= Duration::from_secs(3) {
            let pg = pg.clone();
            tokio::task::spawn_blocking(move || pg.down()).await.expect("stop");
            down = Some(started.elapsed());
        }
        if up.is_none() && down.is_some_and(|d| started.elapsed() >= d + Duration::from_secs(3)) {
            let pg = pg.clone();
            tokio::task::spawn_blocking(move || pg.up()).await.expect("start");
            up = Some(started.elapsed());
        }
        let at = started.elapsed();
        let edge = cluster.sip;
        calls.push((
            at,
            tokio::spawn(async move {
                let t = Instant::now();
                let run = proxied_call(edge, 1500, &[]).await;
                (run, t.elapsed())
            }),
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (down, up) = (down.expect("stopped"), up.expect("started"));
    let mut results = Vec::new();
    for (at, call) in calls {
        let (run, took) = call.await.expect("sipp");
        results.push((at, run.success, took, run.report));
    }
    let summary: Vec<(u128, bool, u128)> =
        results.iter().map(|(at, ok, took, _)| (at.as_millis(), *ok, took.as_millis())).collect();
    eprintln!("PostgreSQL down at {down:?}, up at {up:?}; calls (placed ms, ok, took ms): {summary:?}");
    // Before the stop every call is answered; none is left waiting during the outage: each is
    // answered or refused with a final response well within sipp's 15 s; from 5 s after the
    // start every call is answered again.
    for (at, ok, took, report) in &results {
        if *at + Duration::from_secs(2) < down || *at >= up + Duration::from_secs(5) {
            assert!(*ok, "the call placed at {at:?} was answered: {report}");
        }
        assert!(*took < Duration::from_secs(12), "the call placed at {at:?} waited {took:?}: {report}");
    }
    let answered = results.iter().filter(|(_, ok, _, _)| *ok).count();

    // Nothing acknowledged is lost: every answered call is in the log (a 200 is sent only once the
    // call is recorded). None is left open: each ended call gets its end recorded once the
    // database is back (the caller's BYE retried), and no node declared the other dead for the
    // outage (every call's end is the caller's hang-up, none `node_died`).
    let db = cluster.pool().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (rows, open): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(*) FILTER (WHERE ended_at IS NULL) FROM calls")
                .fetch_one(db.pool())
                .await
                .expect("calls");
        assert!(rows as usize >= answered, "{rows} calls logged, {answered} answered");
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} of {rows} calls still open in the log");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (node_died,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM call_events WHERE kind = 'hung_up' AND data LIKE '%node_died%'")
            .fetch_one(db.pool())
            .await
            .expect("events");
    let heartbeats: Vec<String> = cluster
        .nodes
        .iter_mut()
        .flatten()
        .flat_map(|n| n.read_logs())
        .filter(|l| l.contains("heartbeat") || l.contains("node dead") || l.contains("declared dead"))
        .collect();
    assert_eq!(node_died, 0, "no node took the other for dead because the database was away: {heartbeats:#?}");
    let (alive,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM nodes WHERE dead_at IS NULL AND seen_at > $1")
        .bind(console::calls::nodes::wall_ms() - 3_000)
        .fetch_one(db.pool())
        .await
        .expect("nodes");
    assert_eq!(alive, 2, "both nodes beat again");
    // HAProxy finds both ready again.
    let client = reqwest::Client::new();
    for a in &cluster.addrs {
        let r = client.get(format!("http://{}/readyz", a.http)).send().await.expect("readyz");
        assert_eq!(r.status(), 200);
    }
}

/// A caller's dialog through Kamailio, as a phone keeps it: the route set from the 200's
/// `Record-Route` (reversed), the node's `Contact` as the request URI of in-dialog requests,
/// and the node's media address from its SDP.
struct ProxiedDialog {
    ua: tokio::net::UdpSocket,
    routes: Vec<String>,
    contact: String,
    to: String,
    call_id: String,
    media: SocketAddr,
}

impl ProxiedDialog {
    /// Calls the helpline through `edge` from a +39 02 number (an Italian caller) and acknowledges
    /// the answer; signalling and media share one socket, as its SDP says.
    async fn call(edge: SocketAddr, tag: &str) -> ProxiedDialog {
        use ivr::sip::{parse, Message};
        let ua = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let local = ua.local_addr().expect("addr");
        ua.send_to(crate::sip_edge::invite(0, local, tag, edge).as_bytes(), edge).await.expect("invite");
        let mut buf = vec![0u8; 65_535];
        let ok = loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(10), ua.recv_from(&mut buf))
                .await
                .expect("an answer")
                .expect("recv");
            if let Ok(Message::Response(r)) = parse(&buf[..n]) {
                assert!(r.status < 300, "the call was answered, not {}", r.status);
                if r.status == 200 {
                    break r;
                }
            }
        };
        let uri = |v: &str| v.split('<').nth(1).and_then(|r| r.split('>').next()).expect("a <uri>").to_owned();
        let mut routes: Vec<String> = ok
            .headers
            .get_all("Record-Route")
            .flat_map(|v| v.split(',').map(str::trim).map(str::to_owned).collect::<Vec<_>>())
            .collect();
        routes.reverse();
        assert!(!routes.is_empty(), "Kamailio stays on the dialog's path (record_route)");
        let contact = uri(ok.headers.get("Contact").expect("Contact"));
        let sdp = String::from_utf8_lossy(&ok.body).into_owned();
        let ip = sdp.lines().find_map(|l| l.strip_prefix("c=IN IP4 ")).expect("c=").trim().parse().expect("ip");
        let port = sdp
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .and_then(|p| p.parse().ok())
            .expect("the answer's audio port");
        let dialog = ProxiedDialog {
            ua,
            routes,
            contact,
            to: ok.headers.get("To").expect("To").to_owned(),
            call_id: format!("{tag}-0@{}", local.ip()),
            media: SocketAddr::new(ip, port),
        };
        dialog.in_dialog("ACK", 1, &format!("{tag}-ack")).await;
        dialog
    }

    /// Sends an in-dialog request along the route set (to its first hop, a loose router).
    async fn in_dialog(&self, method: &str, cseq: u32, branch: &str) {
        let local = self.ua.local_addr().expect("addr");
        let first = self.routes[0].split("sip:").nth(1).expect("a sip route");
        let hop: SocketAddr = first.split([';', '>']).next().expect("host:port").parse().expect("the route's address");
        let route: String = self.routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
        let request = format!(
            "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{branch};rport\r\n{route}\
             From: <sip:+39021234{n:04}@{ip}>;tag=f0\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            contact = self.contact,
            n = 0,
            ip = local.ip(),
            to = self.to,
            call_id = self.call_id,
        );
        self.ua.send_to(request.as_bytes(), hop).await.expect("send");
    }

    async fn press(&self, key: char, first_seq: u16) {
        for p in crate::sip_edge::key_packets(key, 0xca11, first_seq) {
            self.ua.send_to(&p, self.media).await.expect("send");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_down_while_a_caller_is_in_a_menu_the_caller_hears_the_technical_problem_prompt_and_the_menu_goes_on(
) {
    let postgres_leg = std::env::var("HELPLINE_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    if !postgres_leg || !engines_available() {
        return;
    }
    let Some(pg) = OwnPostgres::start() else {
        eprintln!("SKIPPED (no PostgreSQL server binaries)");
        return;
    };
    let cluster = Cluster::on(2, TestDb { url: pg.url(), dir: tempfile::tempdir().expect("dir") }).await;
    let pg = std::sync::Arc::new(pg);
    // An Italian caller through Kamailio, on whichever node it chose; the offer of Italian begins.
    let dialog = ProxiedDialog::call(cluster.sip, "pgmenu").await;
    let mut buf = vec![0u8; 2048];
    tokio::time::timeout(Duration::from_secs(10), dialog.ua.recv_from(&mut buf))
        .await
        .expect("the offer began")
        .expect("recv");
    // PostgreSQL stops; the caller presses 1 (Italian): the step cannot be written, and the caller
    // hears the technical-problem prompt, byte for byte, instead of silence.
    let down = pg.clone();
    tokio::task::spawn_blocking(move || down.down()).await.expect("stop");
    dialog.press('1', 1).await;
    let problem = crate::sip_edge::ulaw_of("prompts/it/wav/technical-problem.wav");
    let heard = crate::sip_edge::wait_for_talkspurt(&dialog.ua, &problem, Duration::from_secs(45)).await;
    let up = pg.clone();
    tokio::task::spawn_blocking(move || up.up()).await.expect("start");
    assert!(heard.is_some(), "the caller heard the technical-problem prompt during the outage");
    // The menu was re-armed: once PostgreSQL is back, the same key goes through, once. (A press
    // whose step still found the database away gets the prompt again; it is pressed again only
    // after 5 s without its step in the log, long after a step that went through would show.)
    let db = cluster.pool().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seq = 100;
    let digits = 'pressed: loop {
        assert!(Instant::now() < deadline, "the key after the outage reached the engine");
        dialog.press('1', seq).await;
        seq += 20;
        let settle = Instant::now() + Duration::from_secs(5);
        while Instant::now() < settle {
            let rows: Vec<(String,)> = sqlx::query_as("SELECT data FROM call_events WHERE kind = 'digits'")
                .fetch_all(db.pool())
                .await
                .unwrap_or_default();
            if !rows.is_empty() {
                break 'pressed rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(digits.len(), 1, "the failed step was not applied as well: {digits:?}");
    assert!(digits[0].0.contains("\"digits\":\"1\""), "{digits:?}");
    // The caller hangs up through Kamailio; the call's end is in the log.
    dialog.in_dialog("BYE", 2, "pgmenu-bye").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (open,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL")
            .fetch_one(db.pool())
            .await
            .expect("calls");
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the caller's BYE ended the call in the log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
