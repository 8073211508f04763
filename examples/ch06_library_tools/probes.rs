//! What the server says about each subscriber while a fault runs: a thread that samples
//! `PUBSUB NUMSUB` of each design's probe channel.

use super::*;

pub(crate) struct Probes {
    pub(crate) samples: Samples,
    pub(crate) designs: Vec<Design>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
}

impl Probes {
    pub(crate) fn start(url: &str, base: &str, designs: &[Design]) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let names: Vec<String> = designs.iter().map(|d| probe_channel(base, *d)).collect();
        let samples: Samples = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&samples);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        // On a thread and runtime of its own, so that a busy harness does not delay it.
        let thread = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let mut con = None;
                while !stopped.load(Ordering::Relaxed) {
                    let sent_at = Instant::now();
                    if let Some(counts) = sample(&client, &mut con, &names).await {
                        recorded
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((sent_at, counts));
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
        });
        Ok(Self {
            samples,
            designs: designs.to_vec(),
            stop,
            thread: Some(thread),
        })
    }

    /// The first moment at or after `since` when the server counted more than `above`
    /// subscriptions to `design`'s probe.
    pub(crate) fn first_above(
        &self,
        design: Design,
        since: Instant,
        above: u64,
    ) -> Option<Instant> {
        let index = self.designs.iter().position(|d| *d == design)?;
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples
            .iter()
            .find(|(at, counts)| *at >= since && counts[index] > above)
            .map(|(at, _)| *at)
    }

    /// The first moment at or after `since` when `design` was not subscribed at all.
    pub(crate) fn first_zero(&self, design: Design, since: Instant) -> Option<Instant> {
        let index = self.designs.iter().position(|d| *d == design)?;
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples
            .iter()
            .find(|(at, counts)| *at >= since && counts[index] == 0)
            .map(|(at, _)| *at)
    }

    /// Wait until every design is subscribed again (more than `above` subscriptions at or
    /// after `since`), or `limit` passed; how long each took, from `since`.
    pub(crate) async fn wait_resubscribed(
        &self,
        since: Instant,
        above: u64,
        limit: Duration,
    ) -> HashMap<Design, Option<Duration>> {
        loop {
            let found: HashMap<Design, Option<Duration>> = self
                .designs
                .iter()
                .map(|d| (*d, self.first_above(*d, since, above).map(|at| at - since)))
                .collect();
            if found.values().all(Option::is_some) || since.elapsed() > limit {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `PUBSUB NUMSUB` of `names`; `None` when the server does not answer within 100 ms.
pub(crate) async fn sample(
    client: &redis::Client,
    con: &mut Option<redis::aio::MultiplexedConnection>,
    names: &[String],
) -> Option<Vec<u64>> {
    if con.is_none() {
        let connect = client.get_multiplexed_async_connection();
        match tokio::time::timeout(Duration::from_millis(100), connect).await {
            Ok(Ok(connected)) => *con = Some(connected),
            _ => return None,
        }
    }
    let connection = con.as_mut()?;
    let mut numsub = redis::cmd("PUBSUB");
    numsub.arg("NUMSUB").arg(names);
    let query = numsub.query_async::<Vec<(String, u64)>>(connection);
    match tokio::time::timeout(Duration::from_millis(100), query).await {
        Ok(Ok(pairs)) => Some(pairs.into_iter().map(|(_, n)| n).collect()),
        Ok(Err(_)) => {
            *con = None;
            None
        }
        Err(_) => None,
    }
}
