//! The cost of metrics on the local hit path: the same warm `#[cached]`
//! `u64` hit in two processes, one with `CACHE_METRICS=on` and one with
//! `off` (the setting is per process). Each round runs the two at the same
//! time, one per core, so both see the same moment of a shared VM whose
//! speed drifts by tens of percent over seconds, and then again with the
//! cores swapped (`taskset`, where present), since one virtual core can be
//! slower than the other; a round's ratio is the geometric mean of the two
//! and the median of the rounds' ratios is reported.
//!
//! `cargo bench --bench metrics_cost`

#[path = "support/report.rs"]
mod report;

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

const KEYS: u64 = 1024;
const HITS: u64 = 10_000_000;
const ROUNDS: usize = 5;

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

fn spawn(metrics: &str, cpu: Option<usize>) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.env("METRICS_COST_CHILD", "1")
        .env("CACHE_METRICS", metrics)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run a child")
}

/// Whether children can be pinned to a core each.
fn can_pin() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && Command::new("taskset")
            .args(["-c", "0", "true"])
            .status()
            .is_ok_and(|s| s.success())
}

fn result(child: std::process::Child, metrics: &str) -> f64 {
    let out = child.wait_with_output().expect("a child's output");
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
    let (mut on, mut off, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let pin = can_pin();
    for _ in 0..ROUNDS {
        let mut round = Vec::new();
        for (on_cpu, off_cpu) in [(0, 1), (1, 0)] {
            let a = spawn("on", pin.then_some(on_cpu));
            let b = spawn("off", pin.then_some(off_cpu));
            let (o, f) = (result(a, "on"), result(b, "off"));
            on.push(o);
            off.push(f);
            round.push(o / f);
        }
        ratio.push((round[0] * round[1]).sqrt());
    }
    for v in [&mut on, &mut off, &mut ratio] {
        v.sort_by(f64::total_cmp);
    }
    let (on, off, ratio) = (on[on.len() / 2], off[off.len() / 2], ratio[ROUNDS / 2]);
    println!(
        "metrics cost: local u64 hit {on:.2} ns with metrics, {off:.2} ns without (medians); median of the rounds' ratios {:+.1} % (bar: at most 10 %)",
        (ratio - 1.0) * 100.0
    );
    report::write_results(
        "metrics_cost",
        &serde_json::json!({ "on_ns": on, "off_ns": off, "ratio": ratio, "rounds": ROUNDS }),
    );
}
