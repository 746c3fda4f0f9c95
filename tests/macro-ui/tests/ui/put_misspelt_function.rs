use layercache::{cache_put, cached};

#[cached]
fn get_user(id: u64) -> String {
    id.to_string()
}

#[cache_put(get_usr(id))]
fn save_user(id: u64) -> String {
    id.to_string()
}

fn main() {}
