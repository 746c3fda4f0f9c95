use layercache::cached;

#[cached(timeout = 60, xfetch = 0.0)]
fn hot(id: u64) -> u64 {
    id
}

fn main() {}
