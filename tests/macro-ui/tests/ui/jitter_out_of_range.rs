use layercache::cached;

#[cached(timeout = 300, jitter = 1.5)]
fn lookup(id: u64) -> u64 {
    id
}

fn main() {}
