use std::hash::Hash;

use layercache::cached;
use serde::Serialize;

// `T` can be a key, but has no stable name for its instantiation's cache.
#[cached]
fn show<T: Hash + Eq + Clone + Send + Sync + Serialize + std::fmt::Display + 'static>(value: T) -> String {
    value.to_string()
}

fn main() {
    show(1u64);
}
