//! `/healthz`, `/readyz`, `/metrics` and the JSON 404.

use crate::helpers::spawn_app;
use serde_json::Value;

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");

    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let expected = if app.db.is_postgres() { "postgres" } else { "sqlite" };
    assert_eq!(body["database"], expected);

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert!(text.contains(r#"helpline_http_requests_total{method="GET",route="/healthz",status="200"} 1"#), "{text}");
    assert!(text.contains("helpline_build_info"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/no/such/thing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(body["message"].as_str().unwrap().contains("/no/such/thing"));
    app.stop().await;
}

#[tokio::test]
async fn readyz_reports_a_database_that_went_away() {
    let app = spawn_app().await;
    app.state.db.close().await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    assert!(body["message"].as_str().unwrap().contains("database"), "{body}");
    // /healthz is about the process, not the database.
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

/// A stranger's made-up methods are one `other` label, not a time series each.
#[tokio::test]
async fn unknown_methods_are_counted_as_other() {
    let app = spawn_app().await;
    for name in ["SCAN1", "SCAN2", "SCAN3"] {
        let method = reqwest::Method::from_bytes(name.as_bytes()).unwrap();
        let r = app.client.request(method, app.url("/healthz")).send().await.unwrap();
        assert!(r.status().is_client_error(), "{name}: {}", r.status());
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("SCAN"), "made-up methods became labels");
    let others: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("helpline_http_requests_total{") && l.contains("method=\"other\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(others, 3.0, "{metrics}");
}

/// The value of an unlabelled sample in a text exposition.
fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{exposition}"))
}

#[tokio::test]
async fn serve_reports_its_resident_memory_and_logs_the_start_up_peak() {
    let db = crate::helpers::fresh_database().await;
    // The real binary: its own allocator, its own demo directory (8,000 services) indexed at start.
    let mut cmd = crate::helpers::helpline(db.dir.path());
    cmd.env_remove("MIMALLOC_ARENA_EAGER_COMMIT").env_remove("MIMALLOC_PURGE_DELAY");
    let mut node = crate::helpers::ServeProcess::start_command(cmd, &db.url);
    let logged = node.wait_for_log("start-up memory", std::time::Duration::from_secs(5));
    let peak = logged["fields"]["peak_bytes"].as_f64().expect("peak_bytes");
    let at_start = logged["fields"]["resident_bytes"].as_f64().expect("resident_bytes");
    const MIB: f64 = 1024.0 * 1024.0;
    assert!(at_start >= 4.0 * MIB && peak >= at_start, "start-up: resident {at_start}, peak {peak}");

    let client = reqwest::Client::new();
    let text = client.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let resident = sample(&text, "helpline_process_resident_memory_bytes");
    let scraped_peak = sample(&text, "helpline_process_resident_memory_peak_bytes");
    // What the kernel says about the same process, read after the scrape: the gauge is the
    // process's own figure, not a constant (within 64 MiB of a moment later; well below 4 GiB).
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    let kernel = console::metrics::ProcessMemory::parse(&status).expect("VmRSS and VmHWM");
    assert!((4.0 * MIB..4096.0 * MIB).contains(&resident), "resident {resident}");
    assert!((resident - kernel.resident_bytes as f64).abs() < 64.0 * MIB, "gauge {resident}, kernel {kernel:?}");
    assert!(scraped_peak >= peak && scraped_peak >= resident, "peak {scraped_peak} < start-up {peak} or resident");
    assert!(scraped_peak <= kernel.peak_bytes as f64, "peak {scraped_peak}, kernel {kernel:?}");
    // Started again in place with the allocator's settings for a small server (`main.rs`).
    assert_eq!(allocator_settings(node.child.id()), ["MIMALLOC_ARENA_EAGER_COMMIT=0", "MIMALLOC_PURGE_DELAY=0"]);
    let (code, _) = node.terminate();
    assert_eq!(code, 0);
}

/// The `MIMALLOC_` variables of a running process, sorted.
fn allocator_settings(pid: u32) -> Vec<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let mut vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .filter(|v| v.starts_with("MIMALLOC_"))
        .collect();
    vars.sort();
    vars
}

#[tokio::test]
async fn a_deployers_allocator_setting_is_kept_as_given() {
    let db = crate::helpers::fresh_database().await;
    let mut cmd = crate::helpers::helpline(db.dir.path());
    cmd.env("MIMALLOC_PURGE_DELAY", "250");
    let node = crate::helpers::ServeProcess::start_command(cmd, &db.url);
    assert_eq!(allocator_settings(node.child.id()), ["MIMALLOC_PURGE_DELAY=250"]);
    let (code, _) = node.terminate();
    assert_eq!(code, 0);
}
