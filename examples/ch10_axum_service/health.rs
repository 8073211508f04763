//! Chapter 10's health check: what the routes read, and `/healthz`. The chapter shows this
//! file; `service.rs` puts the routes, the metrics and the shutdown together.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use lab::production::Running;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

// ANCHOR: healthz
/// What the routes read. `subscriber` is `None` once the shutdown has taken it.
pub struct Service {
    pub subscriber: Subscriber,
    /// When the subscription was last seen down; `None` while subscribed.
    pub down_since: Mutex<Option<Instant>>,
    /// How long the subscription may be down before `/healthz` says 503.
    pub unhealthy_after: Duration,
    pub shutdown: CancellationToken,
    pub registry: Registry,
}

pub type Subscriber = Arc<Mutex<Option<Running>>>;

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// 200 while subscribed, and while a reconnection is younger than the threshold; 503 once
/// it is older, and while shutting down.
pub async fn healthz(State(service): State<Arc<Service>>) -> (StatusCode, &'static str) {
    if service.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match *lock(&service.down_since) {
        None => (StatusCode::OK, "subscribed\n"),
        Some(since) if since.elapsed() <= service.unhealthy_after => {
            (StatusCode::OK, "reconnecting\n")
        }
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "subscription down\n"),
    }
}
// ANCHOR_END: healthz
