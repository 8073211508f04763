//! The chapter's table, from the RESULT lines of a full run: for each fault, what
//! `lab::production` and the library's tools alone did, and what the library's tools need on
//! top (derived from why they failed).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use lab::ResultLine;
use lab::report::thousands;

use crate::harness::Design;

/// The faults in the table's order, with how the chapter names them.
const ROWS: [(&str, &str); 12] = [
    ("client-kill", "`CLIENT KILL` mid-burst"),
    ("restart", "SIGKILL, restart 1 s later"),
    ("long-outage", "SIGKILL, restart 14 s later"),
    ("pause", "SIGSTOP 3 s (less than the PING timeout)"),
    (
        "silent-server",
        "SIGSTOP 8 s (more than the PING timeout), a publisher sending",
    ),
    (
        "half-open",
        "the connection goes silent for good (a partition)",
    ),
    (
        "buffer-limit",
        "output-buffer limit (a handler blocks the thread)",
    ),
    ("acl-revoked", "channel permissions revoked for 1 s"),
    ("bad-payloads", "1,000 bad payloads among 100,000"),
    ("shutdown", "shutdown mid-burst"),
    (
        "burst-current-thread",
        "`redis-benchmark`, 2,000,000 messages, current-thread runtime",
    ),
    (
        "burst-multi-thread",
        "`redis-benchmark`, 2,000,000 messages, multi-thread runtime",
    ),
];

/// Why a design failed a fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Failed {
    /// Never subscribed again.
    never_back: bool,
    /// Lost messages nobody counted or reported.
    silent: bool,
    /// Redis disconnected it more often than it was told.
    untold_disconnects: bool,
    /// Peak RSS above the bound.
    memory: bool,
    out_of_order: bool,
}

impl Failed {
    fn any(self) -> bool {
        self != Failed::default()
    }

    fn or(self, other: Failed) -> Failed {
        Failed {
            never_back: self.never_back || other.never_back,
            silent: self.silent || other.silent,
            untold_disconnects: self.untold_disconnects || other.untold_disconnects,
            memory: self.memory || other.memory,
            out_of_order: self.out_of_order || other.out_of_order,
        }
    }
}

/// What the library's tools need on top, from why they failed (and what the harness added
/// when they passed).
fn must_add(fault: &str, failed: Failed, tuned: Option<&ResultLine>) -> String {
    let tuned = tuned.map(|line| format!(" (tuned: {})", cell(fault, line).1));
    let tuned = tuned.unwrap_or_default();
    if !failed.any() {
        return match fault {
            "bad-payloads" => "validation in the handler, counted (as every design)".into(),
            "shutdown" => "the drain: unsubscribe, read until Redis's confirmations are \
                           through, count what the deadline leaves"
                .into(),
            "pause" | "silent-server" => "nothing".into(),
            _ => "nothing but chapter 3's `Tracker` to count the gap".into(),
        };
    }
    let mut needs = Vec::new();
    if failed.never_back {
        needs.push(match fault {
            "long-outage" => {
                "retry for ever (`set_number_of_retries(usize::MAX)`, \
                              `set_max_delay(1 s)`) and a command now and then (one revives a \
                              manager that gave up)"
            }
            "half-open" => {
                "a health check that *replaces* the connection when a PING goes \
                            unanswered: a timed-out command does not make the manager \
                            reconnect; that is `lab::production`'s supervisor"
            }
            "acl-revoked" => {
                "check the resubscription's replies and retry until they \
                              succeed: the manager ignores them and never tries again; that is \
                              `lab::production`'s reconnect loop"
            }
            _ => "a reconnection loop of your own",
        });
    }
    if failed.memory {
        needs.push(
            "a push sender that is the reader, nothing unbounded in front of it: the manager \
             forwards every push through an unbounded channel and a task first; that is \
             `lab::push` on a connection of your own, as `lab::production` does",
        );
    }
    if failed.untold_disconnects {
        needs.push(
            "a disconnection signal that cannot be lost: `broadcast` overwrites the \
             `Disconnection` push with the messages when the receiver lags, and `to_queue`'s \
             watch fires once per sender, while the manager reuses its sender for every \
             connection",
        );
    }
    if failed.out_of_order {
        needs.push("order per channel");
    }
    format!("{}{tuned}", needs.join("; "))
}

