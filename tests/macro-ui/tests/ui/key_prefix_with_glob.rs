use layercache::cached;

#[cached(key_prefix = "user:*")]
fn profile(id: u64) -> String {
    id.to_string()
}

fn main() {}
