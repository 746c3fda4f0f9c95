use layercache::cached;

#[cached(timeout = 300, none_timeout = 30)]
fn find(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
