//! PostgreSQL's LISTEN, for ever: a connection of its own (the app's pool is an `AnyPool`),
//! reconnecting a second after a failure. Whoever listens is told each time listening
//! (re)starts, so that it catches up on what was written while it was not listening, and gets
//! each notification's payload.

/// What a listener hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    /// Listening (again): anything may have been written meanwhile.
    Listening,
    /// A notification, with its payload.
    Payload(&'a str),
}

/// Listens on `channel` until the task is dropped.
pub async fn listen(url: String, channel: &'static str, mut on: impl FnMut(Heard<'_>) + Send) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen(channel).await {
                Err(e) => tracing::warn!(error = %e, "LISTEN {channel} failed"),
                Ok(()) => {
                    on(Heard::Listening);
                    loop {
                        match listener.recv().await {
                            Ok(n) => on(Heard::Payload(n.payload())),
                            Err(e) => {
                                tracing::warn!(error = %e, "the listener on {channel} lost its connection");
                                break;
                            }
                        }
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "the listener on {channel} cannot connect"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
