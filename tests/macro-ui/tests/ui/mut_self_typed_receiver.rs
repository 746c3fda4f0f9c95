use layercache::cached;

#[derive(Clone, Hash, PartialEq, Eq)]
struct Counter(u64);

impl Counter {
    #[cached]
    fn bump(self: &mut Self) -> u64 {
        self.0 += 1;
        self.0
    }
}

fn main() {}
