// `in_impl = "Type"` is part of the cache's name and keys: no glob characters.
use layercache::cached;

#[derive(Clone, Hash, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Repo;

impl Repo {
    #[cached(in_impl = "Repo*")]
    fn item(&self, id: u32) -> u32 {
        id
    }
}

fn main() {}
