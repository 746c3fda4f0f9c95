//! The stats router: JSON, Prometheus text and an HTML page.

use std::fmt::Write;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};

use crate::export::prometheus_text;
use crate::metrics::{FunctionStats, LatencyStats, Stats};

/// A [`Router`] with the cache's stats, to mount where you like
/// (`.nest("/cache-stats", stats_router())`):
///
/// - `GET /` — the [`stats()`](crate::stats) snapshot as JSON: per function
///   hits, misses, `hit_rate`, the local/shared split, latencies, entries
///   and shared-tier errors;
/// - `GET /metrics` — the same in the Prometheus text format
///   ([`prometheus_text`]);
/// - `GET /ui` — an HTML page: the cache type, the shared tier's and the
///   bus's health, and where each function's requests were answered
///   ([`stats_html`]).
///
/// `/ui` and `/metrics` also answer with a trailing slash; mount with
/// [`mount_stats`] for the mount point itself to (`/cache-stats/`).
///
/// ```
/// use axum::Router;
/// let app: Router = Router::new().nest("/cache-stats", layercache_runtime::web::stats_router());
/// # drop(app);
/// ```
pub fn stats_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(json))
        .route("/metrics", get(metrics))
        .route("/metrics/", get(metrics))
        .route("/ui", get(ui))
        .route("/ui/", get(ui))
}

/// Mounts [`stats_router`] at `path` (such as `"/cache-stats"`) on
/// `router`, with the mount point answering with and without a trailing
/// slash: a nested router's `/` route matches only `path` itself in axum
/// 0.8, and `/cache-stats/` is what people type.
///
/// ```
/// use axum::Router;
/// let app: Router = layercache_runtime::web::mount_stats(Router::new(), "/cache-stats");
/// # drop(app);
/// ```
pub fn mount_stats<S: Clone + Send + Sync + 'static>(router: Router<S>, path: &str) -> Router<S> {
    let path = path.trim_end_matches('/');
    router
        .nest(path, stats_router())
        .route(&format!("{path}/"), get(json))
}

async fn json() -> Json<Stats> {
    Json(crate::stats())
}

async fn metrics() -> axum::response::Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus_text(&crate::stats()),
    )
        .into_response()
}

async fn ui() -> Html<String> {
    Html(stats_html(&crate::stats()))
}

