// `#[cached]` cannot go on a method of a trait impl: its companions are not
// members of the trait. Cache an inherent method and call it from the impl.
use layercache::cached;

trait Pricing {
    fn price(&self, item: u32) -> u64;
}

#[derive(Clone, Hash, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Catalog;

impl Pricing for Catalog {
    #[cached(key_prefix = "price")]
    fn price(&self, item: u32) -> u64 {
        u64::from(item) * 100
    }
}

fn main() {}
