use layercache::cached;

#[cached(timeout = 60, soft_timeout_ms = 100)]
fn fetch(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
