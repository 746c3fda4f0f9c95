use layercache::cached;

#[cached(timeout = 300, tier = "local", lock = true)]
fn report(id: u64) -> u64 {
    id
}

fn main() {}
