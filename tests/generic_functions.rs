//! `#[cached]` on functions with type parameters: one cache per
//! instantiation, named after the type arguments' stable `CacheKeyType`
//! names, so two instantiations never share an entry and their keys do not
//! depend on the compiler. In-process configuration; the shared tier is
//! covered by `tests/redis_fleet.rs`. Every test uses its own functions.

use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use layercache::{cache_invalidate, cache_put, cached, entry, fn_cache, CacheKeyType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

macro_rules! counter {
    ($name:ident) => {
        static $name: AtomicUsize = AtomicUsize::new(0);
    };
}

/// What a type argument of a key must be, spelled once for these tests.
trait KeyArg: CacheKeyType + Hash + Eq + Clone + Send + Sync + Serialize + std::fmt::Debug {}
impl<T: CacheKeyType + Hash + Eq + Clone + Send + Sync + Serialize + std::fmt::Debug> KeyArg for T {}

#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize, CacheKeyType)]
struct UserId(u64);

#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize, CacheKeyType)]
#[cache_key_type(name = "order")]
struct OrderId(u64);

#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize, CacheKeyType)]
struct Page<T>(T);

counter!(DESCRIBE_RUNS);
#[cached(key_prefix = "describe")]
fn describe<T: KeyArg>(x: T) -> String {
    DESCRIBE_RUNS.fetch_add(1, SeqCst);
    format!("{x:?}")
}

#[test]
fn each_instantiation_keeps_its_own_cache_named_after_its_type_arguments() {
    for _ in 0..3 {
        assert_eq!(describe(7u64), "7");
        assert_eq!(describe("7".to_string()), "\"7\"");
        assert_eq!(describe(UserId(7)), "UserId(7)");
        assert_eq!(describe(OrderId(7)), "OrderId(7)");
    }
    assert_eq!(DESCRIBE_RUNS.load(SeqCst), 4, "one run per instantiation");
    assert_eq!(fn_cache!(describe::<u64>).len(), 1);
    assert_eq!(fn_cache!(describe::<String>).len(), 1);
    let stats = layercache::stats();
    for name in [
        "describe<u64>",
        "describe<String>",
        "describe<generic_functions::UserId>",
        "describe<order>",
    ] {
        let f = stats.function(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!((f.misses, f.hits), (1, 2), "{name}");
    }
}

counter!(ALIKE_RUNS);
#[cached(key_prefix = "alike")]
fn alike<T: KeyArg>(x: T) -> String {
    ALIKE_RUNS.fetch_add(1, SeqCst);
    format!("{x:?}")
}

#[test]
fn arguments_that_encode_alike_in_two_instantiations_get_different_keys() {
    // postcard writes 2u64 and 1i64 as the same byte (1i64 zigzagged).
    assert_eq!(alike(2u64), "2");
    assert_eq!(alike(1i64), "1", "i64's cache ran its own body");
    assert_eq!(ALIKE_RUNS.load(SeqCst), 2);
    let unsigned = entry!(alike(2u64)).stable_key().unwrap();
    let signed = entry!(alike(1i64)).stable_key().unwrap();
    assert!(unsigned.starts_with("alike<u64>:"), "{unsigned}");
    assert!(signed.starts_with("alike<i64>:"), "{signed}");
    assert_eq!(
        unsigned["alike<u64>:".len()..],
        signed["alike<i64>:".len()..],
        "the same argument hash: the namespace alone tells them apart"
    );
}

counter!(PARSE_RUNS);
/// The type parameter is only in the return value.
#[cached(key_prefix = "parse")]
fn parse<T>(text: String) -> Option<T>
where
    T: CacheKeyType + std::str::FromStr + Clone + Send + Sync + Serialize + DeserializeOwned,
{
    PARSE_RUNS.fetch_add(1, SeqCst);
    text.parse().ok()
}

#[test]
fn a_type_parameter_of_the_return_value_alone_still_separates_the_caches() {
    assert_eq!(parse::<u8>("200".into()), Some(200));
    assert_eq!(parse::<i8>("200".into()), None, "not i8's cached u8");
    assert_eq!(parse::<u8>("200".into()), Some(200));
    assert_eq!(PARSE_RUNS.load(SeqCst), 2);
}

counter!(SIZED_RUNS);
/// Neither the key nor the value mentions `T`: only the instantiation does.
#[cached(key_prefix = "sized")]
fn size_times<T: CacheKeyType>(n: u64) -> u64 {
    SIZED_RUNS.fetch_add(1, SeqCst);
    n * std::mem::size_of::<T>() as u64
}

#[test]
fn instantiations_with_the_same_key_and_value_types_are_told_apart() {
    assert_eq!(size_times::<u8>(3), 3);
    assert_eq!(size_times::<u64>(3), 24);
    assert_eq!(size_times::<Page<u32>>(3), 12);
    assert_eq!(size_times::<u8>(3), 3);
    assert_eq!(size_times::<u64>(3), 24);
    assert_eq!(SIZED_RUNS.load(SeqCst), 3);
    let stats = layercache::stats();
    assert!(stats
        .function("sized<generic_functions::Page<u32>>")
        .is_some());
}

counter!(PROFILE_RUNS);
#[cached(key_prefix = "gprofile")]
fn profile<T: KeyArg>(id: T) -> String {
    PROFILE_RUNS.fetch_add(1, SeqCst);
    format!("profile {id:?}")
}

#[cache_invalidate(profile(id))]
fn update_profile<T: KeyArg>(id: T) {
    let _ = id;
}

#[cache_invalidate(all = profile::<u64>)]
fn reload_numeric_profiles() {}

#[test]
fn invalidating_one_instantiation_leaves_the_others_cached() {
    profile(1u64);
    profile(UserId(1));
    profile("1".to_string());
    update_profile(1u64);
    assert!(!entry!(profile(1u64)).is_cached());
    assert!(entry!(profile(UserId(1))).is_cached());
    assert!(entry!(profile("1".to_string())).is_cached());
    assert!(entry!(profile(UserId(1))).invalidate());
    assert!(entry!(profile("1".to_string())).is_cached());
    profile(2u64);
    reload_numeric_profiles();
    assert!(!entry!(profile(2u64)).is_cached());
    assert!(entry!(profile("1".to_string())).is_cached());
}

#[cache_put(profile(id))]
fn rename_profile<T: KeyArg>(id: T, name: &str) -> String {
    let _ = id;
    name.to_string()
}

#[test]
fn a_put_stores_into_the_instantiation_of_its_argument_only() {
    rename_profile(9u32, "nine");
    assert_eq!(profile(9u32), "nine", "served from u32's cache");
    assert!(
        !entry!(profile(9u64)).is_cached(),
        "u64's cache is untouched"
    );
}

counter!(ASYNC_RUNS);
#[cached(key_prefix = "gasync")]
async fn fetch<T: KeyArg>(id: T) -> Result<String, String> {
    ASYNC_RUNS.fetch_add(1, SeqCst);
    Ok(format!("{id:?}"))
}

#[tokio::test]
async fn async_generic_functions_cache_per_instantiation() {
    assert_eq!(fetch(5u32).await.unwrap(), "5");
    assert_eq!(fetch(5u64).await.unwrap(), "5");
    assert_eq!(fetch(5u32).await.unwrap(), "5");
    assert_eq!(ASYNC_RUNS.load(SeqCst), 2);
}

struct Repo;

#[cached]
impl Repo {
    #[cached]
    fn label<T: KeyArg>(&self, id: T) -> String {
        format!("{id:?}")
    }
}

impl Clone for Repo {
    fn clone(&self) -> Repo {
        Repo
    }
}
impl PartialEq for Repo {
    fn eq(&self, _: &Repo) -> bool {
        true
    }
}
impl Eq for Repo {}
impl Hash for Repo {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}
impl Serialize for Repo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

#[test]
fn a_generic_method_keeps_one_cache_per_instantiation() {
    let repo = Repo;
    assert_eq!(repo.label(3u8), "3");
    assert_eq!(repo.label(3u16), "3");
    assert_eq!(repo.label(3u8), "3");
    let stats = layercache::stats();
    let name = "generic_functions::Repo::label";
    let u8s = stats.function(&format!("{name}<u8>")).unwrap();
    let u16s = stats.function(&format!("{name}<u16>")).unwrap();
    assert_eq!((u8s.hits, u8s.misses, u16s.hits, u16s.misses), (1, 1, 0, 1));
}

counter!(RACE_RUNS);
#[cached(key_prefix = "race")]
fn race<T: KeyArg>(x: T) -> u64 {
    RACE_RUNS.fetch_add(1, SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(5));
    1
}

#[test]
fn threads_racing_to_a_new_instantiation_create_one_cache_each() {
    let start = std::sync::Barrier::new(16);
    std::thread::scope(|s| {
        for t in 0..16u32 {
            let start = &start;
            s.spawn(move || {
                start.wait();
                match t % 4 {
                    0 => race(1u8),
                    1 => race(1u16),
                    2 => race(1u32),
                    _ => race(1u64),
                }
            });
        }
    });
    let stats = layercache::stats();
    for ty in ["u8", "u16", "u32", "u64"] {
        let name = format!("race<{ty}>");
        let caches = stats.functions.iter().filter(|f| f.name == name).count();
        assert_eq!(caches, 1, "{name}");
        assert_eq!(stats.function(&name).unwrap().requests(), 4, "{name}");
    }
    assert_eq!(RACE_RUNS.load(SeqCst), 4, "single-flight per instantiation");
}

#[test]
fn derived_type_keys_are_the_module_path_or_the_chosen_name() {
    assert_eq!(UserId::type_key(), "generic_functions::UserId");
    assert_eq!(OrderId::type_key(), "order");
    assert_eq!(
        <Page<Vec<OrderId>>>::type_key(),
        "generic_functions::Page<Vec<order>>"
    );
}
