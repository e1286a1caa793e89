//! The embedded pages and assets: redirects, content types, ETags, security headers.

use crate::helpers::{repo_path, spawn_app};
use serde_json::Value;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

#[tokio::test]
async fn the_root_redirects_to_the_console() {
    let app = spawn_app().await;
    let r = no_redirects().get(app.url("/")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/console");
    app.stop().await;
}

#[tokio::test]
async fn the_console_page_is_served_with_a_strict_policy() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/console")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in
        ["default-src 'self'", "connect-src 'self'", "img-src 'self' data:", "style-src 'self'", "script-src 'self'"]
    {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let body = r.text().await.unwrap();
    let on_disk = std::fs::read_to_string(repo_path("console/assets/console.html")).unwrap();
    assert_eq!(body, on_disk, "the binary serves the file it embedded");
    app.stop().await;
}

#[tokio::test]
async fn assets_carry_their_type_and_an_etag_that_revalidates() {
    let app = spawn_app().await;
    for (path, ty) in [
        ("/assets/console.js", "text/javascript; charset=utf-8"),
        ("/assets/i18n.js", "text/javascript; charset=utf-8"),
        ("/assets/console.css", "text/css; charset=utf-8"),
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], ty, "{path}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers()["cache-control"], "no-cache", "{path}");
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34, "{etag}");
        let body = r.bytes().await.unwrap();
        assert!(!body.is_empty(), "{path}");

        let again = app.client.get(app.url(path)).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
        assert!(again.bytes().await.unwrap().is_empty());

        let stale = app.client.get(app.url(path)).header("if-none-match", "\"0000\"").send().await.unwrap();
        assert_eq!(stale.status(), 200, "{path}: a stale ETag gets the file");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_assets_and_escapes_get_json_404s() {
    let app = spawn_app().await;
    for path in ["/assets/nope.js", "/assets/%2e%2e/Cargo.toml", "/assets/..%2fsrc%2fmain.rs", "/assets/"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_supervisor_page_is_served_when_the_build_has_it() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/supervisor")).send().await.unwrap();
    if repo_path("console/assets/supervisor.html").exists() {
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    } else {
        assert_eq!(r.status(), 404);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_found");
    }
    app.stop().await;
}
