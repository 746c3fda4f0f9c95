use layercache::cached;

fn keep(v: &String) -> bool {
    !v.is_empty()
}

#[cached(timeout = 300, cache_if = keep)]
fn lookup(id: u64) -> u64 {
    id
}

fn main() {}
