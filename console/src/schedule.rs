//! Background jobs of `serve` on a fixed period (retention, settling the KPIs, ending quiet calls,
//! the wallboards' snapshot).

use std::future::Future;
use std::time::Duration;

/// Runs `job` at once, then every `interval`, until `stop` fires (a stop during a run drops it:
/// each job here commits in small transactions, and the one in progress rolls back).
pub async fn run_every<F, Fut>(interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        tokio::select! {
            _ = job() => {}
            _ = stop.changed() => return,
        }
    }
}
