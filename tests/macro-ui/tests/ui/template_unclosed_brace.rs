use layercache::cached;

#[cached(key = "{query")]
fn search(query: &str) -> Vec<String> {
    vec![query.to_string()]
}

fn main() {}
