use layercache::cached;

#[cached(frobnicate = 1)]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
