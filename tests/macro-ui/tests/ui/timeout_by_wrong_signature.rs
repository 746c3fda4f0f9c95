use layercache::cached;
use std::time::Duration;

fn ttl_of(v: &String) -> Duration {
    Duration::from_secs(v.len() as u64)
}

#[cached(timeout = 300, timeout_by = ttl_of)]
fn fetch(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
