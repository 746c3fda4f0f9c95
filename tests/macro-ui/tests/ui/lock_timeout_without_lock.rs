use layercache::cached;

#[cached(timeout = 300, lock_timeout = 10)]
fn report(id: u64) -> u64 {
    id
}

fn main() {}
