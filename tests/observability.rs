//! Metrics through the `metrics` facade (cargo feature `metrics`) and
//! `tracing` spans on misses and origin calls.

use std::sync::{Arc, Mutex};

use layercache::cached;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tracing::span;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[cached(key_prefix = "obs_square")]
fn square(x: u64) -> u64 {
    x * x
}

#[cached(key_prefix = "obs_cube")]
fn cube(x: u64) -> u64 {
    x * x * x
}

#[cached(key_prefix = "obs_traced")]
fn traced(x: u64) -> u64 {
    x + 1
}

type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The value of `name{function=function}` in a snapshot (taking one drains
/// the recorder's counters, so each test takes one).
fn value<'a>(snapshot: &'a Snapshot, name: &str, function: &str) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(key, ..)| {
            key.key().name() == name
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "function" && l.value() == function)
        })
        .map(|(.., v)| v)
}

#[test]
fn recorded_counters_equal_the_stats_snapshot() {
    square(2);
    square(2);
    square(3);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let stats = layercache::stats();
    metrics::with_local_recorder(&recorder, || layercache::export::metrics::record(&stats));
    let f = stats.function("obs_square").unwrap();
    assert_eq!((f.hits, f.misses), (1, 2));
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name| value(&snapshot, name, "obs_square");
    assert_eq!(
        counter("layercache_hits_total"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        counter("layercache_misses_total"),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        counter("layercache_local_hits_total"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        counter("layercache_entries"),
        Some(&DebugValue::Gauge(2.0.into()))
    );
}

#[test]
fn each_miss_records_its_origin_duration_in_a_histogram() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        cube(2);
        cube(3);
        cube(2); // a hit: no origin call
    });
    let snapshot = snapshotter.snapshot().into_vec();
    match value(&snapshot, "layercache_origin_duration_seconds", "obs_cube") {
        Some(DebugValue::Histogram(samples)) => {
            assert_eq!(samples.len(), 2, "one sample per miss");
            assert!(samples.iter().all(|s| s.0 >= 0.0 && s.0 < 1.0));
        }
        other => panic!("no origin histogram: {other:?}"),
    }
}

/// Collects `(span name, function field)` of every new span.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(String, String)>>>);

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, _: &span::Id, _: Context<'_, S>) {
        struct Function(String);
        impl tracing::field::Visit for Function {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "function" {
                    self.0 = value.to_string();
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "function" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut f = Function(String::new());
        attrs.record(&mut f);
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_string(), f.0));
    }
}

/// The spans of the whole test binary: a global subscriber, because a
/// scoped one (`with_default`) races the interest other tests' threads
/// cache for the same callsites.
fn spans() -> &'static Spans {
    static SPANS: std::sync::OnceLock<Spans> = std::sync::OnceLock::new();
    SPANS.get_or_init(|| {
        let spans = Spans::default();
        let subscriber = tracing_subscriber::registry().with(
            spans
                .clone()
                .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
        );
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        spans
    })
}

#[test]
fn a_miss_runs_the_function_inside_an_origin_span_named_after_it_and_a_hit_opens_none() {
    let spans = spans();
    traced(1);
    traced(1);
    let seen = spans.0.lock().unwrap().clone();
    let origin: Vec<_> = seen
        .iter()
        .filter(|(name, function)| name == "layercache.origin" && function == "obs_traced")
        .collect();
    assert_eq!(origin.len(), 1, "one origin span for one miss: {seen:?}");
}
