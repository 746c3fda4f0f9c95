use layercache::cached;

#[cached]
fn scale(x: f64) -> u64 {
    (x * 2.0) as u64
}

fn main() {}
