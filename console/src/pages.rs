//! The browser pages and their files, embedded in the binary (no build step, no files to deploy):
//! `GET /` → `/console`; `GET /console` (the operator page); `GET /supervisor` (the supervisors'
//! views); `GET /directory` (the directory's editors); `GET /assets/{*path}` (any file under `console/assets/`).
//!
//! Every answer carries an ETag (the file's SHA-256, computed at build time) and
//! `Cache-Control: no-cache`, so browsers revalidate and get `304` until the binary changes.
//! Pages carry a strict Content-Security-Policy: scripts, styles and sockets from this origin only,
//! no inline code.

use crate::error::AppError;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

/// `console/assets/`, embedded at build time (in debug builds too: feature `debug-embed`).
#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The policy every page is served with.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(|headers: HeaderMap| async move { page("console.html", &headers) }))
        .route("/supervisor", get(|headers: HeaderMap| async move { page("supervisor.html", &headers) }))
        .route("/directory", get(|headers: HeaderMap| async move { page("directory.html", &headers) }))
        .route("/assets/{*path}", get(asset))
}

fn page(name: &str, headers: &HeaderMap) -> Result<Response, AppError> {
    serve(name, headers).ok_or_else(|| AppError::NotFound(format!("no page {name} in this build")))
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Result<Response, AppError> {
    serve(&path, &headers).ok_or_else(|| AppError::NotFound(format!("no asset {path}")))
}

/// The embedded file at `path` with its headers, `304` when the browser's copy is current, or
/// `None` when there is no such file.
fn serve(path: &str, headers: &HeaderMap) -> Option<Response> {
    let file = Assets::get(path)?;
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let content_type = content_type(path);
    let mut response =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { file.data.into_owned().into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if content_type.starts_with("text/html") {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    Some(response)
}

/// The media type of an asset, by its extension.
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("console.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a/b/STYLE.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("console.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("no-extension"), "application/octet-stream");
    }
}
