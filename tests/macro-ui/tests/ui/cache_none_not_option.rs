use layercache::cached;

#[cached(timeout = 300, cache_none = true)]
fn lookup(id: u64) -> u64 {
    id
}

fn main() {}
