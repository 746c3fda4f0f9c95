use layercache::cached;

#[cached(max_bytes = 0)]
fn page(path: String) -> Vec<u8> {
    path.into_bytes()
}

#[cached(max_bytes = "64 MiB")]
fn other_page(path: String) -> Vec<u8> {
    path.into_bytes()
}

fn main() {}
