use layercache::cached;

#[cached(time = 60, key_prefix = "square")]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
