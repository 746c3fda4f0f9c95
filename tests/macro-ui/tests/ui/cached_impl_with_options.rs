// On an `impl` block `#[cached]` only names the methods' caches: options
// belong on the methods.
use layercache::cached;

#[derive(Clone, Hash, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Repo;

#[cached(timeout = 60)]
impl Repo {
    #[cached]
    fn item(&self, id: u32) -> u32 {
        id
    }
}

fn main() {}
