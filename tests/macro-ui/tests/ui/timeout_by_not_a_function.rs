use layercache::cached;

#[cached(timeout_by = 300)]
fn fetch(id: u64) -> u64 {
    id
}

fn main() {}
