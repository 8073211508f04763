//! Unit tests of `lab::overflow` (the bounded queue and its overflow policies), in a file of
//! their own so that `lab/overflow.rs` holds the code chapter 5 shows and little else.

use super::*;
use std::time::Duration;

fn drain<T>(rx: &mut QueueReceiver<T>) -> Vec<T> {
    std::iter::from_fn(|| rx.try_recv()).collect()
}

#[test]
fn drop_oldest_keeps_the_newest() {
    let (tx, mut rx) = bounded(3, Overflow::DropOldest);
    let mut evicted = Vec::new();
    for i in 0..10 {
        if let Some(old) = tx.push(i).dropped() {
            evicted.push(old);
        }
    }
    assert_eq!(drain(&mut rx), [7, 8, 9]);
    assert_eq!(evicted, [0, 1, 2, 3, 4, 5, 6]);
    let stats = tx.stats();
    assert_eq!(stats.queued, 10);
    assert_eq!(stats.dropped_oldest, 7);
    assert_eq!(stats.dropped(), 7);
    assert_eq!(stats.max_len, 3);
}

#[test]
fn drop_newest_keeps_the_oldest() {
    let (tx, mut rx) = bounded(3, Overflow::DropNewest);
    let refused: Vec<i32> = (0..10).filter_map(|i| tx.push(i).dropped()).collect();
    assert_eq!(drain(&mut rx), [0, 1, 2]);
    assert_eq!(refused, [3, 4, 5, 6, 7, 8, 9]);
    let stats = tx.stats();
    assert_eq!(
        stats,
        QueueStats {
            queued: 3,
            dropped_newest: 7,
            dropped_oldest: 0,
            overflows: 0,
            max_len: 3
        }
    );
}

#[test]
fn disconnect_reports_overflow_and_keeps_the_queue() {
    let (tx, mut rx) = bounded(2, Overflow::Disconnect);
    assert_eq!(tx.push(1), Pushed::Queued);
    assert_eq!(tx.push(2), Pushed::Queued);
    assert_eq!(tx.push(3), Pushed::Overflowed(3));
    assert_eq!(tx.stats().overflows, 1);
    assert_eq!(tx.stats().dropped(), 1);
    // Once the handler catches up, the (resynchronised) reader can push again.
    assert_eq!(drain(&mut rx), [1, 2]);
    assert_eq!(tx.push(4), Pushed::Queued);
    assert_eq!(rx.try_recv(), Some(4));
}

#[test]
fn counts_are_exact_across_interleaving() {
    // Every pushed item is either received or counted as dropped, never both, never
    // neither: `pushed == received + dropped`.
    for policy in Overflow::ALL {
        let (tx, mut rx) = bounded(7, policy);
        let mut received = 0u64;
        for i in 0..1000u64 {
            let _ = tx.push(i);
            if i % 3 == 0 {
                received += rx.try_recv().is_some() as u64;
            }
        }
        received += drain(&mut rx).len() as u64;
        assert_eq!(received + tx.stats().dropped(), 1000, "{policy}");
        assert_eq!(tx.stats().max_len, 7, "{policy}");
    }
}

#[tokio::test]
async fn close_drains_then_ends() {
    let (tx, mut rx) = bounded(10, Overflow::DropNewest);
    for i in 0..5 {
        assert!(tx.push(i).is_queued());
    }
    tx.close();
    assert_eq!(tx.push(99), Pushed::Closed(99));
    let mut got = Vec::new();
    while let Some(i) = rx.recv().await {
        got.push(i);
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn dropping_every_sender_closes() {
    let (tx, mut rx) = bounded(4, Overflow::DropOldest);
    let tx2 = tx.clone();
    let _ = tx.push(1);
    drop(tx);
    let _ = tx2.push(2);
    drop(tx2);
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, Some(2));
    assert_eq!(rx.recv().await, None);
}

#[test]
fn dropped_receiver_refuses_pushes() {
    let (tx, rx) = bounded(4, Overflow::DropOldest);
    drop(rx);
    assert_eq!(tx.push(1), Pushed::Closed(1));
    assert!(tx.is_closed());
}

#[tokio::test]
async fn recv_wakes_on_push_from_another_thread() {
    let (tx, mut rx) = bounded(1024, Overflow::DropNewest);
    let producer = std::thread::spawn(move || {
        for i in 0..100_000u64 {
            while !tx.push(i).is_queued() {
                std::thread::yield_now();
            }
        }
    });
    let mut next = 0u64;
    while let Some(i) = rx.recv().await {
        assert_eq!(i, next, "in order, nothing lost");
        next += 1;
    }
    producer.join().unwrap();
    assert_eq!(next, 100_000);
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    let (tx, mut rx) = bounded(4, Overflow::DropNewest);
    // A recv abandoned by a timeout takes nothing with it.
    let timed_out = tokio::time::timeout(Duration::from_millis(10), rx.recv()).await;
    assert!(timed_out.is_err());
    let _ = tx.push(7);
    assert_eq!(rx.recv().await, Some(7));
}

#[tokio::test]
async fn recv_many_takes_a_batch() {
    let (tx, mut rx) = bounded(100, Overflow::DropNewest);
    for i in 0..10 {
        let _ = tx.push(i);
    }
    let mut batch = Vec::new();
    assert_eq!(rx.recv_many(&mut batch, 4).await, 4);
    assert_eq!(rx.recv_many(&mut batch, 100).await, 6);
    assert_eq!(batch, (0..10).collect::<Vec<_>>());
    drop(tx);
    assert_eq!(rx.recv_many(&mut batch, 100).await, 0);
}

#[test]
fn policy_names_round_trip() {
    for policy in Overflow::ALL {
        assert_eq!(policy.to_string().parse::<Overflow>(), Ok(policy));
    }
    let err = "drop-all".parse::<Overflow>().unwrap_err();
    assert!(
        err.to_string()
            .contains("expected drop-newest, drop-oldest or disconnect")
    );
}

#[test]
fn sender_is_send_and_sync() {
    fn assert_send_sync<X: Send + Sync>() {}
    assert_send_sync::<QueueSender<String>>();
    assert_send_sync::<QueueReceiver<String>>();
}
