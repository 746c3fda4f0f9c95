//! The generated code of representative `#[cached]`, `#[cache_invalidate]`
//! and `#[cache_put]` uses, pinned as text (`tests/expansion/*.txt`), so a
//! refactor of the macros cannot change what users' code compiles to
//! unnoticed. After an intended change, rerun with
//! `LAYERCACHE_SNAPSHOTS=overwrite` and review the diff.

use proc_macro2::TokenStream;

type Expander = fn(TokenStream, TokenStream) -> syn::Result<TokenStream>;

/// `(snapshot name, expander, attribute arguments, item)`.
const CASES: &[(&str, Expander, &str, &str)] = &[
    ("plain", crate::expand::cached, "", "fn square(x: u64) -> u64 { x * x }"),
    (
        "async_result_prefix",
        crate::expand::cached,
        "timeout = 300, key_prefix = \"user_profile\"",
        "pub async fn get_user_profile(user_id: u64) -> Result<String, String> { Ok(user_id.to_string()) }",
    ),
    (
        "template_borrowed",
        crate::expand::cached,
        "timeout = 60, key_prefix = \"search\", key = \"{query}:page:{page}\"",
        "fn search(query: &str, page: u32) -> Vec<String> { vec![format!(\"{query}{page}\")] }",
    ),
    (
        "method_ref_prefix",
        crate::expand::cached,
        "key_prefix = \"repo_item\", timeout_ms = 250",
        "pub(crate) fn item(&self, id: u32) -> String { format!(\"{}/{id}\", self.tenant) }",
    ),
    (
        "method_in_impl_typed_receiver",
        crate::expand::cached,
        "in_impl = \"Repo\", tags = [\"repo:{id}\"]",
        "fn item(self: &std::sync::Arc<Self>, id: u32) -> u32 { id }",
    ),
    (
        "method_by_value_template",
        crate::expand::cached,
        "in_impl = \"Repo\", key = \"{self.id}:{n}\"",
        "fn scaled(self, n: u32) -> u32 { self.id * n }",
    ),
    (
        "associated_self_in_body",
        crate::expand::cached,
        "",
        "fn make(id: u32) -> u32 { let _ = Self::zero(); id }",
    ),
    (
        "associated_in_impl_flag",
        crate::expand::cached,
        "in_impl, key_prefix = \"make\"",
        "fn make(id: u32) -> u32 { id }",
    ),
    (
        "impl_block_names_methods",
        cached_impl,
        "",
        "impl Repo { #[cached] fn item(&self, id: u32) -> u32 { id } #[cached(timeout = 5)] fn other(&self) -> u32 { 1 } #[layercache::cached(key_prefix = \"named\")] fn named(&self) -> u32 { 2 } fn plain(&self) {} }",
    ),
    (
        "negative_jitter_local",
        crate::expand::cached,
        "timeout = 60, cache_none = true, none_timeout_ms = 500, jitter = 0.1, tier = \"local\", max_entries = 100",
        "fn find(id: u64) -> Option<u64> { (id < 10).then_some(id) }",
    ),
    (
        "negative_bare_flag_async",
        crate::expand::cached,
        "timeout = 60, cache_none, none_timeout = 5, jitter = 0",
        "async fn find(id: u64) -> Option<u64> { Some(id) }",
    ),
    (
        "lock_stale_versioned",
        crate::expand::cached,
        "timeout_ms = 1500, lock, lock_timeout = 10, stale_if_error = 600, versioned = \"catalog\", tier = \"shared\"",
        "async fn price(item: String) -> Result<u64, std::io::Error> { Ok(item.len() as u64) }",
    ),
    (
        "lock_default_timeout",
        crate::expand::cached,
        "lock = true, local_timeout_ms = 200",
        "fn report(id: u64) -> u64 { id }",
    ),
    (
        "refresh_ahead_sync",
        crate::expand::cached,
        "timeout = 10, refresh_ahead = 0.8, tier = \"both\", local_timeout = 5",
        "fn news(region: String) -> String { region }",
    ),
    (
        "refresh_ahead_async_unless",
        crate::expand::cached,
        "refresh_ahead = 0.5, unless = skip",
        "async fn news(region: String, skip: bool) -> String { region }",
    ),
    (
        "unless_function_cache_if_path",
        crate::expand::cached,
        "unless = is_admin, cache_if = worth_caching",
        "fn lookup(id: u64) -> u64 { id }",
    ),
    (
        "unless_expression_cache_if_closure",
        crate::expand::cached,
        "unless = id > 10, cache_if = |v: &u64| *v > 0",
        "async fn lookup(id: u64) -> u64 { id }",
    ),
    (
        "tags_from_key",
        crate::expand::cached,
        "key_prefix = \"tagged\", tags = [\"user:{id}\", \"all\"]",
        "fn tagged(id: u64, page: u32) -> u64 { id + u64::from(page) }",
    ),
    (
        "tags_with_template",
        crate::expand::cached,
        "key = \"{name}\", tags = [\"name:{name}\"]",
        "pub async fn tagged_by_name(name: &str) -> usize { name.len() }",
    ),
    (
        "never_expires_output_alias",
        crate::expand::cached,
        "timeout = 0, output = \"result\"",
        "fn load(id: u64) -> MyResult<u64> { Ok(id) }",
    ),
    (
        "unsafe_generic_lifetime",
        crate::expand::cached,
        "key = \"{text}\"",
        "pub(crate) unsafe fn len<'a>(text: &'a str) -> usize where 'a: 'a { text.len() }",
    ),
    (
        "mut_binding_reference_arg",
        crate::expand::cached,
        "",
        "fn total(mut n: u64, name: &String, items: &[u32]) -> u64 { n += 1; n }",
    ),
    (
        "several_mistakes_reported_together",
        crate::expand::cached,
        "tier = \"local\", lock, refresh_ahead = 0.5, timeout = 5, timeout_ms = 5, stale_if_error = 60",
        "fn lookup(&self, region: &str, words: &[&str]) -> u64 { 1 }",
    ),
    (
        "signature_mistakes_stop_the_other_checks",
        crate::expand::cached,
        "cache_none",
        "const fn bump<T>(&mut self, (a, b): (u32, u32)) { }",
    ),
    (
        "template_mistakes",
        crate::invalidate::cache_invalidate,
        "tag = \"{}\", tag = \"{id:>5}\", prefix = \"a}b\", tag = \"{id.}\", tag = \"{ID}\", tag = \"{id}{id}\", tag = \"{id\"",
        "fn drop_user(id: u64) {}",
    ),
    (
        "invalidate_targets",
        crate::invalidate::cache_invalidate,
        "get_user(user_id), all = search, prefix = \"search:{user_id}\", tag = \"user:{user_id}\"",
        "async fn update_user(user_id: u64) -> Result<(), String> { Ok(()) }",
    ),
    (
        "invalidate_before_method",
        crate::invalidate::cache_invalidate,
        "self.item(id), before = true",
        "fn drop_item(&self, id: u32) { }",
    ),
    (
        "put_result",
        crate::invalidate::cache_put,
        "get_user(user.id), output = \"result\"",
        "fn save_user(user: User) -> Saved<User> { Ok(user) }",
    ),
];

fn cached_impl(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    crate::in_impl::cached_impl(args, syn::parse2(item)?)
}

fn expand(expander: Expander, args: &str, item: &str) -> String {
    let args: TokenStream = args.parse().expect("attribute arguments tokenize");
    let item: TokenStream = item.parse().expect("item tokenizes");
    match expander(args, item) {
        Ok(tokens) => tokens.to_string(),
        Err(err) => format!("error: {}", err.to_compile_error()),
    }
}

#[test]
fn expansions_of_representative_uses_are_unchanged() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expansion");
    let overwrite = std::env::var("LAYERCACHE_SNAPSHOTS").as_deref() == Ok("overwrite");
    let mut changed = Vec::new();
    for (name, expander, args, item) in CASES {
        let got = expand(*expander, args, item);
        let path = dir.join(format!("{name}.txt"));
        if overwrite {
            std::fs::write(&path, &got).expect("snapshot written");
            continue;
        }
        let pinned = std::fs::read_to_string(&path).unwrap_or_default();
        if pinned != got {
            changed.push(format!("{name}:\n  pinned: {pinned}\n  now:    {got}"));
        }
    }
    assert!(
        changed.is_empty(),
        "expansions changed:\n{}",
        changed.join("\n")
    );
}
