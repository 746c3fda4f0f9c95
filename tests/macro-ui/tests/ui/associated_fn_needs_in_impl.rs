// An associated function without `self` that never mentions `Self` looks
// like a free function to the macro: it needs `#[cached(in_impl)]`.
use layercache::cached;

struct Catalog;

impl Catalog {
    #[cached]
    fn price(item: u32) -> u64 {
        u64::from(item) * 100
    }
}

fn main() {
    let _ = Catalog::price(1);
}
