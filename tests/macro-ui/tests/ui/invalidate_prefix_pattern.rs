use layercache::cache_invalidate;

#[cache_invalidate(prefix = "search:*")]
fn reindex() {}

fn main() {}
