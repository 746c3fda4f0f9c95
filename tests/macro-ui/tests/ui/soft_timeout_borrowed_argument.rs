use layercache::cached;

#[cached(timeout = 60, stale_if_error = 600, soft_timeout_ms = 100)]
fn fetch(name: &str) -> Result<usize, String> {
    Ok(name.len())
}

fn main() {}
