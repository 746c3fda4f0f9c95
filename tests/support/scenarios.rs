//! The runner of the multi-process test binaries (`harness = false`): each
//! scenario runs in turn (a positional argument filters by name), prints
//! libtest's lines, and the binary exits non-zero when any failed.
// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// Runs `scenarios` (name, body) and exits with 1 when any panicked.
pub fn run(scenarios: &[(&str, fn())]) {
    let mut runner = Runner::from_args();
    for (name, scenario) in scenarios {
        runner.run(name, scenario);
    }
    runner.finish();
}

/// Runs scenarios one by one, for binaries that run each on several
/// backends or around a shared server, and reports as libtest does.
pub struct Runner {
    filter: Vec<String>,
    ran: usize,
    failed: Vec<String>,
}

impl Runner {
    /// A runner filtered by the binary's positional arguments.
    pub fn from_args() -> Runner {
        Runner {
            filter: std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with('-'))
                .collect(),
            ran: 0,
            failed: Vec::new(),
        }
    }

    /// Runs `scenario` as `name`, unless the filter leaves it out; a panic
    /// fails it.
    pub fn run(&mut self, name: &str, scenario: impl FnOnce()) {
        if !self.filter.is_empty() && !self.filter.iter().any(|f| name.contains(f.as_str())) {
            return;
        }
        self.ran += 1;
        println!("test {name} ...");
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(scenario)) {
            Ok(()) => println!("test {name} ... ok ({:?})", started.elapsed()),
            Err(_) => {
                println!("test {name} ... FAILED");
                self.failed.push(name.to_string());
            }
        }
    }

    /// Prints the result line; exits with 1 when any scenario failed.
    pub fn finish(self) {
        println!(
            "\ntest result: {}. {} passed; {} failed",
            if self.failed.is_empty() {
                "ok"
            } else {
                "FAILED"
            },
            self.ran - self.failed.len(),
            self.failed.len()
        );
        if !self.failed.is_empty() {
            std::process::exit(1);
        }
    }
}
