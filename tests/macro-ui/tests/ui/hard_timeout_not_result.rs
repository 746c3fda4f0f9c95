use layercache::cached;

#[cached(timeout = 60, hard_timeout_ms = 2000)]
fn fetch(id: u64) -> u64 {
    id
}

fn main() {}
