// `#[cached]` on an `impl` block with no `#[cached]` method does nothing:
// probably a method's attribute is missing.
use layercache::cached;

struct Repo;

#[cached]
impl Repo {
    fn item(&self, id: u32) -> u32 {
        id
    }
}

fn main() {}
