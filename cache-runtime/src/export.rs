//! Exporters of the [`stats()`](crate::stats) snapshot: the Prometheus text
//! format ([`prometheus_text`]) and, with cargo feature `metrics`, the
//! [`metrics`](https://docs.rs/metrics) facade (`metrics` submodule), so
//! any exporter (Prometheus, StatsD, OpenTelemetry) sees the counters.

use std::fmt::Write;

use crate::metrics::{FunctionStats, LatencyStats, Stats, EXPORT_BOUNDS};

/// One counter or gauge per function: name, help, type, value.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&FunctionStats) -> u64,
);

const SERIES: &[Series] = &[
    (
        "layercache_hits_total",
        "Calls answered from a cache tier.",
        "counter",
        |f| f.hits,
    ),
    (
        "layercache_misses_total",
        "Calls that ran the function.",
        "counter",
        |f| f.misses,
    ),
    (
        "layercache_local_hits_total",
        "Hits answered by the in-process tier.",
        "counter",
        |f| f.local_hits,
    ),
    (
        "layercache_shared_hits_total",
        "Hits answered by the shared tier.",
        "counter",
        |f| f.shared_hits,
    ),
    (
        "layercache_coalesced_total",
        "Misses answered by another caller's computation (single-flight); counted in hits.",
        "counter",
        |f| f.coalesced,
    ),
    (
        "layercache_lock_waits_total",
        "Shared hits after waiting for another process's lock.",
        "counter",
        |f| f.lock_waits,
    ),
    (
        "layercache_stale_hits_total",
        "Failed calls answered with an expired value (stale_if_error).",
        "counter",
        |f| f.stale_hits,
    ),
    (
        "layercache_bypassed_total",
        "Calls that skipped the cache.",
        "counter",
        |f| f.bypassed,
    ),
    (
        "layercache_refreshes_total",
        "Background refreshes ended (refresh_ahead).",
        "counter",
        |f| f.refreshes,
    ),
    (
        "layercache_expired_total",
        "Lookups that found an expired entry.",
        "counter",
        |f| f.expired,
    ),
    (
        "layercache_not_cached_total",
        "Results not stored (Err, None, a veto or a race with an invalidation).",
        "counter",
        |f| f.not_cached,
    ),
    (
        "layercache_origin_panics_total",
        "Calls whose function panicked.",
        "counter",
        |f| f.origin_panics,
    ),
    (
        "layercache_invalidations_total",
        "Entries dropped by invalidation.",
        "counter",
        |f| f.invalidations,
    ),
    (
        "layercache_evictions_total",
        "Entries evicted by the in-process tier's bound.",
        "counter",
        |f| f.evictions,
    ),
    (
        "layercache_shared_errors_total",
        "Failed shared-tier operations (timeouts, refusals, corrupt values, breaker skips).",
        "counter",
        |f| f.shared.errors(),
    ),
    (
        "layercache_entries",
        "Entries held in the in-process tier.",
        "gauge",
        |f| f.entries,
    ),
];

/// Latency histograms: name, help, selector.
type Summary = (
    &'static str,
    &'static str,
    fn(&FunctionStats) -> &LatencyStats,
);

const SUMMARIES: &[Summary] = &[
    (
        "layercache_hit_duration_seconds",
        "Time to answer a hit (sampled).",
        |f| &f.hit_latency,
    ),
    (
        "layercache_origin_duration_seconds",
        "Time the function itself took, per miss.",
        |f| &f.origin_latency,
    ),
];

/// The snapshot in the Prometheus text exposition format (version 0.0.4),
/// one series per function labelled `function="name"`: counters
/// `layercache_hits_total`, `_misses_total`, `_local_hits_total`,
/// `_shared_hits_total` and the rest of [`FunctionStats`], the gauge
/// `layercache_entries`, and hit and origin latency in seconds twice:
///
/// - as histograms (`layercache_hit_duration_seconds_bucket{le=...}`,
///   `_sum`, `_count`) over the fixed bounds [`EXPORT_BOUNDS`], which add up
///   across a fleet (`histogram_quantile(0.99, sum by (le) (rate(...)))`);
/// - as this process's quantiles (`layercache_hit_duration_quantile_seconds
///   {quantile="0.5"|"0.9"|"0.99"}`, gauges), `NaN` while nothing was
///   measured, as the convention for an empty quantile is.
///
/// ```
/// let text = layercache_runtime::export::prometheus_text(&layercache_runtime::stats());
/// assert!(text.contains("# TYPE layercache_hits_total counter"));
/// assert!(text.contains("# TYPE layercache_hit_duration_seconds histogram"));
/// ```
pub fn prometheus_text(stats: &Stats) -> String {
    let mut out = String::with_capacity(512 + stats.functions.len() * 4096);
    for (name, help, kind, value) in SERIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for f in &stats.functions {
            let _ = writeln!(
                out,
                "{name}{{function=\"{}\"}} {}",
                Label(&f.name),
                value(f)
            );
        }
    }
    for (name, help, select) in SUMMARIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for f in &stats.functions {
            let l = select(f);
            let label = Label(&f.name);
            for (le, n) in EXPORT_BOUNDS.iter().zip(l.cumulative) {
                let _ = writeln!(out, "{name}_bucket{{function=\"{label}\",le=\"{le}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{function=\"{label}\",le=\"+Inf\"}} {}\n\
                 {name}_sum{{function=\"{label}\"}} {}\n\
                 {name}_count{{function=\"{label}\"}} {}",
                l.count,
                secs(l.sum_ns),
                l.count
            );
        }
        let stem = name.trim_end_matches("_seconds");
        let _ = writeln!(
            out,
            "# HELP {stem}_quantile_seconds {help} Quantiles of this process, NaN before the first measurement.\n\
             # TYPE {stem}_quantile_seconds gauge"
        );
        for f in &stats.functions {
            let l = select(f);
            let label = Label(&f.name);
            for (q, ns) in [("0.5", l.p50_ns), ("0.9", l.p90_ns), ("0.99", l.p99_ns)] {
                let _ = writeln!(
                    out,
                    "{stem}_quantile_seconds{{function=\"{label}\",quantile=\"{q}\"}} {}",
                    Nan(l.quantile_seconds(ns))
                );
            }
        }
    }
    if let Some(t) = &stats.shared_tier {
        let _ = writeln!(
            out,
            "# HELP layercache_shared_breaker_open Whether the shared tier's circuit breaker is open.\n\
             # TYPE layercache_shared_breaker_open gauge\n\
             layercache_shared_breaker_open {}\n\
             # HELP layercache_shared_breaker_opens_total Times the breaker opened.\n\
             # TYPE layercache_shared_breaker_opens_total counter\n\
             layercache_shared_breaker_opens_total {}\n\
             # HELP layercache_invalidation_notices_total Invalidation notices received from other processes.\n\
             # TYPE layercache_invalidation_notices_total counter\n\
             layercache_invalidation_notices_total {}",
            u8::from(t.breaker_open),
            t.breaker_opens,
            t.notices_received,
        );
    }
    out
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// A sample value as the text format spells it (`NaN`, not Rust's `NaN`
/// spelling of infinities).
struct Nan(f64);

