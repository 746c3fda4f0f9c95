//! Reading criterion's estimates back, to print ratios against peers.
#![allow(dead_code)]

use std::path::PathBuf;

/// Where criterion writes its results (`$CARGO_TARGET_DIR/criterion`, by
/// default the workspace's `target/`: this crate lives one level below it).
pub fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// The mean time (ns) criterion estimated for `group/id` in this run.
pub fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let path = output_dir()
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// Writes `results` as `$BENCH_RESULTS_DIR/{name}.json` when that variable
/// is set (`scripts/bench.sh` sets it and builds BENCHMARKS.md from the
/// files); does nothing otherwise.
pub fn write_results(name: &str, results: &serde_json::Value) {
    let Some(dir) = std::env::var_os("BENCH_RESULTS_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create BENCH_RESULTS_DIR");
    let text = serde_json::to_string_pretty(results).expect("results as JSON");
    std::fs::write(dir.join(format!("{name}.json")), text).expect("write the results");
}
