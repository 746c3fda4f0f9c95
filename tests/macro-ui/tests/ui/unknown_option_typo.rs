use layercache::cached;

#[cached(key_prefx = "square")]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
