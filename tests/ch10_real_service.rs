//! Chapter 10's claims: keyspace notifications lose what changed while a subscriber was
//! disconnected, and a reconciliation pass after every subscribe finds all of it; a
//! client-side cache whose invalidation stream had a gap serves stale reads unless it is
//! flushed. Each test runs the chapter's example and reads its RESULT lines, so the book's
//! numbers and these assertions come from the same code.

use lab::report::find;
use lab::{REDIS_CURRENT, ResultLine};

fn run(example: &str, args: &[&str]) -> Vec<ResultLine> {
    let run = lab::example::run_with_env(example, args, &[("LAB_QUICK", "1")]).unwrap();
    println!("{}", run.stdout());
    run.results().unwrap()
}

fn extra(result: &ResultLine, key: &str) -> u64 {
    result.get_f64(key).unwrap() as u64
}

/// Without faults both subscribers' copies match the server. Across three `CLIENT KILL`s the
/// naive one (reconnects and resubscribes, loaded the key space once) ends with keys wrong
/// in its copy; the one that reconciles after every subscribe ends with none, and its passes
/// repaired keys.
#[test]
fn keyspace_reconciling_subscriber_misses_no_key_across_client_kill() {
    let results = run("ch10_keyspace", &[]);
    for name in ["steady-naive", "steady-reconciling"] {
        let steady = find(&results, name, REDIS_CURRENT).unwrap();
        assert_eq!(extra(steady, "missed_keys"), 0, "{steady}");
        assert_eq!(extra(steady, "subscribes"), 1, "{steady}");
        assert!(extra(steady, "events") > 0, "{steady}");
    }
    let naive = find(&results, "client-kill-naive", REDIS_CURRENT).unwrap();
    let reconciling = find(&results, "client-kill-reconciling", REDIS_CURRENT).unwrap();
    for r in [naive, reconciling] {
        // Three kills, each disconnecting both subscribers; each came back every time.
        assert_eq!(extra(r, "kills"), 6, "{r}");
        assert_eq!(extra(r, "subscribes"), 4, "{r}");
    }
    // The writer changes a key about every millisecond and each gap lasts at least the 250 ms
    // backoff: a handful of missed keys is the least a loaded machine could give.
    assert!(extra(naive, "missed_keys") >= 5, "{naive}");
    assert_eq!(naive.lost, extra(naive, "missed_keys"), "{naive}");
    assert_eq!(extra(reconciling, "missed_keys"), 0, "{reconciling}");
    assert_eq!(reconciling.lost, 0, "{reconciling}");
    assert!(extra(reconciling, "repaired") >= 5, "{reconciling}");
}

/// Examples that reconfigure the server refuse a `REDIS_URL` with a clear message and a
/// non-zero exit, without printing its password.
#[test]
fn keyspace_refuses_to_reconfigure_a_server_from_redis_url() {
    let run = lab::example::run_with_env(
        "ch10_keyspace",
        &[],
        &[
            ("LAB_QUICK", "1"),
            ("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/"),
        ],
    )
    .unwrap();
    let stderr = run.stderr();
    assert!(!run.output.status.success(), "{stderr}");
    assert!(stderr.contains("never reconfigures"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
