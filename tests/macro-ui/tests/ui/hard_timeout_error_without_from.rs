use layercache::cached;

#[derive(Debug, Clone)]
struct ApiError;

#[cached(timeout = 60, hard_timeout_ms = 2000)]
fn fetch(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

fn main() {}
