//! One lifecycle for the server's background work. [`Tasks`] is a cancellation token and a task
//! tracker, owned by the running `Application`: every background task (the ACD, the directory
//! follower, settling, retention, quiet calls, the wallboard feed, the console hub's pump and
//! listener, SIP) is spawned through it in `run_until` and joined on shutdown. A task stops when
//! the token is cancelled; none polls whether the pool is closed.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The server's background tasks: spawn them here, stop them all with [`Tasks::shutdown`].
#[derive(Clone, Default)]
pub struct Tasks {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Spawns `task`, which must end soon after [`Tasks::stopping`] completes.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tracing::debug!(task = name, "background task started");
        self.tracker.spawn(async move {
            task.await;
            tracing::debug!(task = name, "background task ended");
        });
    }

    /// Spawns `task` and drops it at shutdown, wherever it is (for loops whose every await is a
    /// safe place to stop: a transaction in progress rolls back).
    pub fn spawn_until_stopped<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.spawn(name, async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Runs `job` at once, then every `interval`, until shutdown (a stop during a run drops it:
    /// each periodic job commits in small transactions, and the one in progress rolls back).
    pub fn spawn_every<F, Fut>(&self, name: &'static str, interval: Duration, mut job: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.spawn_until_stopped(name, async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                job().await;
            }
        });
    }

    /// The token a task watches to stop.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Completes when shutdown has begun.
    pub async fn stopping(&self) {
        self.token.cancelled().await
    }

    /// Stops every task and waits until they have all ended.
    pub async fn shutdown(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn shutdown_stops_and_joins_every_task() {
        let tasks = Tasks::new();
        let ended = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let (t, ended) = (tasks.clone(), ended.clone());
            tasks.spawn("waits for the token", async move {
                t.stopping().await;
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
        let (ran, mut first_run) = tokio::sync::mpsc::channel::<()>(8);
        tasks.spawn_every("periodic", Duration::from_millis(1), move || {
            let ran = ran.clone();
            async move {
                let _ = ran.try_send(());
            }
        });
        tasks.spawn_until_stopped("never ends by itself", std::future::pending());
        first_run.recv().await.expect("a periodic job runs at once");
        tasks.shutdown().await;
        assert_eq!(ended.load(Ordering::SeqCst), 3, "every task saw the token before shutdown returned");
    }
}