impl std::fmt::Display for Nan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_nan() {
            f.write_str("NaN")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// A label value escaped as the text format requires (`\\`, `\"`, `\n`).
struct Label<'a>(&'a str);

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The snapshot through the [`metrics`](https://docs.rs/metrics) facade
/// (cargo feature `metrics`).
///
/// The hit path never touches the facade: [`record`](self::metrics::record)
/// copies the counters into it (as absolute values, so it can run at any
/// interval), and [`spawn_reporter`](self::metrics::spawn_reporter) does so
/// periodically. The names are those of [`prometheus_text`], labelled
/// `function`; origin durations are also recorded per miss as the histogram
/// `layercache_origin_duration_seconds`.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics {
    use std::time::Duration;

    use super::{SERIES, SUMMARIES};
    use crate::metrics::Stats;

    /// Registers descriptions of every series with the installed recorder.
    pub fn describe() {
        for (name, help, kind, _) in SERIES {
            if *kind == "gauge" {
                ::metrics::describe_gauge!(*name, *help);
            } else {
                ::metrics::describe_counter!(*name, *help);
            }
        }
        for (name, help, _) in SUMMARIES {
            ::metrics::describe_histogram!(*name, ::metrics::Unit::Seconds, *help);
        }
    }

    /// Copies `stats` into the installed recorder: counters as absolute
    /// values, `layercache_entries` as a gauge.
    ///
    /// ```
    /// layercache_runtime::export::metrics::record(&layercache_runtime::stats());
    /// ```
    pub fn record(stats: &Stats) {
        for f in &stats.functions {
            for (name, _, kind, value) in SERIES {
                let labels = [("function", f.name.clone())];
                if *kind == "gauge" {
                    ::metrics::gauge!(*name, &labels).set(value(f) as f64);
                } else {
                    ::metrics::counter!(*name, &labels).absolute(value(f));
                }
            }
        }
    }

    /// Calls [`describe`], then [`record`] every `interval` on the current
    /// tokio runtime, until the returned handle is aborted.
    pub fn spawn_reporter(interval: Duration) -> tokio::task::JoinHandle<()> {
        describe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                record(&crate::stats());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Histogram;

    fn one_function(origin: &Histogram) -> Stats {
        Stats {
            functions: vec![FunctionStats {
                name: "f".into(),
                origin_latency: origin.snapshot(),
                ..FunctionStats::default()
            }],
            shared_tier: None,
        }
    }

    #[test]
    fn an_empty_latency_exports_nan_quantiles_and_an_empty_histogram() {
        let text = prometheus_text(&one_function(&Histogram::default()));
        assert!(text.contains(
            "layercache_hit_duration_quantile_seconds{function=\"f\",quantile=\"0.99\"} NaN"
        ));
        assert!(text.contains("# TYPE layercache_hit_duration_seconds histogram"));
        assert!(
            text.contains("layercache_hit_duration_seconds_bucket{function=\"f\",le=\"+Inf\"} 0")
        );
        assert!(text.contains("layercache_hit_duration_seconds_count{function=\"f\"} 0"));
    }

    #[test]
    fn latencies_export_as_cumulative_buckets_that_add_up_across_a_fleet() {
        let h = Histogram::default();
        for ns in [2_000_000, 3_000_000, 200_000_000] {
            h.record(ns);
        }
        let text = prometheus_text(&one_function(&h));
        let name = "layercache_origin_duration_seconds";
        for (le, n) in [
            ("0.001", 0),
            ("0.005", 2),
            ("0.1", 2),
            ("0.25", 3),
            ("+Inf", 3),
        ] {
            let line = format!("{name}_bucket{{function=\"f\",le=\"{le}\"}} {n}");
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(text.contains(&format!("{name}_sum{{function=\"f\"}} 0.205")));
        let p50 = text
            .lines()
            .find(|l| {
                l.starts_with(
                    "layercache_origin_duration_quantile_seconds{function=\"f\",quantile=\"0.5\"}",
                )
            })
            .unwrap();
        let v: f64 = p50.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0.002..=0.003).contains(&v), "{p50}");
    }
}
