//! Metrics through the `metrics` facade (cargo feature `metrics`) and
//! `tracing` spans on origin calls and shared-tier reads (the binary runs
//! on a filesystem shared tier, so both exist without a server).

use std::collections::HashMap;
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
    spans();
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
    spans();
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

/// One span as the test layer saw it: its name and the string form of
/// each field, including those recorded after it was created.
#[derive(Debug, Clone, Default)]
struct Seen {
    name: String,
    fields: HashMap<String, String>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Collects every span of the binary.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

/// Where a live span's record sits in [`Spans`] (kept in its extensions).
struct Slot(usize);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut seen = Seen {
            name: attrs.metadata().name().to_string(),
            ..Seen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        let mut all = self.0.lock().unwrap();
        all.push(seen);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Slot(all.len() - 1));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(slot) = span.extensions().get::<Slot>().map(|s| s.0) else {
            return;
        };
        let mut all = self.0.lock().unwrap();
        values.record(&mut Fields(&mut all[slot].fields));
    }
}

impl Spans {
    /// The spans named `name` whose `function` field is `function`.
    fn of(&self, name: &str, function: &str) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == name && s.field("function") == Some(function))
            .cloned()
            .collect()
    }
}

/// Set up once for the whole binary, before any cached call: a filesystem
/// shared tier in a fresh directory (so `layercache.shared` spans exist;
/// every function here gets one), and a global subscriber, because a
/// scoped one (`with_default`) races the interest other tests' threads
/// cache for the same callsites.
fn spans() -> &'static Spans {
    static SPANS: std::sync::OnceLock<Spans> = std::sync::OnceLock::new();
    SPANS.get_or_init(|| {
        // Emptied first: entries of an earlier run would be shared hits.
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("observability-cache");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a cache directory");
        layercache::init(
            layercache::Config::builder()
                .cache_type(layercache::CacheType::Filesystem)
                .cache_dir(&dir)
                .build(),
        )
        .expect("the first configuration of this binary");
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
    let origin = spans.of("layercache.origin", "obs_traced");
    assert_eq!(origin.len(), 1, "one origin span for one miss: {origin:?}");
}

#[cached(key_prefix = "obs_fallible")]
fn fallible(x: u64) -> Result<u64, String> {
    if x.is_multiple_of(2) {
        Ok(x / 2)
    } else {
        Err(format!("{x} is odd"))
    }
}

#[cached(key_prefix = "obs_maybe")]
fn maybe(x: u64) -> Option<u64> {
    (x > 0).then_some(x)
}

#[cached(key_prefix = "obs_panics")]
fn panics(x: u64) -> u64 {
    if x == 13 {
        panic!("unlucky");
    }
    x
}

#[test]
fn the_origin_span_records_whether_the_function_returned_ok_err_or_none() {
    let spans = spans();
    assert_eq!(fallible(4), Ok(2));
    assert!(fallible(5).is_err());
    let outcomes: Vec<_> = spans
        .of("layercache.origin", "obs_fallible")
        .iter()
        .map(|s| s.field("outcome").map(str::to_string))
        .collect();
    assert_eq!(
        outcomes,
        [Some("ok".to_string()), Some("err".to_string())],
        "recorded once the function returned"
    );
    assert_eq!(maybe(0), None);
    let none = spans.of("layercache.origin", "obs_maybe");
    assert_eq!(none.len(), 1);
    assert_eq!(none[0].field("outcome"), Some("none"));
}

#[test]
fn the_origin_span_of_a_function_that_panics_records_the_panic() {
    let spans = spans();
    let caught = std::panic::catch_unwind(|| panics(13));
    assert!(caught.is_err(), "the panic reaches the caller");
    let origin = spans.of("layercache.origin", "obs_panics");
    assert_eq!(origin.len(), 1);
    assert_eq!(origin[0].field("outcome"), Some("panic"));
}

#[cached(key_prefix = "obs_shared", tier = "shared")]
fn shared_only(x: u64) -> u64 {
    x * 10
}

#[test]
fn each_shared_tier_read_has_a_shared_span_with_its_outcome() {
    let spans = spans();
    // `tier = "shared"`: no local copy, so every call reads the shared tier.
    assert_eq!(shared_only(3), 30);
    assert_eq!(shared_only(3), 30);
    let reads: Vec<_> = spans
        .of("layercache.shared", "obs_shared")
        .iter()
        .map(|s| {
            (
                s.field("op").map(str::to_string),
                s.field("outcome").map(str::to_string),
            )
        })
        .collect();
    let get = || Some("get".to_string());
    assert_eq!(
        reads,
        [
            (get(), Some("miss".to_string())),
            (get(), Some("hit".to_string()))
        ],
        "a miss that computed and wrote, then a hit"
    );
    let origin = spans.of("layercache.origin", "obs_shared");
    assert_eq!(origin.len(), 1, "the function ran once");
}
