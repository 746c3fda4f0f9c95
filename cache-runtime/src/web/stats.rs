//! The stats router: JSON, Prometheus text and an HTML page.

use std::fmt::Write;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};

use crate::export::prometheus_text;
use crate::metrics::Stats;

/// A [`Router`] with the cache's stats, to mount where you like
/// (`.nest("/cache-stats", stats_router())`):
///
/// - `GET /` — the [`stats()`](crate::stats) snapshot as JSON: per function
///   hits, misses, `hit_rate`, the local/shared split, latencies, entries
///   and shared-tier errors;
/// - `GET /metrics` — the same in the Prometheus text format
///   ([`prometheus_text`]);
/// - `GET /ui` — an HTML page with a hit-rate chart per function
///   ([`stats_html`]).
///
/// ```
/// use axum::Router;
/// let app: Router = Router::new().nest("/cache-stats", layercache_runtime::web::stats_router());
/// # drop(app);
/// ```
pub fn stats_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Json(crate::stats()) }))
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    prometheus_text(&crate::stats()),
                )
                    .into_response()
            }),
        )
        .route("/ui", get(|| async { Html(stats_html(&crate::stats())) }))
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
fn micros(l: &crate::metrics::LatencyStats, ns: u64) -> String {
    if l.count == 0 {
        return "-".into();
    }
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}

/// A self-contained HTML page (no scripts, no external resources): one
/// horizontal bar per function showing its hit rate, split into local and
/// shared hits, and a table of the counters.
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
    let (hits, misses) = stats.totals();
    let total = hits + misses;
    let rate = if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>layercache stats</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}\
         h1{{font-size:1.4rem}} .summary{{color:#555}}\
         table{{border-collapse:collapse;margin-top:1.5rem;font-size:.9rem}}\
         th,td{{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}\
         .legend span{{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}}\
         </style></head><body>\
         <h1>layercache: hit rate per function</h1>\
         <p class=\"summary\">{} functions, {hits} hits, {misses} misses, overall hit rate {:.1}%</p>\
         <p class=\"legend\"><span style=\"background:#2b8a3e\"></span>local hits\
         <span style=\"background:#74c0fc\"></span>shared hits\
         <span style=\"background:#ffa8a8\"></span>misses</p>",
        stats.functions.len(),
        rate * 100.0,
    );
    let height = ROW * stats.functions.len().max(1) + 10;
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"hit rate per function\">",
        LABEL + BAR + 80
    );
    for (i, f) in stats.functions.iter().enumerate() {
        let y = i * ROW + 5;
        if f.requests() == 0 {
            let _ = write!(
                out,
                "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text>\
                 <rect x=\"{LABEL}\" y=\"{y}\" width=\"{BAR}\" height=\"22\" fill=\"#e9ecef\"/>\
                 <text x=\"{}\" y=\"{}\" font-size=\"13\" fill=\"#868e96\">no calls</text>",
                y + 16,
                Esc(&f.name),
                LABEL + BAR + 8,
                y + 16,
            );
            continue;
        }
        let requests = f.requests() as f64;
        let local = f.local_hits as f64 / requests * BAR as f64;
        // Coalesced callers are hits answered by neither tier: shown with shared.
        let shared = (f.hits - f.local_hits.min(f.hits)) as f64 / requests * BAR as f64;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text>\
             <rect x=\"{LABEL}\" y=\"{y}\" width=\"{BAR}\" height=\"22\" fill=\"#ffa8a8\"/>\
             <rect x=\"{LABEL}\" y=\"{y}\" width=\"{local:.1}\" height=\"22\" fill=\"#2b8a3e\"/>\
             <rect x=\"{:.1}\" y=\"{y}\" width=\"{shared:.1}\" height=\"22\" fill=\"#74c0fc\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"13\">{:.1}%</text>",
            y + 16,
            Esc(&f.name),
            LABEL as f64 + local,
            LABEL + BAR + 8,
            y + 16,
            f.hit_rate() * 100.0,
        );
    }
    out.push_str("</svg><table><tr><th>function</th><th>hits</th><th>local</th><th>shared</th><th>misses</th><th>hit rate</th><th>entries</th><th>errors</th><th>hit p50</th><th>origin mean</th></tr>");
    for f in &stats.functions {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            Esc(&f.name),
            f.hits,
            f.local_hits,
            f.shared_hits,
            f.misses,
            f.hit_rate() * 100.0,
            f.entries,
            f.shared.errors(),
            micros(&f.hit_latency, f.hit_latency.p50_ns),
            micros(&f.origin_latency, f.origin_latency.mean_ns),
        );
    }
    out.push_str("</table></body></html>\n");
    out
}
