use layercache::{cache_invalidate, cached};

#[cached]
fn get_user_profile(user_id: u64) -> String {
    user_id.to_string()
}

#[cache_invalidate(get_user_profile(name))]
fn rename(name: &str) {}

fn main() {}
