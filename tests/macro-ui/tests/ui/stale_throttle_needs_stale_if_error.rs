use layercache::cached;

#[cached(timeout = 60, stale_throttle = 30)]
fn fetch(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
