//! The cost of metrics on the local hit path: the same warm `#[cached]`
//! `u64` hit in two processes, one with `CACHE_METRICS=on` and one with
//! `off` (the setting is per process), alternated over several rounds;
//! medians are compared.
//!
//! `cargo bench --bench metrics_cost`

#[path = "support/report.rs"]
mod report;

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

const KEYS: u64 = 1024;
const HITS: u64 = 20_000_000;
const ROUNDS: usize = 7;

#[layercache::cached(timeout = 300)]
fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// Child: warm, then time `HITS` hits; print ns per hit.
fn child() {
    for k in 0..KEYS {
        square(k);
    }
    let started = Instant::now();
    let mut k = 0u64;
    for _ in 0..HITS {
        black_box(square(black_box(k % KEYS)));
        k = k.wrapping_add(1);
    }
    let ns = started.elapsed().as_nanos() as f64 / HITS as f64;
    let counted = layercache::stats()
        .function("metrics_cost::square")
        .map_or(0, |f| f.hits);
    println!("NS {ns} {counted}");
}

fn run(metrics: &str) -> f64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("METRICS_COST_CHILD", "1")
        .env("CACHE_METRICS", metrics)
        .output()
        .expect("run a child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("NS "))
        .unwrap_or_else(|| panic!("no result: {text} {}", String::from_utf8_lossy(&out.stderr)));
    let mut parts = line.split(' ');
    let ns: f64 = parts.next().unwrap().parse().unwrap();
    let counted: u64 = parts.next().unwrap().parse().unwrap();
    match metrics {
        "on" => assert_eq!(counted, HITS, "metrics on: every hit counted"),
        _ => assert_eq!(counted, 0, "metrics off: nothing counted"),
    }
    ns
}

fn main() {
    if std::env::var_os("METRICS_COST_CHILD").is_some() {
        child();
        return;
    }
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round.is_multiple_of(2) {
            on.push(run("on"));
            off.push(run("off"));
        } else {
            off.push(run("off"));
            on.push(run("on"));
        }
    }
    on.sort_by(f64::total_cmp);
    off.sort_by(f64::total_cmp);
    let (on, off) = (on[ROUNDS / 2], off[ROUNDS / 2]);
    println!(
        "metrics cost: local u64 hit {on:.2} ns with metrics, {off:.2} ns without = {:+.1} % (bar: at most 10 %)",
        (on / off - 1.0) * 100.0
    );
    report::write_results(
        "metrics_cost",
        &serde_json::json!({ "on_ns": on, "off_ns": off, "rounds": ROUNDS }),
    );
}
