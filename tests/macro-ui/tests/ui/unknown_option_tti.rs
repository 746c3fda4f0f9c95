use layercache::cached;

#[cached(tti = 60)]
fn session(token: String) -> usize {
    token.len()
}

fn main() {}
