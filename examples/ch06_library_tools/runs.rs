//! Each design's run on its own thread: `lab::production`, and the library tools with a
//! broadcast channel or a bounded queue.

use super::*;

pub(crate) type Ready = std::sync::mpsc::Sender<Result<()>>;
pub(crate) type Stop = tokio::sync::oneshot::Receiver<()>;

pub(crate) async fn run_production(
    setup: Setup,
    shared: Shared,
    ready: Ready,
    stop: Stop,
) -> Result<Outcome> {
    let mut config = Config::new(&setup.url, subscriptions(&setup, Design::Production));
    config.numbered = setup.numbered;
    config.first_seq = setup.numbered.then_some(0);
    config.workers = 2;
    config.queue_capacity = setup.capacity;
    config.overflow = Overflow::DropOldest;
    config.ping_every = Duration::from_secs(1);
    config.ping_timeout = Duration::from_secs(5);
    config.handler_timeout = Duration::from_millis(100);
    config.drain_deadline = setup.drain;
    config.max_payload = setup.max_payload;
    let events = Arc::clone(&shared);
    config.on_event = Some(Arc::new(move |event: &Event| {
        let mut observed = lock(&events);
        match event {
            Event::Subscribed { reconnects, .. } if *reconnects > 0 => {
                observed.told_resubscribed += 1
            }
            Event::Disconnected { .. } => observed.told_disconnected += 1,
            _ => {}
        }
        observed.told(event.to_string());
    }));
    let (misbehave, numbered) = (setup.misbehave, setup.numbered);
    let handler_shared = Arc::clone(&shared);
    let handler = move |msg: Msg| handle(Arc::clone(&handler_shared), misbehave, numbered, msg);
    let running = match lab::production::start(config, handler).await {
        Ok(running) => running,
        Err(error) => {
            let _ = ready.send(Err(anyhow!("{error:#}")));
            return Err(error);
        }
    };
    let rss_idle_mb = lab::mem::rss_mb().unwrap_or(0.0);
    let _ = ready.send(Ok(()));
    let _ = stop.await;
    let report = running.shutdown().await?;
    lock(&shared).told(format!("final: {report}"));
    Ok(Outcome {
        noticed: report.noticed(),
        missing: report.missing,
        dropped: report.dropped,
        abandoned: report.abandoned,
        unknown_gaps: report.unknown_gaps,
        heartbeats: report.heartbeats,
        oversized: report.oversized,
        reached: report.received - report.bad_payload - report.oversized,
        reconnects: Some(report.reconnects),
        rss_idle_mb,
        ..Outcome::default()
    })
}

// ANCHOR: broadcast_run
pub(crate) async fn run_broadcast(
    design: Design,
    setup: Setup,
    shared: Shared,
    ready: Ready,
    stop: Stop,
) -> Result<Outcome> {
    let channels = subscriptions(&setup, design);
    let config = match design {
        Design::ManagerTuned => tools::retry_forever(),
        _ => redis::aio::ConnectionManagerConfig::new(),
    };
    let (mut manager, receiver) =
        match tools::with_broadcast(&setup.url, &channels, setup.capacity, config).await {
            Ok(subscribed) => subscribed,
            Err(error) => {
                let _ = ready.send(Err(anyhow!("{error:#}")));
                return Err(error);
            }
        };
    let rss_idle_mb = lab::mem::rss_mb().unwrap_or(0.0);
    let told = Arc::new(Told::default());
    let gaps = Arc::new(Mutex::new(Gaps::default()));
    // After the drain deadline, messages are counted as abandoned instead of handled.
    let counting_only = Arc::new(AtomicBool::new(false));
    let abandoned = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (told, gaps, shared) = (Arc::clone(&told), Arc::clone(&gaps), Arc::clone(&shared));
        let (counting_only, abandoned) = (Arc::clone(&counting_only), Arc::clone(&abandoned));
        let (misbehave, numbered) = (setup.misbehave, setup.numbered);
        tokio::spawn(async move {
            tools::receive(receiver, &told, |msg| {
                let for_handler = lock(&gaps).observe(&msg, numbered);
                let shared = Arc::clone(&shared);
                let (counting_only, abandoned) =
                    (Arc::clone(&counting_only), Arc::clone(&abandoned));
                async move {
                    if for_handler {
                        if counting_only.load(Ordering::Relaxed) {
                            abandoned.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let _ = handle(shared, misbehave, numbered, msg).await;
                        }
                    }
                    true
                }
            })
            .await;
        })
    };
    let pinger = (design == Design::ManagerTuned).then(|| {
        let (manager, told) = (manager.clone(), Arc::clone(&told));
        tokio::spawn(tools::ping_every(manager, Duration::from_secs(1), told))
    });
    let _ = ready.send(Ok(()));
    let _ = stop.await;
    if let Some(pinger) = pinger {
        pinger.abort();
    }
    // What the application was told until now (a command at shutdown can revive a manager
    // that gave up: that is not the fault's doing).
    mirror_told(&told, &shared);
    // Shutdown: unsubscribe; everything before Redis's confirmations reaches the receiver
    // first. Handle until the deadline, then only count, until the confirmations are read.
    let _ = tokio::time::timeout(Duration::from_secs(1), manager.unsubscribe(&channels)).await;
    let confirmed = || Told::get(&told.unsubscribed) >= channels.len() as u64;
    let deadline = Instant::now() + setup.drain;
    while !confirmed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    counting_only.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(1);
    while !confirmed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    consumer.abort();
    drop(manager);
    let gaps = lock(&gaps);
    let lagged = Told::get(&told.lagged);
    let abandoned = abandoned.load(Ordering::Relaxed);
    let missing = gaps.sum(|s| s.missing);
    Ok(Outcome {
        // Numbered: a lagged message is a sequence gap, counted once. Unnumbered: only
        // `Lagged(n)` says how many (pushes of any kind, so about that many messages).
        noticed: if setup.numbered { missing } else { lagged } + abandoned,
        missing,
        lagged,
        abandoned,
        unknown_gaps: gaps.sum(|s| s.unknown_gaps),
        heartbeats: gaps.sum(|s| s.heartbeats),
        reached: gaps.reached_bare(),
        pings_failed: Told::get(&told.pings_failed),
        rss_idle_mb,
        ..Outcome::default()
    })
}
// ANCHOR_END: broadcast_run

