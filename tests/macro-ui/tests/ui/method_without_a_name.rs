// A method's cache needs a name that does not depend on the compiler:
// `#[cached]` cannot see the `impl` type, and `std::any::type_name` may
// change between compiler versions (and every key with it).
use layercache::cached;

#[derive(Clone, Hash, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Repo {
    tenant: String,
}

impl Repo {
    #[cached]
    fn item(&self, id: u32) -> String {
        format!("{}/{id}", self.tenant)
    }
}

fn main() {
    let _ = Repo { tenant: String::new() }.item(1);
}
