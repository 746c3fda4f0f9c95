use layercache::cached;

#[cached]
fn total(words: &[&str]) -> usize {
    words.len()
}

fn main() {}
