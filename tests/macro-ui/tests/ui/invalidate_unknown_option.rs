use layercache::{cache_invalidate, cached};

#[cached]
fn search(query: &str) -> Vec<String> {
    vec![query.to_string()]
}

#[cache_invalidate(everything = search)]
fn reindex() {}

fn main() {}
