use layercache::cached;

#[cached(key = "{first}-{last}")]
fn full_name(first: &str, last: &str) -> String {
    format!("{first} {last}")
}

fn main() {}
