use layercache::cached;

#[cached(timeout = 5, timeout_ms = 5000)]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
