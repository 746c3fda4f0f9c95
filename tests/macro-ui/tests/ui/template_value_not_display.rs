use layercache::cached;

#[derive(Clone)]
struct Filter {
    tags: Vec<String>,
}

#[cached(key = "{filter.tags}")]
fn search(filter: &Filter) -> usize {
    filter.tags.len()
}

fn main() {}
