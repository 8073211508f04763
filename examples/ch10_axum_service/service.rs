//! Chapter 10's service: `lab::production`'s subscriber beside an axum HTTP server, one
//! shutdown for both: the subscription watcher, the metrics and the life cycle. The chapter
//! shows `health.rs` and describes this file; `main.rs` is the command line and the demo.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};

use crate::health::{Service, Subscriber, healthz, lock};
use axum::routing::get;
use lab::production::{self, Config, Rejected, Report, Running};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The exit code when the drain deadline passed with messages still queued (`abandoned`).
pub const EXIT_ABANDONED: i32 = 3;

/// Every 100 ms: note when the subscription goes down and comes back, and stop the
/// service if the subscriber stopped by itself (it gave up reconnecting).
async fn watch_subscription(service: Arc<Service>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while service
        .shutdown
        .run_until_cancelled(tick.tick())
        .await
        .is_some()
    {
        let (subscribed, finished) = match lock(&service.subscriber).as_ref() {
            Some(running) => (running.is_subscribed(), running.is_finished()),
            None => (false, true),
        };
        if finished {
            tracing::error!("the subscriber stopped by itself: shutting down");
            service.shutdown.cancel();
        }
        let mut down_since = lock(&service.down_since);
        match (subscribed, *down_since) {
            (true, Some(since)) => {
                tracing::info!(
                    down_ms = since.elapsed().as_millis() as u64,
                    "subscribed again"
                );
                *down_since = None;
            }
            (false, None) => {
                tracing::warn!("subscription down");
                *down_since = Some(Instant::now());
            }
            _ => {}
        }
    }
}

/// The subscriber's counters, read from a fresh snapshot at every scrape.
struct Counters(Subscriber);

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

impl Collector for Counters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(report) = lock(&self.0).as_ref().map(Running::snapshot) else {
            return Ok(());
        };
        let counters = [
            (
                "pubsub_received",
                "Messages read from the connection",
                report.received,
            ),
            (
                "pubsub_processed",
                "Messages handled successfully",
                report.processed,
            ),
            (
                "pubsub_dropped",
                "Dropped by a full queue's policy",
                report.dropped,
            ),
            (
                "pubsub_failed",
                "Handler failed, timed out or panicked",
                report.failed + report.timed_out,
            ),
            (
                "pubsub_abandoned",
                "Queued but not handled at the drain deadline",
                report.abandoned,
            ),
            ("pubsub_gaps", "Sequence gaps seen", report.gaps),
            (
                "pubsub_missing",
                "Messages inside the sequence gaps",
                report.missing,
            ),
            (
                "pubsub_unknown_gaps",
                "Losses that cannot be counted",
                report.unknown_gaps,
            ),
            (
                "pubsub_reconnects",
                "Connections lost and re-established",
                report.reconnects,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let max_queue = ConstGauge::new(report.max_queue as i64);
        let metric = encoder.encode_descriptor(
            "pubsub_max_queue",
            "The longest any worker queue has been",
            None,
            max_queue.metric_type(),
        )?;
        max_queue.encode(metric)
    }
}

async fn metrics(
    State(service): State<Arc<Service>>,
) -> Result<impl axum::response::IntoResponse, StatusCode> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &service.registry)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, content_type)], text))
}

/// Subscribe, serve `/healthz` and `/metrics` on `listener` until `shutdown` is cancelled,
/// then stop accepting requests, unsubscribe and drain; the final counters.
pub async fn run<H, Fut>(
    config: Config,
    handler: H,
    listener: TcpListener,
    unhealthy_after: Duration,
    shutdown: CancellationToken,
) -> Result<Report>
where
    H: FnMut(redis::Msg) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), Rejected>> + Send + 'static,
{
    let running = production::start(config, handler).await?;
    let subscriber: Subscriber = Arc::new(Mutex::new(Some(running)));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Counters(Arc::clone(&subscriber))));
    let service = Arc::new(Service {
        subscriber: Arc::clone(&subscriber),
        down_since: Mutex::new(None),
        unhealthy_after,
        shutdown: shutdown.clone(),
        registry,
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Arc::clone(&service));

    let tasks = TaskTracker::new();
    tasks.spawn(watch_subscription(service));
    let http =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tasks.spawn(async move {
        if let Err(error) = http.await {
            tracing::error!(%error, "HTTP server failed");
        }
    });
    tasks.close();

    shutdown.cancelled().await;
    tracing::info!("shutting down: no new requests; unsubscribe and drain");
    tasks.wait().await; // the HTTP server finished its requests, the watcher stopped
    let running = lock(&subscriber)
        .take()
        .context("the subscriber was already taken")?;
    let report = running.shutdown().await?;
    tracing::info!(%report, "final counters");
    Ok(report)
}
