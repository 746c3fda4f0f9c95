use layercache::cached;

#[cached(timeout = 300, refresh_ahead = 0.8)]
fn news(region: &str) -> String {
    region.to_string()
}

fn main() {}
