//! Building and running the server: connect and migrate the database, settle the server key,
//! create the first admin on an empty database, bind the listener (port 0 allowed), serve until
//! SIGINT or SIGTERM.

use crate::config::Settings;
use crate::db::{secrets, users, Db};
use crate::metrics::Metrics;
use crate::routes;
use crate::state::AppState;
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A built, bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Name and password of the admin created on this start, to be shown once.
    pub first_admin: Option<(String, String)>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = Db::connect(&settings.database_url).await?;
        db.migrate().await?;
        let (secret, source) = secrets::server_secret(&db, &settings.secret).await?;
        tracing::info!(?source, backend = db.backend().name(), "database ready");
        let first_admin = users::ensure_first_admin(&db).await?;
        let directory = crate::directory::Directory::open(db.clone()).await?;
        directory.spawn_watcher();
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on HTTP address {}", settings.http_addr))?;
        let state = AppState {
            db,
            settings: Arc::new(settings),
            secret: Arc::new(secret),
            metrics: Arc::new(Metrics::new()),
            directory,
        };
        Ok(Application { listener, state, first_admin })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.state.settings.http_addr)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let router = routes::router(self.state.clone());
        tracing::info!(addr = %self.local_addr(), "HTTP server listening");
        axum::serve(self.listener, router).with_graceful_shutdown(shutdown).await?;
        self.state.db.close().await;
        tracing::info!("server stopped");
        Ok(())
    }
}

/// Completes on SIGINT (ctrl-c) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
