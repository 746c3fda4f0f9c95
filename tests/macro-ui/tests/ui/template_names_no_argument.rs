use layercache::cached;

#[cached(key = "{query}:page:{pgae}")]
fn search(query: &str, page: u32) -> Vec<String> {
    vec![format!("{query}{page}")]
}

fn main() {}
