use layercache::cached;

#[cached(timeout = 60, force_refresh)]
fn report(id: u64) -> u64 {
    id
}

fn main() {}
