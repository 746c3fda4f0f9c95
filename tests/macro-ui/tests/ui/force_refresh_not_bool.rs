use layercache::cached;

#[cached(timeout = 60, key = "{id}", force_refresh = generation)]
fn report(id: u64, generation: u32) -> u64 {
    id + u64::from(generation)
}

fn main() {}
