use layercache::cached;

#[cached]
fn repeat<const N: usize>(value: u64) -> u64 {
    value * N as u64
}

fn main() {}
