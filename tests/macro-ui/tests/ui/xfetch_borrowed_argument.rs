use layercache::cached;

#[cached(timeout = 60, xfetch = 1.0)]
fn hot(name: &str) -> usize {
    name.len()
}

fn main() {}
