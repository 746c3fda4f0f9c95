use layercache::{cache_invalidate, cached};

#[cached(key_prefix = "user_profile")]
fn get_user_profile(user_id: u64) -> String {
    user_id.to_string()
}

#[cache_invalidate(get_user_profil(user_id))]
fn update_user(user_id: u64) {}

fn main() {}
