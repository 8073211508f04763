//! The benchmark's results: each run's STATS line parsed, the runs of a design summarized,
//! its RESULT line, the throughput tables and the goals paragraph the chapter includes.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use lab::ResultLine;

use crate::bench::Variant;
use crate::messages_for;
use crate::{Args, Sample, Summary};
use std::collections::BTreeMap;

/// `STATS key=value ...` from a subscriber process.
pub struct Stats(Vec<(String, String)>);

impl Stats {
    pub fn get<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let value = self
            .0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .with_context(|| format!("the subscriber reported no {key}="))?;
        value
            .parse()
            .ok()
            .with_context(|| format!("the subscriber reported {key}={value}"))
    }
}

pub fn parse_stats(line: &str) -> Result<Stats> {
    Ok(Stats(
        line.split_whitespace()
            .skip(1)
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    ))
}

pub fn median_min_max(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

pub fn summarize(
    designs: &[Variant],
    sizes: &[usize],
    samples: &BTreeMap<(usize, usize), Vec<Sample>>,
    args: &Args,
) -> Result<Vec<Summary>> {
    let mut summaries = Vec::new();
    for &size in sizes {
        let count = messages_for(size, args.scale);
        // Measured in a fresh process, once per size.
        let queued_bytes = lab::mem::queued_msg_bytes(size)?;
        let mut cli_median = f64::NAN;
        for (index, &variant) in designs.iter().enumerate() {
            let runs = &samples[&(size, index)];
            let rates = runs.iter().map(|s| s.received as f64 / s.secs).collect();
            let (median, min, max) = median_min_max(rates);
            if variant == Variant::Cli {
                cli_median = median;
            }
            let cpu: Vec<f64> = runs.iter().map(|s| s.cpu_s * 1e9 / count as f64).collect();
            let rss = runs.iter().filter_map(|s| s.peak_rss_mb).reduce(f64::max);
            let sleeps: Vec<f64> = runs
                .iter()
                .filter_map(|s| s.sleeps)
                .map(|n| n as f64 * 1000.0 / count as f64)
                .collect();
            let over_bound_mb = variant.queue_capacity().and_then(|capacity| {
                runs.iter()
                    .filter_map(|s| {
                        let bound =
                            s.idle_rss_mb? + capacity as f64 * queued_bytes / 1_048_576.0 + 30.0;
                        Some((s.peak_rss_mb? - bound, bound))
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0))
            });
            summaries.push(Summary {
                variant,
                size,
                sent: count * runs.len() as u64,
                received: runs.iter().map(|s| s.received).sum(),
                noticed: runs.iter().map(|s| s.noticed).sum(),
                median,
                min,
                max,
                cpu_ns_per_msg: median_min_max(cpu).0,
                sleeps_per_1k: (!sleeps.is_empty()).then(|| median_min_max(sleeps).0),
                peak_rss_mb: rss,
                ratio_vs_cli: median / cli_median,
                over_bound_mb,
            });
        }
    }
    Ok(summaries)
}

pub fn summary_result(summary: &Summary) -> ResultLine {
    ResultLine::new(
        &format!("drain-{}B-{}", summary.size, summary.variant.name()),
        summary.variant.client(),
        summary.sent,
        summary.received,
        summary.noticed,
    )
    .with("msg_per_s", format!("{:.0}", summary.median))
    .with("min_msg_per_s", format!("{:.0}", summary.min))
    .with("max_msg_per_s", format!("{:.0}", summary.max))
    .with(
        "mb_per_s",
        format!("{:.1}", summary.median * summary.size as f64 / 1e6),
    )
    .with("cpu_ns_per_msg", format!("{:.0}", summary.cpu_ns_per_msg))
    .with(
        "sleeps_per_1k",
        summary
            .sleeps_per_1k
            .map_or("-".into(), |n| format!("{n:.1}")),
    )
    .with("ratio_vs_cli", format!("{:.2}", summary.ratio_vs_cli))
    .with(
        "peak_rss_mb",
        summary
            .peak_rss_mb
            .map_or("-".into(), |mb| format!("{mb:.1}")),
    )
    .with(
        "rss_bound_mb",
        summary
            .over_bound_mb
            .map_or("-".into(), |(_, bound)| format!("{bound:.1}")),
    )
    .with(
        "within_bound",
        summary
            .over_bound_mb
            .map_or("-", |(over, _)| if over <= 0.0 { "true" } else { "false" }),
    )
}

/// The chapter's goals, checked against this run: the production subscriber at least 1.0x
/// redis-cli at every size, the fastest design at least 1.2x at 16 B.
pub fn goals(summaries: &[Summary]) -> String {
    let range = |values: Vec<f64>| {
        let (_, min, max) = median_min_max(values);
        format!("{min:.2}-{max:.2}x")
    };
    let verdict = |met: bool| if met { "**met**" } else { "**not met**" };
    let mut out = String::from("In this run, ");
    let mut all_met = true;
    for variant in [Variant::ProductionMt, Variant::ProductionCt] {
        let rows: Vec<&Summary> = summaries.iter().filter(|s| s.variant == variant).collect();
        if rows.is_empty() {
            continue;
        }
        let cli_cpu = |size: usize| {
            summaries
                .iter()
                .find(|s| s.variant == Variant::Cli && s.size == size)
                .map_or(f64::NAN, |s| s.cpu_ns_per_msg)
        };
        all_met &= rows.iter().all(|s| s.ratio_vs_cli >= 1.0);
        let _ = write!(
            out,
            "the {} reached {} of redis-cli's messages per second across the payload sizes, \
             using {} its CPU time per message; ",
            variant.describe(),
            range(rows.iter().map(|s| s.ratio_vs_cli).collect()),
            range(
                rows.iter()
                    .map(|s| s.cpu_ns_per_msg / cli_cpu(s.size))
                    .collect()
            ),
        );
    }
    let _ = write!(
        out,
        "the goal of at least 1.0x at every size is {}. ",
        verdict(all_met)
    );
    let fastest = summaries
        .iter()
        .filter(|s| s.size == 16 && !matches!(s.variant, Variant::Cli | Variant::Raw))
        .max_by(|a, b| a.ratio_vs_cli.total_cmp(&b.ratio_vs_cli));
    if let Some(fastest) = fastest {
        let _ = write!(
            out,
            "The fastest Rust design at 16 B was the {} at {:.2}x: the goal of 1.2x is {}.",
            fastest.variant.describe(),
            fastest.ratio_vs_cli,
            verdict(fastest.ratio_vs_cli >= 1.2)
        );
    }
    let bounded: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.over_bound_mb.is_some())
        .collect();
    if !bounded.is_empty() {
        let within = bounded
            .iter()
            .all(|s| s.over_bound_mb.is_some_and(|(over, _)| over <= 0.0));
        let peaks: Vec<f64> = bounded.iter().filter_map(|s| s.peak_rss_mb).collect();
        let (_, low, high) = median_min_max(peaks);
        let _ = write!(
            out,
            " Memory: the designs the book calls bounded (the push sender into a bounded queue \
             and the production subscriber, on both runtimes) peaked at {low:.1}-{high:.1} MiB; \
             staying within idle + queue capacity x bytes per queued message + 30 MB at every \
             size is {}.",
            verdict(within)
        );
    }
    out.push('\n');
    out
}

