//! The supervisor: subscribe, watch the connection (PING), reconnect and resubscribe, and
//! shut down cleanly.

use super::*;

/// How one connection ended.
pub(super) enum Ended {
    /// Shutdown was asked for; the connection is still up.
    Shutdown(Connection),
    /// The connection was lost, or overflowed.
    Lost(Lost),
    /// A PING went unanswered.
    Unresponsive,
}

/// Watches connections, reconnects, and shuts down. The messages themselves never pass
/// through it: they go from the connection's push sender straight into the queues.
pub(super) struct Supervisor {
    pub(super) config: Config,
    pub(super) client: redis::Client,
    pub(super) queues: Queues,
    pub(super) shared: Arc<Shared>,
    pub(super) intake: Arc<Mutex<Intake>>,
    pub(super) lost_connection_at: Option<Instant>,
}

impl Supervisor {
    // ANCHOR: reconnect
    /// Watch connection after connection until shutdown; then drain and report.
    pub(super) async fn run(
        mut self,
        first: Connection,
        mut stop: watch::Receiver<bool>,
        workers: Vec<JoinHandle<()>>,
    ) -> Result<Report> {
        let mut connection = first;
        let result = loop {
            let ended = self.watch(connection, &mut stop).await;
            let reason = match ended {
                Ended::Shutdown(connection) => break self.unsubscribe(connection).await,
                Ended::Lost(Lost::Closed) => {
                    "the connection closed (server restarted, killed us, or the output buffer \
                     limit was hit)"
                }
                Ended::Lost(Lost::Overflow) => {
                    "a worker queue is full and the policy is disconnect"
                }
                Ended::Unresponsive => "PING unanswered: the server stopped responding",
            };
            self.shared.subscribed.store(false, Ordering::Relaxed);
            self.lost_connection_at = Some(Instant::now());
            self.config.event(Event::Disconnected {
                reason: reason.to_string(),
            });
            if matches!(ended, Ended::Lost(Lost::Overflow)) {
                // Reconnecting at once would overflow again: let the workers catch up first.
                self.wait_for_empty_queues(&mut stop).await;
            }
            match connect_with_backoff(&self.client, &self.config, &self.intake, &mut stop).await {
                Ok(Some(next)) => {
                    self.shared.reader.reconnects.add(1);
                    self.shared.subscribed.store(true, Ordering::Relaxed);
                    self.config.event(Event::Subscribed {
                        reconnects: self.shared.reader.reconnects.get(),
                        channels: self.config.channels.len(),
                        patterns: self.config.patterns.len(),
                    });
                    // Numbered publishers show the loss as a gap (their next message or
                    // heartbeat); anything unnumbered cannot be counted.
                    if !self.config.numbered || lock(&self.intake).saw_unnumbered {
                        self.shared.reader.unknown_gaps.add(1);
                        let down_for = self.lost_connection_at.map(|at| at.elapsed());
                        self.config.event(Event::UnknownGap {
                            down_for: down_for.unwrap_or_default(),
                        });
                    }
                    connection = next;
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        self.shared.subscribed.store(false, Ordering::Relaxed);
        // No more pushes: each worker handles what is queued, then stops.
        for queue in self.queues.iter() {
            queue.close();
        }
        let deadline = tokio::time::sleep(self.config.drain_deadline);
        tokio::pin!(deadline);
        for mut worker in workers {
            tokio::select! {
                _ = &mut worker => {}
                () = &mut deadline => worker.abort(),
            }
        }
        // Whatever entered a queue and was neither handled nor dropped was abandoned.
        let report = snapshot(&self.shared, &self.queues);
        let queued: u64 = self
            .queues
            .iter()
            .map(|q| {
                let stats = q.stats();
                stats.queued - stats.dropped_oldest
            })
            .sum();
        let handled = report.processed + report.timed_out + report.bad_payload + report.failed;
        self.shared.abandoned.add(queued.saturating_sub(handled));
        result.map(|()| snapshot(&self.shared, &self.queues))
    }
    // ANCHOR_END: reconnect

    // ANCHOR: read
    /// Watch one connection until it is lost, shutdown is asked for, or a PING goes
    /// unanswered. (Its messages flow meanwhile, through the push sender.)
    pub(super) async fn watch(
        &mut self,
        mut connection: Connection,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        let ended = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => None,
            lost = connection.watch.lost() => Some(Ended::Lost(lost)),
            () = ping_until_unanswered(
                connection.con.clone(),
                self.config.ping_every,
                self.config.ping_timeout,
            ) => Some(Ended::Unresponsive),
        };
        match ended {
            None => Ended::Shutdown(connection),
            Some(ended) => {
                connection.watch.close();
                ended
            }
        }
    }
    // ANCHOR_END: read

    // ANCHOR: shutdown
    /// Shutdown: unsubscribe. Every message that arrived before Redis confirmed has passed
    /// through the push sender into a queue by then; the workers drain them.
    pub(super) async fn unsubscribe(&mut self, mut connection: Connection) -> Result<()> {
        let unsubscribe = async {
            if !self.config.channels.is_empty() {
                connection.con.unsubscribe(&self.config.channels).await?;
            }
            if !self.config.patterns.is_empty() {
                connection.con.punsubscribe(&self.config.patterns).await?;
            }
            Ok::<_, redis::RedisError>(())
        };
        // A server that does not answer must not hold the shutdown up: what already arrived
        // is queued either way.
        let _ = tokio::time::timeout(Duration::from_secs(1), unsubscribe).await;
        connection.watch.close();
        Ok(())
    }
    // ANCHOR_END: shutdown

    pub(super) async fn wait_for_empty_queues(&self, stop: &mut watch::Receiver<bool>) {
        while self.queues.iter().any(|q| !q.is_empty()) && !*stop.borrow() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// PING every `every`; returns when one is not answered within `timeout`.
pub(super) async fn ping_until_unanswered(
    mut con: MultiplexedConnection,
    every: Duration,
    timeout: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let ping = redis::cmd("PING");
        let pong = tokio::time::timeout(timeout, ping.query_async::<redis::Value>(&mut con));
        if !matches!(pong.await, Ok(Ok(_))) {
            return;
        }
    }
}