/// Copy what the application was told into the harness's timeline (once).
pub(crate) fn mirror_told(told: &Told, shared: &Shared) {
    let log = lock(&told.log);
    let mut observed = lock(shared);
    observed.events.extend(log.iter().cloned());
    observed.told_disconnected = Told::get(&told.disconnections);
    observed.told_resubscribed = Told::get(&told.resubscriptions);
}

/// What the queue variant's push sender counts, in redis-rs's read loop.
#[derive(Default)]
pub(crate) struct Intake {
    pub(crate) gaps: Gaps,
    /// Messages that reached the push sender.
    pub(crate) reached: u64,
    /// Messages that arrived after the queue was closed (shutdown).
    pub(crate) late: u64,
    pub(crate) last_at: Option<Instant>,
}

pub(crate) async fn run_queue(
    setup: Setup,
    shared: Shared,
    ready: Ready,
    stop: Stop,
) -> Result<Outcome> {
    let channels = subscriptions(&setup, Design::ManagerQueue);
    let numbered = setup.numbered;
    let (queue, mut received) = bounded(setup.capacity, Overflow::DropOldest);
    let intake = Arc::new(Mutex::new(Intake::default()));
    let accept = {
        let (intake, queue) = (Arc::clone(&intake), queue.clone());
        move |msg: Msg| {
            let mut intake = lock(&intake);
            intake.last_at = Some(Instant::now());
            if !intake.gaps.observe(&msg, numbered) {
                return true;
            }
            intake.reached += 1;
            if let Pushed::Closed(_) = queue.push(msg) {
                intake.late += 1;
            }
            true
        }
    };
    let (mut manager, mut watch) = match tools::with_queue(&setup.url, &channels, accept).await {
        Ok(subscribed) => subscribed,
        Err(error) => {
            let _ = ready.send(Err(anyhow!("{error:#}")));
            return Err(error);
        }
    };
    let rss_idle_mb = lab::mem::rss_mb().unwrap_or(0.0);
    // What the application is told: `to_queue`'s watch fires on the first disconnection only.
    let watcher = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let why = watch.lost().await;
            let mut observed = lock(&shared);
            observed.told_disconnected += 1;
            observed.told(format!("push sender: connection lost ({why:?})"));
        })
    };
    let taken = Arc::new(AtomicU64::new(0));
    let worker = {
        let (shared, taken) = (Arc::clone(&shared), Arc::clone(&taken));
        let misbehave = setup.misbehave;
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(64);
            while received.recv_many(&mut batch, 64).await > 0 {
                for msg in batch.drain(..) {
                    let _ = handle(Arc::clone(&shared), misbehave, numbered, msg).await;
                    taken.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let _ = ready.send(Ok(()));
    let _ = stop.await;
    // Shutdown: unsubscribe, let what the manager still forwards arrive (its confirmations
    // are not shown to `to_queue`'s function: wait until nothing came for 100 ms), close the
    // queue, let the worker drain within the deadline.
    let _ = tokio::time::timeout(Duration::from_secs(1), manager.unsubscribe(&channels)).await;
    let quiet_since = Instant::now();
    loop {
        let last = lock(&intake)
            .last_at
            .unwrap_or(quiet_since)
            .max(quiet_since);
        if last.elapsed() > Duration::from_millis(100) || quiet_since.elapsed().as_secs() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    queue.close();
    let mut worker = worker;
    if tokio::time::timeout(setup.drain, &mut worker)
        .await
        .is_err()
    {
        worker.abort();
    }
    watcher.abort();
    drop(manager);
    let stats = queue.stats();
    let intake = lock(&intake);
    let queued = stats.queued - stats.dropped_oldest;
    let abandoned = queued.saturating_sub(taken.load(Ordering::Relaxed)) + intake.late;
    let missing = intake.gaps.sum(|s| s.missing);
    Ok(Outcome {
        noticed: missing + stats.dropped() + abandoned,
        missing,
        dropped: stats.dropped(),
        abandoned,
        unknown_gaps: intake.gaps.sum(|s| s.unknown_gaps),
        heartbeats: intake.gaps.sum(|s| s.heartbeats),
        reached: intake.reached,
        rss_idle_mb,
        ..Outcome::default()
    })
}
