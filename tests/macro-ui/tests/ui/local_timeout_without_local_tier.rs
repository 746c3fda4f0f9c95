use layercache::cached;

#[cached(timeout = 300, tier = "shared", local_timeout = 5)]
fn lookup(id: u64) -> u64 {
    id
}

fn main() {}
