use layercache::cached;

#[cached(timeout = "300")]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