pub fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

pub fn thousands(value: f64) -> String {
    lab::report::thousands(value.round() as u64)
}

pub fn throughput_tables(
    summaries: &[Summary],
    publish_rates: &[(usize, f64)],
    args: &Args,
) -> String {
    let mut out = String::new();
    for &(size, publish_rate) in publish_rates {
        let count = messages_for(size, args.scale);
        let _ = writeln!(
            out,
            "**{} payloads**, {} messages per run; Redis took the pipelined PUBLISH commands \
             at {} msg/s (median)\n\n\
             | subscriber | msg/s (min-max) | MB/s | CPU ns/msg | sleeps/1k msg | peak RSS MiB | vs redis-cli | lost / noticed |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|",
            size_label(size),
            thousands(count as f64),
            thousands(publish_rate)
        );
        for s in summaries.iter().filter(|s| s.size == size) {
            let _ = writeln!(
                out,
                "| {} | {} ({}-{}) | {:.1} | {:.0} | {} | {} | {:.2}x | {} / {} |",
                s.variant.describe(),
                thousands(s.median),
                thousands(s.min),
                thousands(s.max),
                s.median * size as f64 / 1e6,
                s.cpu_ns_per_msg,
                s.sleeps_per_1k.map_or("-".into(), |n| format!("{n:.1}")),
                s.peak_rss_mb.map_or("-".into(), |mb| format!("{mb:.1}")),
                s.ratio_vs_cli,
                s.sent - s.received,
                s.noticed
            );
        }
        out.push('\n');
    }
    out
}
