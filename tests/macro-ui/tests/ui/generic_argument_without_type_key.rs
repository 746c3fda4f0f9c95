use layercache::{cached, CacheKeyType};
use serde::Serialize;

#[derive(Clone, Hash, PartialEq, Eq, Serialize)]
struct Sku(u64);

#[cached]
fn label<T: CacheKeyType + std::hash::Hash + Eq + Clone + Send + Sync + Serialize>(value: T) -> usize {
    let _ = value;
    1
}

fn main() {
    // `Sku` neither derives nor implements `CacheKeyType`.
    label(Sku(1));
}
