use layercache::cached;

#[cached(timeout = 5, timeout = 6)]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