/// Escapes text for HTML element content and attribute values.
struct Esc<'a>(&'a str);

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '&' => f.write_str("&amp;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A latency for people: `-` when nothing was measured.
fn latency(l: &LatencyStats, ns: u64) -> String {
    if l.count == 0 {
        return "-".into();
    }
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Every request a function saw, each counted once: a hit (local, shared
/// or a coalesced wait), a miss, or a bypass.
fn all_requests(f: &FunctionStats) -> u64 {
    f.hits + f.misses + f.bypassed
}

/// The bar segments of one function: (count, colour, legend).
fn segments(f: &FunctionStats, shared: bool) -> Vec<(u64, &'static str, &'static str)> {
    let mut s = vec![(f.local_hits, "#2b8a3e", "local hits")];
    if shared {
        s.push((f.shared_hits, "#1c7ed6", "shared hits"));
    }
    s.extend([
        (f.coalesced, "#9775fa", "coalesced waits"),
        (f.misses, "#fa5252", "misses"),
        (f.bypassed, "#adb5bd", "bypassed"),
    ]);
    s
}

/// The shared tier's health line.
fn shared_tier_status(stats: &Stats) -> String {
    let errors: u64 = stats.functions.iter().map(|f| f.shared.errors()).sum();
    match &stats.shared_tier {
        None => "none (in-process tier only)".into(),
        Some(t) => format!(
            "{}: circuit breaker {} (opened {} times), {errors} failed operations",
            Esc(&t.store),
            if t.breaker_open { "OPEN" } else { "closed" },
            t.breaker_opens,
        ),
    }
}

/// The invalidation bus's health line: its status (with the reason when it
/// is down), the notices it carried, and the outbox of invalidations waiting
/// for the shared tier.
fn bus_status(stats: &Stats) -> String {
    let Some(t) = &stats.shared_tier else {
        return "none (single process)".into();
    };
    let mut line = t.bus.status.as_str().to_string();
    if let Some(reason) = &t.bus.reason {
        line.push_str(&format!(" ({})", Esc(reason)));
    }
    line.push_str(&format!(
        ", {} notices received, {} resubscriptions; {} invalidations pending, {} replayed",
        t.notices_received, t.resubscriptions, t.invalidations_pending, t.invalidations_replayed,
    ));
    if t.outbox_overflows > 0 {
        line.push_str(&format!(", {} outbox overflows", t.outbox_overflows));
    }
    line
}

/// A self-contained HTML page (no scripts, no external resources): the
/// cache type, the shared tier's and the bus's health and the time of the
/// snapshot; one horizontal bar per function splitting every request into
/// local hits, shared hits (only with a shared tier), coalesced waits,
/// misses and bypasses; and a table of the counters with p50 and p99 of
/// hit and origin latency. Each table cell carries `data-f` naming its
/// [`FunctionStats`] field, for tools that read the page.
///
/// ```
/// let html = layercache_runtime::web::stats_html(&layercache_runtime::stats());
/// assert!(html.starts_with("<!DOCTYPE html>"));
/// ```
pub fn stats_html(stats: &Stats) -> String {
    const ROW: usize = 34;
    const LABEL: usize = 260;
    const BAR: usize = 480;
    let mut out = String::with_capacity(4096 + stats.functions.len() * 1024);
    let shared = stats.shared_tier.is_some();
    let sum = |field: fn(&FunctionStats) -> u64| -> u64 { stats.functions.iter().map(field).sum() };
    let (hits, misses) = stats.totals();
    let requests = sum(all_requests);
    let taken = httpdate::fmt_http_date(std::time::SystemTime::now());
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>layercache stats</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}\
         h1{{font-size:1.4rem}} .summary,.health{{color:#444}} .health td{{text-align:left;border:0;padding:.1rem .7rem .1rem 0}}\
         table{{border-collapse:collapse;margin-top:1.5rem;font-size:.85rem}}\
         th,td{{padding:.3rem .5rem;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}}\
         th:first-child,td:first-child{{text-align:left}}\
         .legend span{{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}}\
         </style></head><body>\
         <h1>layercache: where each request was answered</h1>\
         <table class=\"health\">\
         <tr><td>cache type</td><td id=\"cache-type\">{}</td></tr>\
         <tr><td>shared tier</td><td id=\"shared-tier\">{}</td></tr>\
         <tr><td>invalidation bus</td><td id=\"bus\">{}</td></tr>\
         <tr><td>snapshot taken</td><td id=\"taken\">{taken}</td></tr></table>\
         <p class=\"summary\" id=\"summary\">{} functions, {requests} requests: {} local hits, ",
        crate::config().cache_type(),
        shared_tier_status(stats),
        bus_status(stats),
        stats.functions.len(),
        sum(|f| f.local_hits),
    );
    if shared {
        let _ = write!(out, "{} shared hits, ", sum(|f| f.shared_hits));
    }
    let _ = write!(
        out,
        "{} coalesced waits, {misses} misses, {} bypassed; hit rate {} of cached lookups, {} of all requests</p><p class=\"legend\">",
        sum(|f| f.coalesced),
        sum(|f| f.bypassed),
        percent(hits, hits + misses),
        percent(hits, requests),
    );
    for (_, colour, label) in segments(&FunctionStats::default(), shared) {
        let _ = write!(out, "<span style=\"background:{colour}\"></span>{label}");
    }
    out.push_str("</p>");
    let height = ROW * stats.functions.len().max(1) + 10;
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"requests per function by outcome\">",
        LABEL + BAR + 80
    );
    for (i, f) in stats.functions.iter().enumerate() {
        let y = i * ROW + 5;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text>\
             <rect x=\"{LABEL}\" y=\"{y}\" width=\"{BAR}\" height=\"22\" fill=\"#e9ecef\"/>",
            y + 16,
            Esc(&f.name),
        );
        let total = all_requests(f);
        if total == 0 {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\" font-size=\"13\" fill=\"#868e96\">no calls</text>",
                LABEL + BAR + 8,
                y + 16,
            );
            continue;
        }
        let mut x = LABEL as f64;
        for (count, colour, _) in segments(f, shared) {
            let w = count as f64 / total as f64 * BAR as f64;
            if w > 0.0 {
                let _ = write!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"22\" fill=\"{colour}\"/>"
                );
            }
            x += w;
        }
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"13\">{}</text>",
            LABEL + BAR + 8,
            y + 16,
            percent(f.hits, f.hits + f.misses),
        );
    }
    out.push_str("</svg><table><tr><th>function</th><th>requests</th><th>local hits</th>");
    if shared {
        out.push_str("<th>shared hits</th>");
    }
    out.push_str(
        "<th>coalesced</th><th>misses</th><th>bypassed</th><th>hit rate</th><th>entries</th>\
         <th>shared errors</th><th>hit p50</th><th>hit p99</th><th>origin p50</th><th>origin p99</th></tr>",
    );
    for f in &stats.functions {
        let _ = write!(
            out,
            "<tr data-function=\"{}\"><td>{}</td><td data-f=\"requests\">{}</td><td data-f=\"local_hits\">{}</td>",
            Esc(&f.name),
            Esc(&f.name),
            all_requests(f),
            f.local_hits,
        );
        if shared {
            let _ = write!(out, "<td data-f=\"shared_hits\">{}</td>", f.shared_hits);
        }
        let _ = write!(
            out,
            "<td data-f=\"coalesced\">{}</td><td data-f=\"misses\">{}</td><td data-f=\"bypassed\">{}</td>\
             <td data-f=\"hit_rate\">{}</td><td data-f=\"entries\">{}</td><td data-f=\"errors\">{}</td>\
             <td data-f=\"hit_p50\">{}</td><td data-f=\"hit_p99\">{}</td>\
             <td data-f=\"origin_p50\">{}</td><td data-f=\"origin_p99\">{}</td></tr>",
            f.coalesced,
            f.misses,
            f.bypassed,
            percent(f.hits, f.hits + f.misses),
            f.entries,
            f.shared.errors(),
            latency(&f.hit_latency, f.hit_latency.p50_ns),
            latency(&f.hit_latency, f.hit_latency.p99_ns),
            latency(&f.origin_latency, f.origin_latency.p50_ns),
            latency(&f.origin_latency, f.origin_latency.p99_ns),
        );
    }
    out.push_str("</table></body></html>\n");
    out
}
