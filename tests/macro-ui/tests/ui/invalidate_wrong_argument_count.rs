use layercache::{cache_invalidate, cached};

#[cached]
fn search(query: &str, page: u32) -> Vec<String> {
    vec![format!("{query}{page}")]
}

#[cache_invalidate(search(query))]
fn reindex(query: &str) {}

fn main() {}
