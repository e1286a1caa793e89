//! Logging with `tracing`: pretty on a terminal, JSON lines when `HELPLINE_LOG_FORMAT=json` (or when
//! `auto` and standard error is not a terminal). The filter comes from `RUST_LOG`; without it, our
//! own crates log at `info` and dependencies only at `warn` ([`DEFAULT_FILTER`]), so a first
//! `helpline serve` is not buried under the search index's or the database driver's chatter.

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// The filter when `RUST_LOG` is unset (or unreadable): `info` for the helpline's crates, `warn`
/// for everything else.
pub const DEFAULT_FILTER: &str = "warn,console=info,ivr=info,helpline=info";

/// `RUST_LOG`'s filter, or [`DEFAULT_FILTER`].
pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    rust_log.and_then(|s| EnvFilter::try_new(s).ok()).unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER))
}

/// Installs the global subscriber once; later calls are no-ops (tests start many servers).
pub fn init(format: LogFormat) {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok().filter(|s| !s.trim().is_empty());
    let filter = filter(rust_log.as_deref());
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry.with(fmt::layer().json().with_writer(std::io::stderr).with_current_span(true)).try_init()
    } else {
        registry.with(fmt::layer().with_writer(std::io::stderr)).try_init()
    };
    // Already installed (a second server in one test process): keep the first.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The log lines written through `filter` while `emit` runs.
    fn logged(rust_log: Option<&str>, emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(filter(rust_log))
            .with(fmt::layer().with_ansi(false).with_writer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn emit_all() {
        tracing::info!(target: "tantivy::directory::managed_directory", "Deleted \"x.store\"");
        tracing::warn!(target: "tantivy::indexer", "a dependency's warning");
        tracing::info!(target: "sqlx::query", "a statement");
        tracing::info!(target: "console::startup", "HTTP server listening");
        tracing::info!(target: "ivr::prompts", "prompts loaded");
        tracing::debug!(target: "console::startup", "a detail");
    }

    #[test]
    fn by_default_our_crates_log_at_info_and_dependencies_at_warn() {
        let out = logged(None, emit_all);
        assert!(out.contains("HTTP server listening") && out.contains("prompts loaded"), "{out}");
        assert!(out.contains("a dependency's warning"), "{out}");
        assert!(!out.contains("Deleted") && !out.contains("a statement"), "dependencies' info is kept out: {out}");
        assert!(!out.contains("a detail"), "{out}");
    }

    #[test]
    fn rust_log_replaces_the_default() {
        let out = logged(Some("debug"), emit_all);
        assert!(out.contains("Deleted") && out.contains("a detail"), "{out}");
        let out = logged(Some("warn"), emit_all);
        assert!(!out.contains("HTTP server listening") && out.contains("a dependency's warning"), "{out}");
    }
}
