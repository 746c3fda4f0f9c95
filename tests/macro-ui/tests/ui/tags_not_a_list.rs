use layercache::cached;

#[cached(timeout = 300, tags = "user:{id}")]
fn profile(id: u64) -> u64 {
    id
}

fn main() {}
