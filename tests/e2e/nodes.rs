//! The real `helpline serve` binary: first start, two nodes on one database, graceful shutdown.

use crate::helpers::{fresh_database, helpline, run_helpline, ServeProcess};
use serde_json::{json, Value};

async fn sign_in(client: &reqwest::Client, base: &ServeProcess, name: &str, password: &str) -> reqwest::StatusCode {
    client
        .post(base.url("/api/session"))
        .json(&json!({ "name": name, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn two_nodes_on_one_database_share_users_and_the_first_admin_is_printed_once() {
    let db = fresh_database().await;
    let a = ServeProcess::start(db.dir.path(), &db.url);
    let b = ServeProcess::start(db.dir.path(), &db.url);
    assert_ne!(a.addr, b.addr);

    let client = reqwest::Client::new();
    for node in [&a, &b] {
        let r = client.get(node.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "node {} not ready", node.addr);
    }

    // A user added through the CLI can sign in on both nodes; a wrong password on neither.
    let (code, _, err) = run_helpline(
        helpline(db.dir.path())
            .args([
                "user",
                "add",
                "--name",
                "amina",
                "--role",
                "supervisor",
                "--languages",
                "fr,it",
                "--password-stdin",
            ])
            .env("HELPLINE_DATABASE_URL", &db.url),
        "a long enough password\n",
    );
    assert_eq!(code, 0, "{err}");
    for node in [&a, &b] {
        assert_eq!(sign_in(&client, node, "amina", "a long enough password").await, 200);
        assert_eq!(sign_in(&client, node, "amina", "wrong password!!").await, 401);
    }

    // A session made on node A is valid on node B: sessions live in the shared database.
    let jar_client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    assert_eq!(sign_in(&jar_client, &a, "amina", "a long enough password").await, 200);
    let me: Value = jar_client.get(b.url("/api/session")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["name"], "amina");
    assert_eq!(me["user"]["role"], "supervisor");

    let (addr_a, addr_b) = (a.addr, b.addr);
    let (code_a, out_a) = a.terminate();
    let (code_b, out_b) = b.terminate();
    assert_eq!((code_a, code_b), (0, 0), "both nodes stop cleanly on SIGTERM");
    let printed = [&out_a, &out_b].iter().filter(|o| o.contains("an admin account was created")).count();
    assert_eq!(printed, 1, "exactly one node creates the first admin:\nA: {out_a}\nB: {out_b}");
    let (out, addr) = if out_a.contains("admin account") { (&out_a, addr_a) } else { (&out_b, addr_b) };
    // The banner sends the admin to the console in a browser, not to an API endpoint.
    assert!(out.contains(&format!("Open http://{addr}/console in a browser")), "{out}");
    assert!(!out.contains("POST") && !out.contains("/api/session"), "{out}");
    // Nobody at a terminal: the password is in a file only its owner can read, never in the output
    // (which ends up in journald or a container's log).
    let file = db.dir.path().join("data").join(console::cli::FIRST_ADMIN_FILE);
    assert!(out.contains(&file.display().to_string()) || out.contains("data/first-admin-password"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "readable by the owner only");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let password = text.lines().find_map(|l| l.strip_prefix("password: ")).unwrap().trim().to_owned();
    assert!(!out_a.contains(&password) && !out_b.contains(&password), "the password is not in the output");

    // The printed admin password works, on a node started afterwards too; nothing is printed again.
    let c = ServeProcess::start(db.dir.path(), &db.url);
    assert_eq!(sign_in(&client, &c, "admin", &password).await, 200);
    let (code, out) = c.terminate();
    assert_eq!(code, 0);
    assert!(!out.contains("admin account was created"), "the first admin is created only once: {out}");
}

#[tokio::test]
async fn serve_on_a_fresh_machine_creates_the_sqlite_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // No database URL: the default SQLite file under data/ in the working directory.
    let node = ServeProcess::start(dir.path(), "sqlite://data/helpline.db");
    assert!(dir.path().join("data/helpline.db").is_file(), "the SQLite file is created on first start");
    let client = reqwest::Client::new();
    let ready: Value = client.get(node.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["database"], "sqlite");
    let (code, _) = node.terminate();
    assert_eq!(code, 0);
}

/// A newcomer's first run: `helpline serve` started in an empty folder (no `prompts/`, no
/// `config/`) runs on the menus, settings and prompts built into the binary.
#[tokio::test]
async fn serve_in_an_empty_folder_runs_on_the_built_in_prompts_and_menus() {
    let dir = tempfile::tempdir().unwrap();
    let without_the_repository = || {
        let mut cmd = helpline(dir.path());
        cmd.env_remove("HELPLINE_PROMPTS_DIR").env_remove("HELPLINE_FLOW_FILE");
        cmd
    };
    let (code, out, err) = run_helpline(without_the_repository().arg("check-config"), "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("menus: built-in default flow"), "{out}");
    assert!(out.contains("prompts: the prompts built into the program ok"), "{out}");

    let database_url = format!("sqlite://{}/helpline.db", dir.path().display());
    let node = ServeProcess::start_command(without_the_repository(), &database_url);
    let client = reqwest::Client::new();
    let ready = client.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let wav = client.get(node.url("/prompts/it/welcome.wav")).send().await.unwrap();
    assert_eq!(wav.status(), 200);
    assert_eq!(wav.headers()["content-type"], "audio/wav");
    let bytes = wav.bytes().await.unwrap();
    let expected = std::fs::read(crate::helpers::repo_path("prompts/it/wav/welcome.wav")).unwrap();
    assert!(bytes[..] == expected[..], "the built-in welcome.wav is the repository's");
    let missing = client.get(node.url("/prompts/it/no-such-prompt.wav")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let (code, _) = node.terminate();
    assert_eq!(code, 0);

    // A prompts folder named explicitly must exist: the error names it.
    let named = dir.path().join("my-prompts");
    let (code, _, err) =
        run_helpline(without_the_repository().arg("check-config").env("HELPLINE_PROMPTS_DIR", &named), "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&named.display().to_string()) && err.contains("missing language folder"), "{err}");
}

#[tokio::test]
async fn serve_with_an_unreachable_database_exits_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run_helpline(
        helpline(dir.path())
            .arg("serve")
            .env("HELPLINE_DATABASE_URL", "postgres://x@127.0.0.1:1/none")
            .env("HELPLINE_SECRET", crate::helpers::TEST_SERVER_SECRET),
        "",
    );
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect to the postgres database"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Posts a signed JSON call event to a `helpline serve` process (which runs on the real clock).
async fn event(client: &reqwest::Client, node: &ServeProcess, body: Value) -> Value {
    let body = serde_json::to_vec(&body).unwrap();
    let r = crate::helpers::post_signed_event(
        client,
        &node.url("/voice/events"),
        "application/json",
        body,
        chrono::Utc::now(),
    )
    .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_killed_process_loses_no_acknowledged_event() {
    let db = fresh_database().await;
    let client = reqwest::Client::new();
    let node = ServeProcess::start(db.dir.path(), &db.url);
    // One finished call, one call in the middle of the menu.
    event(&client, &node, json!({"type": "call.started", "call_id": "done-1", "seq": 1, "from": "+39 333 123 4512"}))
        .await;
    event(&client, &node, json!({"type": "digits", "call_id": "done-1", "seq": 2, "digits": "0"})).await;
    event(&client, &node, json!({"type": "call.ended", "call_id": "done-1", "seq": 3})).await;
    event(&client, &node, json!({"type": "call.started", "call_id": "live-1", "seq": 1, "from": "+34 612 345 678"}))
        .await;
    event(&client, &node, json!({"type": "digits", "call_id": "live-1", "seq": 2, "digits": "1"})).await;
    node.kill_hard();

    // Everything acknowledged is there for the next process, which continues the live call.
    let node = ServeProcess::start(db.dir.path(), &db.url);
    let answer = event(&client, &node, json!({"type": "digits", "call_id": "live-1", "seq": 3, "digits": "4"})).await;
    assert_eq!(answer["actions"][0]["language"], "es-ES", "the live call continued in Spanish: {answer}");
    let conn = console::db::Db::connect(&db.url).await.unwrap();
    let (outcome, ended_at, events): (Option<String>, Option<i64>, i64) = sqlx::query_as(
        "SELECT outcome, ended_at, (SELECT COUNT(*) FROM call_events e WHERE e.call_id = c.call_id) FROM calls c \
         WHERE call_id = 'done-1'",
    )
    .fetch_one(conn.pool())
    .await
    .unwrap();
    // (The binary runs on the real clock: in hours the caller hung up in the queue, out of hours
    // in the closed message. Either way the call is recorded as ended.)
    assert!(matches!(outcome.as_deref(), Some("hung_up_in_queue" | "out_of_hours")), "{outcome:?}");
    assert!(ended_at.is_some());
    assert!(events >= 3, "every acknowledged event of the finished call is in the log ({events})");
    let (code, _) = node.terminate();
    assert_eq!(code, 0);
}

/// Posts a signed JSON call event; `None` when no answer came (the process was killed).
async fn try_event(client: &reqwest::Client, node_url: &str, body: &Value) -> Option<(reqwest::StatusCode, Value)> {
    let body = serde_json::to_vec(body).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let r = client
        .post(node_url)
        .header("content-type", "application/json")
        .header("x-helpline-timestamp", ts.to_string())
        .header("x-helpline-signature", console::webhook::json::sign(crate::helpers::TEST_WEBHOOK_SECRET, ts, &body))
        .body(body)
        .send()
        .await
        .ok()?;
    let status = r.status();
    Some((status, r.json().await.ok()?))
}

/// The events of one call through the menu, in order: the caller hears the menus, never hangs up.
fn menu_event(call_id: &str, seq: i64) -> Value {
    match seq {
        1 => json!({"type": "call.started", "call_id": call_id, "seq": 1, "from": "+39 333 123 4512"}),
        2 => json!({"type": "digits", "call_id": call_id, "seq": 2, "digits": "1"}),
        3 => json!({"type": "digits", "call_id": call_id, "seq": 3, "digits": "3"}),
        _ => json!({"type": "no_input", "call_id": call_id, "seq": seq}),
    }
}

/// Group commit keeps the invariant: with many calls in flight (so the writer commits several
/// requests per transaction) and the process killed with SIGKILL in the middle of it, every
/// answer a carrier received is in the database — the call advanced to it, its call log is
/// complete, and the retry of the acknowledged event gets the very same answer from a new process.
#[tokio::test]
async fn a_process_killed_under_load_keeps_every_acknowledged_event_of_every_batch() {
    const CALLS: usize = 24;
    let db = fresh_database().await;
    let node = ServeProcess::start(db.dir.path(), &db.url);
    let url = node.url("/voice/events");
    let first_base = node.url("");
    let client = reqwest::Client::new();
    // Each call task reports every acknowledged (call, seq, answer); the test kills the process
    // once enough have come back, while the others are still in flight.
    let (acks_tx, mut acks_rx) = tokio::sync::mpsc::unbounded_channel::<(String, i64, Value)>();
    let mut tasks = Vec::new();
    for c in 0..CALLS {
        let (client, url, acks_tx) = (client.clone(), url.clone(), acks_tx.clone());
        tasks.push(tokio::spawn(async move {
            let call_id = format!("load-{c}");
            for seq in 1.. {
                match try_event(&client, &url, &menu_event(&call_id, seq)).await {
                    Some((status, answer)) if status == 200 => {
                        if acks_tx.send((call_id.clone(), seq, answer)).is_err() {
                            return;
                        }
                    }
                    // Killed, or refused: this call stops here.
                    _ => return,
                }
            }
        }));
    }
    drop(acks_tx);
    let mut acked: std::collections::HashMap<String, (i64, Value)> = std::collections::HashMap::new();
    let mut answered = 0;
    // Every call acknowledged at least once (a call ends after its third silence, so a fast one
    // can deliver all its answers while a slow writer has not answered another's first yet), and
    // half of all the answers there can be: the kill lands while the rest are in flight.
    while acked.len() < CALLS || answered < CALLS * 3 {
        let Some((call, seq, answer)) = acks_rx.recv().await else { break };
        acked.insert(call, (seq, answer));
        answered += 1;
    }
    node.kill_hard();
    for t in tasks {
        t.await.unwrap();
    }
    // Answers that arrived between the last count and the kill are acknowledged too.
    while let Ok((call, seq, answer)) = acks_rx.try_recv() {
        let e = acked.entry(call).or_insert((0, Value::Null));
        if seq > e.0 {
            *e = (seq, answer);
        }
    }
    assert_eq!(acked.len(), CALLS);

    let conn = console::db::Db::connect(&db.url).await.unwrap();
    for (call, (seq, _)) in &acked {
        let (carrier_seq, last_seq, logged, max_seq, answers): (i64, i64, i64, Option<i64>, i64) = sqlx::query_as(
            "SELECT carrier_seq, last_seq, \
             (SELECT COUNT(*) FROM call_events e WHERE e.call_id = c.call_id), \
             (SELECT MAX(seq) FROM call_events e WHERE e.call_id = c.call_id), \
             (SELECT COUNT(*) FROM call_events r WHERE r.call_id = c.call_id AND r.request_key IS NOT NULL) \
             FROM calls c WHERE call_id = $1",
        )
        .bind(call)
        .fetch_one(conn.pool())
        .await
        .unwrap();
        // At least what was acknowledged (an event committed but not yet answered may be there too).
        assert!(carrier_seq >= *seq, "{call}: acknowledged seq {seq}, stored {carrier_seq}");
        assert!(carrier_seq <= seq + 1, "{call}: one request at a time per call");
        assert_eq!(answers, carrier_seq, "{call}: one stored answer per accepted event");
        assert_eq!((logged, max_seq), (last_seq, Some(last_seq)), "{call}: the call log is whole");
    }

    // A new process answers each call's last acknowledged event, retried, exactly as before (but
    // for the prompts' URLs, which name the node that answers).
    let node = ServeProcess::start(db.dir.path(), &db.url);
    for (call, (seq, answer)) in &acked {
        let (status, again) = try_event(&client, &node.url("/voice/events"), &menu_event(call, *seq)).await.unwrap();
        assert_eq!(status, 200, "{call} seq {seq}: {again}");
        assert_eq!(
            again.to_string().replace(&node.url(""), "BASE"),
            answer.to_string().replace(&first_base, "BASE"),
            "{call} seq {seq}: the retry gets the acknowledged answer"
        );
    }
    let (code, _) = node.terminate();
    assert_eq!(code, 0);
}
