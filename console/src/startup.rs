//! Building and running the server: connect and migrate the database, settle the server key,
//! create the first admin on an empty database, bind the listeners (port 0 allowed), then serve
//! until SIGINT or SIGTERM.
//!
//! This is the one place that knows every feature: it assembles [`AppState`] from the features'
//! own states, and each feature's handlers take only their own (axum's `FromRef`), so no feature
//! imports another's state or this module. [`Application::build`] starts nothing;
//! [`Application::run_until`] starts every background task under one [`Tasks`] and joins them
//! all on shutdown.

use crate::accounts::AccountsState;
use crate::auth::{AuthState, SignInLimiter};
use crate::calls::nodes::{Heartbeat, NodeId};
use crate::calls::{CallRuntime, WriterLimits};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::db::{secrets, users, Db};
use crate::directory::{Directory, DirectoryState};
use crate::health::HealthState;
use crate::media::Phone;
use crate::metrics::Metrics;
use crate::operators::{Console, OperatorsState};
use crate::sip::{SipServer, SipState};
use crate::supervisor::SupervisorState;
use crate::tasks::Tasks;
use crate::voice::PromptsState;
use crate::webhook::WebhookState;
use anyhow::Context;
use axum::extract::{FromRef, Request};
use axum::{middleware, Router};
use ivr::domain::ServerSecret;
use ivr::prompts::{Tts, TtsOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

/// Every handle of the running server, behind one `Arc` (a `State` extractor clones it once per
/// request). Handlers never see it: each takes its feature's state through `FromRef`.
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl std::ops::Deref for AppState {
    type Target = Handles;
    fn deref(&self) -> &Handles {
        &self.0
    }
}

/// What [`AppState`] holds: the shared infrastructure (for tests and start-up) and each
/// feature's state.
pub struct Handles {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub secret: Arc<ServerSecret>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Runs calls for every telephony adapter.
    pub calls: CallRuntime,
    /// This process among the nodes sharing the database (`calls::nodes`).
    pub node: NodeId,
    /// The services directory and its search index.
    pub directory: Directory,
    pub auth: Arc<AuthState>,
    pub accounts: Arc<AccountsState>,
    pub operators: Arc<OperatorsState>,
    pub supervisor: Arc<SupervisorState>,
    pub webhook: Arc<WebhookState>,
    pub directory_api: Arc<DirectoryState>,
    pub prompts: Arc<PromptsState>,
    pub health: Arc<HealthState>,
    pub sip: Arc<SipState>,
    pub callback: Arc<crate::callback::CallbackState>,
    /// The browser phones' media (its thread starts in `run_until`).
    pub phone: Phone,
}

macro_rules! feature_states {
    ($($field:ident: $ty:ty),* $(,)?) => {
        $(impl FromRef<AppState> for Arc<$ty> {
            fn from_ref(app: &AppState) -> Arc<$ty> {
                app.$field.clone()
            }
        })*
    };
}

feature_states! {
    auth: AuthState,
    accounts: AccountsState,
    operators: OperatorsState,
    supervisor: SupervisorState,
    webhook: WebhookState,
    directory_api: DirectoryState,
    prompts: PromptsState,
    health: HealthState,
    sip: SipState,
    callback: crate::callback::CallbackState,
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(app: &AppState) -> Arc<Metrics> {
        app.metrics.clone()
    }
}

/// Every route of the server, with the session middleware, metrics and request tracing.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::pages::routes())
        .merge(crate::health::routes())
        .merge(crate::auth::http::routes())
        .merge(crate::accounts::routes())
        .merge(crate::voice::routes())
        .merge(crate::webhook::routes())
        .merge(crate::directory::routes())
        .merge(crate::supervisor::routes())
        .merge(crate::operators::routes())
        .merge(crate::callback::routes())
        .fallback(crate::error::not_found)
        .layer(middleware::from_fn_with_state(state.auth.clone(), crate::auth::resolve_session))
        .layer(middleware::from_fn(crate::error::json_rejections))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(Duration::from_secs(
            state.settings.http_body_timeout_secs.max(1),
        )))
        .layer(middleware::from_fn_with_state(state.metrics.clone(), crate::metrics::record_http))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = crate::metrics::matched_route(req);
            tracing::info_span!("http", method = %req.method(), route)
        }))
        .with_state(state)
}

