use layercache::cached;

#[cached(time_to_idle = 0)]
fn zero(x: u32) -> u32 {
    x
}

#[cached(time_to_idle_ms = -500)]
fn negative(x: u32) -> u32 {
    x
}

#[cached(timeout = 60, time_to_idle = 60)]
fn not_below_timeout(x: u32) -> u32 {
    x
}

#[cached(time_to_idle = 30, time_to_idle_ms = 500)]
fn both_spellings(x: u32) -> u32 {
    x
}

#[cached(timeout = 60, time_to_idle = 10, refresh_ahead = 0.8)]
fn with_refresh_ahead(x: u32) -> u32 {
    x
}

#[cached(time_to_idle = 10, stale_if_error = 60, soft_timeout_ms = 100)]
fn with_factory_timeout(x: u32) -> Result<u32, String> {
    Ok(x)
}

fn main() {}
