use layercache::cached;

#[cached(key = "{pair.99999999999}")]
fn first(pair: (u32, u32)) -> u32 {
    pair.0
}

fn main() {}