/// A built, bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    /// The built-in HTTPS listener's TLS, when `tls_cert` and `tls_key` are set.
    tls: Option<Arc<crate::listener::Tls>>,
    sip: SipServer,
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
        settings.check_for_serve()?;
        let (voice, flow_source) = crate::voice::load(&settings)?;
        tracing::info!(?flow_source, "menus loaded");
        // Parse the municipalities once now rather than on the first call.
        let comuni = ivr::geo::Gazetteer::embedded().comuni().len();
        tracing::debug!(comuni, "gazetteer loaded");
        let db = Db::connect(&settings.database_url).await?;
        db.migrate().await?;
        let (secret, source) = secrets::server_secret(&db, &settings.secret, clock.now()).await?;
        tracing::info!(?source, backend = db.backend().name(), "database ready");
        let first_admin = users::ensure_first_admin(&db, clock.now()).await?;
        let directory = Directory::open(db.clone()).await?;
        let tls = match settings.tls_files()? {
            Some(files) => Some(crate::listener::Tls::load(files)?),
            None => None,
        };
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on HTTP address {}", settings.http_addr))?;
        let sip = SipServer::bind(&settings).await?;
        let metrics = Arc::new(Metrics::new());
        let calls = CallRuntime::new(
            db.clone(),
            voice.flow.clone(),
            Arc::new(directory.clone()),
            metrics.clone(),
            WriterLimits {
                queue: settings.call_queue_limit.max(1),
                deadline: Duration::from_millis(settings.call_deadline_ms.max(1)),
            },
        );
        let candidate_ip =
            settings.webrtc_candidate_ip().map_err(|reason| anyhow::anyhow!("HELPLINE_WEBRTC_PUBLIC_IP: {reason}"))?;
        let phone = Phone::bind(settings.webrtc_addr, candidate_ip, sip.local_addr(), metrics.clone())
            .with_context(|| format!("cannot listen for WebRTC media on UDP {}", settings.webrtc_addr))?
            .with_relay(crate::media::Relay::new(db.clone(), clock.clone(), &settings.database_url))
            .with_journal(crate::media::Journal::new(db.clone(), clock.clone(), metrics.clone()));
        let tts_dir = settings.speech_cache_dir();
        let tts = Arc::new(
            Tts::new(tts_dir.clone(), TtsOptions::default())
                .with_context(|| format!("cannot create the speech cache in {}", tts_dir.display()))?,
        );
        let console_config = crate::operators::config::ConsoleConfig::load(&settings.console_file)?;
        let console = Console::new(db.clone(), console_config, calls.queue_changed());
        console.hub().skip_stored().await?;
        let (settings, secret) = (Arc::new(settings), Arc::new(secret));
        let node = NodeId::generate();
        let trunk = crate::sip::trunk::Trunk::from_settings(&settings)?;
        // A carrier named in the settings is checked at start, so a typo stops `serve` here and not
        // at a caller's first callback or text message.
        let carrier = crate::carrier::Carrier::from_settings(&settings)?;
        let sms_texts = match settings.sms()? {
            Some(sms) => {
                tracing::info!(via = sms.via.as_str(), "the services read back may be sent by text message");
                Some(crate::texts::Texts::new(
                    sms,
                    trunk.clone(),
                    carrier.clone(),
                    settings.public_url.clone(),
                    directory.clone(),
                    voice.catalog.clone(),
                    crate::calls::sealed::NumberSeal::new(&secret),
                    db.clone(),
                    clock.clone(),
                    crate::texts::ReferralText::from_flow(&voice.flow),
                ))
            }
            None => None,
        };
        let texts: Arc<dyn crate::calls::TextSender> = match &sms_texts {
            Some(t) => Arc::new(t.clone()),
            None => Arc::new(crate::calls::NoTexts),
        };
        let callback = Arc::new(
            crate::callback::CallbackState::new(
                db.clone(),
                settings.clone(),
                clock.clone(),
                phone.clone(),
                crate::calls::sealed::NumberSeal::new(&secret),
                trunk.clone(),
                node.clone(),
            )
            .with_carrier(carrier.clone())
            .with_calls_url(crate::carrier::SignedCalls::from_settings(&settings)?),
        );
        let handles = Handles {
            callback,
            auth: Arc::new(AuthState {
                db: db.clone(),
                settings: settings.clone(),
                clock: clock.clone(),
                sign_in_limiter: SignInLimiter::default(),
                verifications: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
                ),
                revoker: Arc::new(console.clone()),
            }),
            accounts: Arc::new(AccountsState {
                db: db.clone(),
                clock: clock.clone(),
                revoker: Arc::new(console.clone()),
            }),
            operators: Arc::new(OperatorsState {
                db: db.clone(),
                settings: settings.clone(),
                clock: clock.clone(),
                console,
                directory: directory.clone(),
                calls: calls.clone(),
                metrics: metrics.clone(),
                phone: phone.clone(),
                recordings: Default::default(),
                interpreters: Default::default(),
                texts: sms_texts,
                trunk: trunk.clone(),
                seal: crate::calls::sealed::NumberSeal::new(&secret),
            }),
            supervisor: Arc::new(SupervisorState {
                db: db.clone(),
                settings: settings.clone(),
                clock: clock.clone(),
                metrics: metrics.clone(),
                wallboard: Default::default(),
                phone: phone.clone(),
            }),
            webhook: Arc::new(WebhookState {
                db: db.clone(),
                settings: settings.clone(),
                secret: secret.clone(),
                clock: clock.clone(),
                calls: calls.clone(),
                voice: voice.clone(),
                tts: tts.clone(),
                carrier: carrier.clone(),
                texts: texts.clone(),
            }),
            directory_api: Arc::new(DirectoryState { directory: directory.clone(), clock: clock.clone() }),
            prompts: Arc::new(PromptsState { voice: voice.clone(), tts: tts.clone() }),
            health: Arc::new(HealthState { db: db.clone(), metrics: metrics.clone() }),
            sip: Arc::new(SipState {
                db: db.clone(),
                settings: settings.clone(),
                secret: secret.clone(),
                metrics: metrics.clone(),
                clock: clock.clone(),
                calls: calls.clone(),
                voice,
                tts,
                phone: phone.clone(),
                node: node.clone(),
                texts: texts.clone(),
            }),
            phone,
            db,
            settings,
            secret,
            metrics,
            clock,
            calls,
            node,
            directory,
        };
        // The recordings other nodes ask this one to make are stored as its own.
        handles.phone.keep_recordings_with(crate::operators::recording::keeper(Arc::downgrade(&handles.operators)));
        // And the outside interpreters they ask it to dial into them or hang up.
        handles.phone.interpreters_with(crate::operators::interpreter::desk(Arc::downgrade(&handles.operators)));
        let app = Application { listener, tls, sip, state: AppState(Arc::new(handles)), first_admin };
        // Registered while the database is known to answer (it just did), before the SIP server
        // takes a call, so every call's node is known alive.
        app.heartbeat()
            .register(app.sip.local_addr(), app.local_addr())
            .await
            .context("cannot register this node in the database")?;
        Ok(app)
    }

    /// This node's heartbeat (`calls::nodes`).
    fn heartbeat(&self) -> Heartbeat {
        let state = &self.state;
        Heartbeat {
            db: state.db.clone(),
            calls: state.calls.clone(),
            clock: state.clock.clone(),
            node: state.node.clone(),
            timeout_ms: i64::try_from(state.settings.node_timeout_secs.max(crate::calls::nodes::MIN_TIMEOUT_SECS))
                .unwrap_or(i64::MAX / 2)
                .saturating_mul(1000),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.state.settings.http_addr)
    }

    /// Where browsers send the phones' media (the ICE candidate; UDP).
    pub fn webrtc_addr(&self) -> SocketAddr {
        self.state.phone.candidate()
    }

    /// Where the SIP user agent listens (UDP).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Starts the background tasks, serves until `shutdown` completes, then finishes the requests
    /// in flight, stops and joins every task (SIP hangs up its calls) and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let heartbeat = self.heartbeat();
        let state = self.state;
        let tasks = Tasks::new();
        state.directory.start_following(&tasks);
        Console::start(&state.operators, &tasks);
        crate::supervisor::retention::start(state.supervisor.clone(), &tasks);
        crate::supervisor::settle::start(state.supervisor.clone(), &tasks);
        crate::supervisor::wallboard::start_feed(state.supervisor.clone(), &tasks);
        crate::calls::quiet::start(state.db.clone(), state.calls.clone(), state.clock.clone(), &tasks);
        heartbeat.clone().start(&tasks);
        state.phone.start(&tasks).context("cannot start the WebRTC media thread")?;
        let stopping = tasks.token();
        let drain = crate::sip::Drain {
            within: Duration::from_secs(state.settings.drain_secs),
            ..crate::sip::Drain::default()
        };
        tasks.spawn("sip", self.sip.run(state.sip.clone(), drain.clone(), async move { stopping.cancelled().await }));
        // On SIGTERM the SIP calls drain first (HTTP keeps serving the operators who take them),
        // then everything stops.
        let shutdown = async move {
            shutdown.await;
            drain.start.cancel();
            drain.done.cancelled().await;
        };

        if let Some(tls) = &self.tls {
            tasks.spawn("tls-reload", tls.clone().reload_on_sighup(tasks.token()));
        }
        let addr = self.listener.local_addr().unwrap_or(state.settings.http_addr);
        // Once, when start-up is over (menus, database, directory index): its peak is what a
        // small server must have room for.
        if let Some(m) = crate::metrics::ProcessMemory::read() {
            tracing::info!(
                peak_bytes = m.peak_bytes,
                resident_bytes = m.resident_bytes,
                peak_mib = m.peak_bytes / (1024 * 1024),
                resident_mib = m.resident_bytes / (1024 * 1024),
                "start-up memory"
            );
        }
        tracing::info!(%addr, tls = self.tls.is_some(), "HTTP server listening");
        let limits = crate::listener::Limits {
            header_timeout: Duration::from_secs(state.settings.http_header_timeout_secs.max(1)),
            max_connections: state.settings.http_max_connections,
        };
        let served = crate::listener::serve(self.listener, router(state.clone()), limits, self.tls, shutdown).await;
        tasks.shutdown().await;
        heartbeat.leave().await;
        state.db.close().await;
        tracing::info!("server stopped");
        Ok(served?)
    }
}

/// Completes on SIGINT (ctrl-c) or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: `serve` calls it before it binds its ports, so a signal sent
/// as soon as the node says it listens is a clean shutdown, not the default action (death).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let next = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = next(interrupt) => tracing::info!("SIGINT received, shutting down"),
                _ = next(terminate) => tracing::info!("SIGTERM received, shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("SIGINT received, shutting down");
    }
}
