use layercache::cached;

#[cached(timeout = 300, local_timeout_ms = 0)]
fn lookup(id: u64) -> u64 {
    id
}

fn main() {}