/// Whether a design failed a fault (something lost silently, not back when it had to come
/// back, out of order, above the memory bound), and the table's words for it.
fn cell(fault: &str, line: &ResultLine) -> (Failed, String) {
    let get = |key: &str| line.get_f64(key).unwrap_or(0.0) as u64;
    let mut parts = Vec::new();
    let mut failed = Failed {
        out_of_order: get("out_of_order") > 0,
        ..Failed::default()
    };
    match line.get("resubscribed") {
        Some("yes") => parts.push(format!("back in {} ms", thousands(get("resubscribed_ms")))),
        Some(_) => {
            parts.push("never back".to_string());
            failed.never_back = true;
        }
        None => {}
    }
    if fault == "silent-server" {
        parts.push(match line.get("reconnected") {
            Some("yes") => "reconnected".to_string(),
            _ => "did not notice".to_string(),
        });
    }
    let burst = fault.starts_with("burst");
    if burst {
        let peak = line.get_f64("rss_peak_mb").unwrap_or(0.0);
        let bound = line.get_f64("bound_mb").unwrap_or(f64::INFINITY);
        parts.push(format!("peak {peak:.1} MB (bound {bound:.0})"));
        failed.memory = peak > bound;
    }
    let silent = line.silent_loss();
    // Unnumbered messages lost in a disconnection cannot be counted: reported (an unknown
    // gap, a `Disconnection`), they are noticed as far as anyone can notice them.
    let disconnections = get("server_disconnects");
    let told = get("unknown_gaps").max(get("told_disconnected"));
    match fault {
        "bad-payloads" => parts.push(format!(
            "{} of {} bad ones counted, {} good ones handled",
            thousands(get("bad_counted")),
            thousands(get("bad_sent")),
            thousands(line.received)
        )),
        "shutdown" => parts.push(format!(
            "{} reached it: {} handled, {} counted",
            thousands(line.sent),
            thousands(line.received),
            thousands(line.noticed.min(line.lost))
        )),
        _ if line.lost == 0 => parts.push("0 lost".to_string()),
        _ if silent == 0 => parts.push(format!("{} lost, all noticed", thousands(line.lost))),
        _ if burst && disconnections > 0 => parts.push(format!(
            "{} lost, {} counted, the rest in {disconnections} disconnection{} by Redis, told \
             of {told}",
            thousands(line.lost),
            thousands(line.noticed),
            if disconnections == 1 { "" } else { "s" }
        )),
        _ => parts.push(format!(
            "{} lost, {} noticed",
            thousands(line.lost),
            thousands(line.noticed)
        )),
    }
    if burst && disconnections > 0 {
        failed.untold_disconnects = told < disconnections;
    } else {
        failed.silent = silent > 0;
    }
    if !burst && fault != "bad-payloads" && fault != "shutdown" {
        let (lost_told, back_told) = (get("told_disconnected"), get("told_resubscribed"));
        parts.push(match (lost_told > 0, back_told > 0) {
            (true, true) => "told: lost, back".to_string(),
            (true, false) => "told: lost (not when back)".to_string(),
            (false, _) if line.get("resubscribed").is_some() => "not told".to_string(),
            (false, _) => String::new(),
        });
        if get("pings_failed") > 0 {
            parts.push(format!("{} PINGs failed", get("pings_failed")));
        }
    }
    parts.retain(|p| !p.is_empty());
    let verdict = if failed.any() {
        "**fails**"
    } else {
        "**passes**"
    };
    (failed, format!("{verdict}: {}", parts.join("; ")))
}

/// The chapter's table, from the RESULT lines of a full run.
pub fn write(
    lines: &[ResultLine],
    command: &str,
    took: Duration,
    load: (String, String),
) -> Result<()> {
    let find = |fault: &str, design: Design| {
        lines
            .iter()
            .find(|l| l.scenario == format!("{fault}/{}", design.name()))
    };
    let mut out = String::new();
    // The first line names the command that wrote the file (the book's convention for
    // generated tables, `ci/outputs.py`).
    let _ = writeln!(out, "<!-- $ {command} -->");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Measured with `{command}` ({:.0} s, debug build, 2 cores shared with other builds: load \
         average {} before and {} after). *Passes*: nothing lost without being noticed (a \
         disconnection that loses uncountable messages is reported), subscribed again when the \
         fault took the subscription, in order, and (bursts) peak RSS within idle + the \
         queue's capacity × the bytes of a queued message + 30 MB. Every design counts gaps \
         with chapter 3's `Tracker`; *told* is what the application hears without asking.",
        took.as_secs_f64(),
        load.0,
        load.1
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| fault | `lab::production` | library alone: `ConnectionManager` + `broadcast` | \
         library alone: `ConnectionManager` + bounded queue | what you must add to the \
         library's tools |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (fault, title) in ROWS {
        let Some(production) = find(fault, Design::Production) else {
            continue;
        };
        let mut row = format!("| {title} | {} ", cell(fault, production).1);
        let mut library = Failed::default();
        for design in [Design::ManagerBroadcast, Design::ManagerQueue] {
            match find(fault, design) {
                Some(line) => {
                    let (failed, text) = cell(fault, line);
                    library = library.or(failed);
                    let _ = write!(row, "| {text} ");
                }
                None => {
                    let _ = write!(row, "| (not run) ");
                }
            }
        }
        let tuned = find(fault, Design::ManagerTuned);
        let _ = writeln!(row, "| {} |", must_add(fault, library, tuned));
        out.push_str(&row);
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/generated/ch06-library-tools.md"
    );
    std::fs::write(path, out).with_context(|| format!("writing {path}"))?;
    println!("wrote {path}");
    Ok(())
}

/// The 1-minute load average, for the table's note on noise.
pub fn load_average() -> String {
    lab::mem::load_average().map_or_else(|| "unknown".to_string(), |load| load.to_string())
}
