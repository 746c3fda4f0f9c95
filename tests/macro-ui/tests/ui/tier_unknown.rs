use layercache::cached;

#[cached(tier = "everywhere")]
fn lookup(id: u64) -> u64 {
    id
}

fn main() {}
