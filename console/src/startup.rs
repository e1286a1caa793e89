//! Building and running the server: connect and migrate the database, settle the server key,
//! create the first admin on an empty database, bind the listener (port 0 allowed), serve until
//! SIGINT or SIGTERM.

use crate::calls::CallRuntime;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::db::{secrets, users, Db};
use crate::metrics::Metrics;
use crate::routes;
use crate::state::AppState;
use anyhow::Context;
use ivr::prompts::{Tts, TtsOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A built, bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    /// The SIP user agent's socket (issue 6).
    sip: crate::sip::SipServer,
    state: AppState,
    /// Name and password of the admin created on this start, to be shown once.
    pub first_admin: Option<(String, String)>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Application::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Like [`Application::build`] with a clock of the caller's choosing (tests).
    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let (voice, flow_source) = crate::voice::load(&settings)?;
        tracing::info!(?flow_source, "menus loaded");
        // Parse the municipalities once now rather than on the first call.
        let comuni = ivr::geo::Gazetteer::embedded().comuni().len();
        tracing::debug!(comuni, "gazetteer loaded");
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
        let sip = crate::sip::SipServer::bind(&settings).await?;
        let metrics = Arc::new(Metrics::new());
        let calls = CallRuntime::new(db.clone(), voice.flow.clone(), Arc::new(directory.clone()), metrics.clone());
        let tts_dir = settings.data_dir.join("tts-cache");
        let tts = Tts::new(tts_dir.clone(), TtsOptions::default())
            .with_context(|| format!("cannot create the speech cache in {}", tts_dir.display()))?;
        let console_config = crate::operators::config::ConsoleConfig::load(&settings.console_file)?;
        let console = crate::operators::Console::new(db.clone(), console_config, calls.queue_changed());
        let state = AppState::new(crate::state::Handles {
            db,
            settings: Arc::new(settings),
            secret: Arc::new(secret),
            metrics,
            calls,
            voice,
            tts: Arc::new(tts),
            clock,
            directory,
            sign_in_limiter: Arc::new(crate::auth::SignInLimiter::default()),
            console,
            wallboard: Default::default(),
        });
        crate::operators::Console::start(&state).await?;
        Ok(Application { listener, sip, state, first_admin })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.state.settings.http_addr)
    }

    /// Where the SIP user agent listens (UDP).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let router = routes::router(self.state.clone());
        tracing::info!(addr = %self.local_addr(), "HTTP server listening");
        // SIP stops with the HTTP server: calls in progress get a BYE before the pool closes.
        let (sip_stop, sip_stopped) = tokio::sync::oneshot::channel::<()>();
        let sip = tokio::spawn(self.sip.run(self.state.clone(), async {
            let _ = sip_stopped.await;
        }));
        let (housekeeping_stop, housekeeping_stopped) = tokio::sync::watch::channel(false);
        let retention =
            tokio::spawn(crate::supervisor::retention::run_scheduled(self.state.clone(), housekeeping_stopped.clone()));
        let settle =
            tokio::spawn(crate::supervisor::settle::run_scheduled(self.state.clone(), housekeeping_stopped.clone()));
        let quiet = tokio::spawn(crate::calls::quiet::run_scheduled(self.state.clone(), housekeeping_stopped.clone()));
        let wallboard = tokio::spawn(crate::supervisor::wallboard::run_feed(self.state.clone(), housekeeping_stopped));
        axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await?;
        let _ = housekeeping_stop.send(true);
        let _ = retention.await;
        let _ = settle.await;
        let _ = quiet.await;
        let _ = wallboard.await;
        let _ = sip_stop.send(());
        let _ = sip.await;
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
