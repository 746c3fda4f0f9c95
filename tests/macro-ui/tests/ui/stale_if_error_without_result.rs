use layercache::cached;

#[cached(timeout = 300, stale_if_error = 600)]
fn lookup(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
