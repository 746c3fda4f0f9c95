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
        "throttle_and_timeout_by",
        crate::expand::cached,
        "timeout = 3600, timeout_by = ttl_of, stale_if_error = 600, stale_throttle_ms = 500",
        "fn quote(symbol: String) -> Result<Quote, Error> { fetch(&symbol) }",
    ),
    (
        "factory_timeouts",
        crate::expand::cached,
        "timeout = 60, stale_if_error = 600, soft_timeout_ms = 100, hard_timeout_ms = 2000",
        "async fn rate(pair: String) -> Result<f64, ApiError> { fetch(pair).await }",
    ),
    (
        "max_bytes_with_max_entries",
        crate::expand::cached,
        "max_bytes = 67108864, max_entries = 1000",
        "fn page(path: String) -> Vec<u8> { path.into_bytes() }",
    ),
    (
        "force_refresh_flag_with_unless",
        crate::expand::cached,
        "timeout = 300, key = \"{id}\", force_refresh = fresh, unless = id == 0",
        "fn report(id: u64, fresh: bool) -> u64 { id }",
    ),
    (
        "xfetch_with_lock",
        crate::expand::cached,
        "timeout = 300, xfetch = 1.5, lock = true",
        "fn hot(id: u64) -> u64 { id }",
    ),
    (
        "time_to_idle_sync",
        crate::expand::cached,
        "timeout = 3600, time_to_idle = 60",
        "fn session(token: &str) -> u64 { 1 }",
    ),
    (
        "time_to_idle_async_alone",
        crate::expand::cached,
        "time_to_idle_ms = 500, key = \"{id}\"",
        "async fn profile(id: u64) -> Option<u64> { Some(id) }",
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
        "generic_where_clause",
        crate::expand::cached,
        "key_prefix = \"describe\"",
        "pub fn describe<'a, T: Clone, U>(x: &'a T, n: u32) -> Vec<U> where T: Hash, U: Clone { vec![] }",
    ),
    (
        "generic_method_async",
        crate::expand::cached,
        "in_impl = \"Repo\", key = \"{id}\"",
        "async fn label<T: Display>(&self, id: T) -> String { id.to_string() }",
    ),
    (
        "derive_type_key",
        derive_type_key,
        "",
        "struct UserId(u64);",
    ),
    (
        "derive_type_key_generic_named",
        derive_type_key,
        "",
        "#[cache_key_type(name = \"page\")] struct Page<T: Clone, const N: usize> where T: Eq { items: [T; N] }",
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

/// Misuses whose error message is pinned, one line each in
/// `tests/expansion/mistakes.txt`: `(name, expander, arguments, item)`.
const MISTAKES: &[(&str, Expander, &str, &str)] = &[
    ("cached_not_on_fn", crate::expand::cached, "", "struct S;"),
    ("cached_needs_value", crate::expand::cached, "timeout", F),
    ("cached_list", crate::expand::cached, "timeout(5)", F),
    ("cached_path_option", crate::expand::cached, "a::b = 1", F),
    ("cached_alias", crate::expand::cached, "ttl_ms = 5", F),
    ("cached_int", crate::expand::cached, "timeout = \"5\"", F),
    ("cached_int_ms", crate::expand::cached, "timeout_ms = x", F),
    (
        "cached_max_entries_zero",
        crate::expand::cached,
        "max_entries = 0",
        F,
    ),
    (
        "cached_max_bytes_zero",
        crate::expand::cached,
        "max_bytes = 0",
        F,
    ),
    (
        "cached_max_bytes_not_int",
        crate::expand::cached,
        "max_bytes = \"64MiB\"",
        F,
    ),
    (
        "cached_alias_max_memory",
        crate::expand::cached,
        "max_memory = 1024",
        F,
    ),
    ("cached_key_not_str", crate::expand::cached, "key = 5", F),
    (
        "cached_prefix_empty",
        crate::expand::cached,
        "key_prefix = \"\"",
        F,
    ),
    (
        "cached_prefix_space",
        crate::expand::cached,
        "key_prefix = \"a b\"",
        F,
    ),
    (
        "cached_prefix_colon",
        crate::expand::cached,
        "versioned = \"a:\"",
        F,
    ),
    ("cached_jitter_path", crate::expand::cached, "jitter = x", F),
    ("cached_jitter_one", crate::expand::cached, "jitter = 1", F),
    ("cached_flag", crate::expand::cached, "cache_none = 1", F),
    (
        "cached_in_impl_flag",
        crate::expand::cached,
        "in_impl = 1",
        F,
    ),
    (
        "cached_none_timeout_zero",
        crate::expand::cached,
        "none_timeout = 0",
        F,
    ),
    (
        "cached_lock_timeout_ms_zero",
        crate::expand::cached,
        "lock_timeout_ms = 0",
        F,
    ),
    (
        "cached_lock_timeout_secs",
        crate::expand::cached,
        "lock, lock_timeout = x",
        F,
    ),
    (
        "cached_stale_zero",
        crate::expand::cached,
        "stale_if_error = 0",
        F,
    ),
    (
        "cached_time_to_idle_zero",
        crate::expand::cached,
        "time_to_idle = 0",
        F,
    ),
    (
        "cached_time_to_idle_negative",
        crate::expand::cached,
        "time_to_idle_ms = -5",
        F,
    ),
    (
        "cached_time_to_idle_not_below_timeout",
        crate::expand::cached,
        "timeout = 60, time_to_idle = 60",
        F,
    ),
    (
        "cached_time_to_idle_both_spellings",
        crate::expand::cached,
        "time_to_idle = 6, time_to_idle_ms = 500",
        F,
    ),
    (
        "cached_time_to_idle_with_xfetch",
        crate::expand::cached,
        "time_to_idle = 6, xfetch = 1.0",
        F,
    ),
    (
        "cached_refresh_int",
        crate::expand::cached,
        "refresh_ahead = 1",
        F,
    ),
    (
        "cached_refresh_range",
        crate::expand::cached,
        "refresh_ahead = 1.5",
        F,
    ),
    (
        "cached_refresh_shared",
        crate::expand::cached,
        "refresh_ahead = 0.5, tier = \"shared\"",
        F,
    ),
    ("cached_tags_empty", crate::expand::cached, "tags = []", F),
    (
        "cached_tags_not_str",
        crate::expand::cached,
        "tags = [1]",
        F,
    ),
    ("cached_output", crate::expand::cached, "output = \"x\"", F),
    (
        "cached_both_local_timeouts",
        crate::expand::cached,
        "local_timeout_ms = 5, local_timeout = 5",
        F,
    ),
    (
        "cached_both_none_timeouts",
        crate::expand::cached,
        "cache_none, none_timeout = 5, none_timeout_ms = 5",
        "fn f(x: u64) -> Option<u64> { None }",
    ),
    (
        "cached_both_lock_timeouts",
        crate::expand::cached,
        "lock, lock_timeout = 5, lock_timeout_ms = 5",
        F,
    ),
    (
        "cached_tag_names_no_argument",
        crate::expand::cached,
        "tags = [\"{y}\"]",
        F,
    ),
    (
        "cached_refresh_self",
        crate::expand::cached,
        "refresh_ahead = 0.5, key_prefix = \"m\"",
        "fn m(&self) -> u64 { 1 }",
    ),
    (
        "cached_impl_trait_return",
        crate::expand::cached,
        "",
        "fn f(x: u64) -> impl Clone { x }",
    ),
    (
        "cached_const_param",
        crate::expand::cached,
        "",
        "fn f<const N: usize>(x: u64) -> u64 { x }",
    ),
    (
        "invalidate_no_target",
        crate::invalidate::cache_invalidate,
        "",
        G,
    ),
    (
        "invalidate_only_before",
        crate::invalidate::cache_invalidate,
        "before = true",
        G,
    ),
    (
        "invalidate_all_not_path",
        crate::invalidate::cache_invalidate,
        "all = 1",
        G,
    ),
    (
        "invalidate_prefix_not_str",
        crate::invalidate::cache_invalidate,
        "prefix = 1",
        G,
    ),
    (
        "invalidate_prefix_not_lit",
        crate::invalidate::cache_invalidate,
        "prefix = x",
        G,
    ),
    (
        "invalidate_prefix_empty",
        crate::invalidate::cache_invalidate,
        "prefix = \"\"",
        G,
    ),
    (
        "invalidate_tag_not_str",
        crate::invalidate::cache_invalidate,
        "tag = 1",
        G,
    ),
    (
        "invalidate_before_not_bool",
        crate::invalidate::cache_invalidate,
        "f(x), before = 1",
        G,
    ),
    (
        "invalidate_before_not_lit",
        crate::invalidate::cache_invalidate,
        "f(x), before = x",
        G,
    ),
    (
        "invalidate_output",
        crate::invalidate::cache_invalidate,
        "f(x), output = \"bogus\"",
        G,
    ),
    (
        "invalidate_option_without_value",
        crate::invalidate::cache_invalidate,
        "before",
        G,
    ),
    (
        "invalidate_assign_to_field",
        crate::invalidate::cache_invalidate,
        "a.b = 1",
        G,
    ),
    (
        "invalidate_not_a_call",
        crate::invalidate::cache_invalidate,
        "f(x).g",
        G,
    ),
    (
        "invalidate_call_of_expr",
        crate::invalidate::cache_invalidate,
        "(f)(x)",
        G,
    ),
    (
        "invalidate_not_on_fn",
        crate::invalidate::cache_invalidate,
        "f(x)",
        "struct S;",
    ),
    (
        "derive_type_key_lifetime",
        derive_type_key,
        "",
        "struct Borrowed<'a>(&'a str);",
    ),
    (
        "derive_type_key_glob_name",
        derive_type_key,
        "",
        "#[cache_key_type(name = \"user*\")] struct User;",
    ),
    (
        "derive_type_key_unknown_option",
        derive_type_key,
        "",
        "#[cache_key_type(rename = \"user\")] struct User;",
    ),
    ("put_no_target", crate::invalidate::cache_put, "", F),
    (
        "put_two_targets",
        crate::invalidate::cache_put,
        "f(x), g(x)",
        F,
    ),
    (
        "put_unknown_option",
        crate::invalidate::cache_put,
        "f(x), outputs = \"result\"",
        F,
    ),
    (
        "put_assign_to_field",
        crate::invalidate::cache_put,
        "f(x), a.b = 1",
        F,
    ),
    (
        "put_output",
        crate::invalidate::cache_put,
        "f(x), output = 1",
        F,
    ),
];

/// The function most mistakes are written on.
const F: &str = "fn f(x: u64) -> u64 { x }";
/// The same without a return value.
const G: &str = "fn g(x: u64) {}";

fn cached_impl(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    crate::in_impl::cached_impl(args, syn::parse2(item)?)
}

fn derive_type_key(_: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    crate::type_key::derive(item)
}

fn expand(expander: Expander, args: &str, item: &str) -> String {
    let args: TokenStream = args.parse().expect("attribute arguments tokenize");
    let item: TokenStream = item.parse().expect("item tokenizes");
    match expander(args, item) {
        Ok(tokens) => tokens.to_string(),
        Err(err) => format!("error: {}", err.to_compile_error()),
    }
}

/// Whether `got` is what `tests/expansion/{name}.txt` pins (or pins it,
/// with `LAYERCACHE_SNAPSHOTS=overwrite`); the difference if not.
fn compare(name: &str, got: &str) -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expansion")
        .join(format!("{name}.txt"));
    if std::env::var("LAYERCACHE_SNAPSHOTS").as_deref() == Ok("overwrite") {
        std::fs::write(&path, got).expect("snapshot written");
        return None;
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_default();
    (pinned != got).then(|| format!("{name}:\n  pinned: {pinned}\n  now:    {got}"))
}

#[test]
fn expansions_of_representative_uses_are_unchanged() {
    let changed: Vec<String> = CASES
        .iter()
        .filter_map(|(name, expander, args, item)| compare(name, &expand(*expander, args, item)))
        .collect();
    assert!(
        changed.is_empty(),
        "expansions changed:\n{}",
        changed.join("\n")
    );
}

#[test]
fn messages_of_misuses_are_unchanged() {
    let got: String = MISTAKES
        .iter()
        .map(|(name, expander, args, item)| format!("{name}: {}\n", expand(*expander, args, item)))
        .collect();
    if let Some(diff) = compare("mistakes", &got) {
        panic!("messages changed:\n{diff}");
    }
}
