//! Stable names of types, for the caches of generic functions.
//!
//! `#[cached]` on `fn f<T>(x: T)` keeps one cache per instantiation, and
//! each needs a namespace of its own in the shared tier:
//! `{key_prefix or path}<{T's type key},…>`, such as `app::f<u64>`. That
//! name is part of every shared key, so it must be different for every
//! type and the same on every build, compiler and platform.
//!
//! `std::any::type_name` promises neither (its text may change between
//! compiler versions, and two types may print alike), and `TypeId` changes
//! between builds. So the name is a trait the user can see: [`CacheKeyType`],
//! implemented here for the standard types layercache keys and values are
//! made of, derived for a user type with `#[derive(CacheKeyType)]` (its
//! module path and name, or `#[cache_key_type(name = "...")]`), or
//! implemented by hand. It is required as a bound on each type parameter
//! of a cached function, so a type without a stable name is a compile
//! error at the call, not a key that changes with the next compiler.
//!
//! The names go into the namespace, not into the hashed argument
//! signature, which keeps the parameters as written (`(T)`): the
//! namespace already separates every instantiation's keys, including
//! those of a type parameter that is not an argument (`fn parse<T>(s:
//! String) -> T`) and those of templated keys, and the signature stays a
//! constant that the per-call render does not rebuild.
//!
//! The names here are pinned by tests: changing one changes the shared
//! keys of every instantiation using that type.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// A name of the type that is the same on every build, compiler and
/// platform, and different for every type: the namespace of each
/// instantiation of a generic `#[cached]` function is built from it.
///
/// Implemented for the integers, `bool`, `char`, floats, `()`, `str`,
/// `String`, `Duration`, and `Vec`, `VecDeque`, `Option`, `Result`, `Box`,
/// `Arc`, `BTreeMap`, `BTreeSet`, `HashMap`, `HashSet`, arrays, slices and
/// tuples (up to 12) of such types, named as Rust writes them without
/// their module paths and spaces (`Vec<u64>`, `(u8,String)`), except
/// arrays and slices (`Array<u8,4>`, `Slice<u8>`): a name is part of a
/// key prefix, where `[` and `]` are glob characters. Derive it for
/// your own types (the name is `module::path::Type`, with its parameters'
/// names in `<>`; `#[cache_key_type(name = "user")]` picks another), or
/// implement it by hand:
///
/// ```
/// use std::borrow::Cow;
/// use layercache_runtime::CacheKeyType;
///
/// struct UserId(u64);
///
/// impl CacheKeyType for UserId {
///     fn type_key() -> Cow<'static, str> {
///         Cow::Borrowed("accounts::UserId")
///     }
/// }
///
/// assert_eq!(<Vec<UserId>>::type_key(), "Vec<accounts::UserId>");
/// ```
///
/// The name must stay the same as long as cached values stored under it
/// should be found, two types used with one generic function must not
/// share a name (they would share shared-tier entries), and it should hold
/// no glob characters (`*?[]\`), braces or white space, which would break
/// prefix invalidation.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no stable type name for the caches of generic functions",
    label = "`{Self}` does not implement `layercache::CacheKeyType`",
    note = "each instantiation of a generic `#[cached]` function has its own cache, named after its type arguments: derive `layercache::CacheKeyType` for the type, implement it by hand, or add the bound `CacheKeyType` to the type parameter"
)]
pub trait CacheKeyType: 'static {
    /// The type's stable name (see the [trait docs](CacheKeyType)).
    fn type_key() -> Cow<'static, str>;
}

macro_rules! named {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl CacheKeyType for $ty {
            #[inline]
            fn type_key() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    )*};
}

named! {
    u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64", u128 => "u128", usize => "usize",
    i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64", i128 => "i128", isize => "isize",
    f32 => "f32", f64 => "f64", bool => "bool", char => "char", () => "()",
    str => "str", String => "String", Duration => "Duration",
}

macro_rules! generic {
    ($($name:literal $ty:ident<$($p:ident $(: ?$unsized:ident)?),+>;)*) => {$(
        impl<$($p: CacheKeyType $(+ ?$unsized)?),+> CacheKeyType for $ty<$($p),+> {
            fn type_key() -> Cow<'static, str> {
                let params: &[Cow<'static, str>] = &[$($p::type_key()),+];
                Cow::Owned(format!("{}<{}>", $name, params.join(",")))
            }
        }
    )*};
}

generic! {
    "Vec" Vec<T>;
    "VecDeque" VecDeque<T>;
    "Option" Option<T>;
    "Result" Result<T, E>;
    "Box" Box<T: ?Sized>;
    "Arc" Arc<T: ?Sized>;
    "BTreeMap" BTreeMap<K, V>;
    "BTreeSet" BTreeSet<T>;
    "HashMap" HashMap<K, V>;
    "HashSet" HashSet<T>;
}

impl<T: CacheKeyType, const N: usize> CacheKeyType for [T; N] {
    fn type_key() -> Cow<'static, str> {
        Cow::Owned(format!("Array<{},{N}>", T::type_key()))
    }
}

impl<T: CacheKeyType> CacheKeyType for [T] {
    fn type_key() -> Cow<'static, str> {
        Cow::Owned(format!("Slice<{}>", T::type_key()))
    }
}

macro_rules! tuple {
    ($($p:ident)+) => {
        impl<$($p: CacheKeyType),+> CacheKeyType for ($($p,)+) {
            fn type_key() -> Cow<'static, str> {
                let parts: &[Cow<'static, str>] = &[$($p::type_key()),+];
                // `(u8,)` as Rust writes a one-tuple, so it is not `u8`.
                let comma = if parts.len() == 1 { "," } else { "" };
                Cow::Owned(format!("({}{comma})", parts.join(",")))
            }
        }
    };
}

tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);
tuple!(A B C D E F G H I);
tuple!(A B C D E F G H I J);
tuple!(A B C D E F G H I J K);
tuple!(A B C D E F G H I J K L);

/// The namespace of one instantiation of a generic function: `base` with
/// its type arguments' stable names, `base<u64,String>`.
pub fn instance_namespace(base: &str, type_keys: &[Cow<'static, str>]) -> String {
    format!("{base}<{}>", type_keys.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_types_have_pinned_names() {
        // Pinned: a change here changes the shared keys of generic functions.
        assert_eq!(u64::type_key(), "u64");
        assert_eq!(String::type_key(), "String");
        assert_eq!(str::type_key(), "str");
        assert_eq!(<Vec<Option<i32>>>::type_key(), "Vec<Option<i32>>");
        assert_eq!(<Result<u8, String>>::type_key(), "Result<u8,String>");
        assert_eq!(
            <BTreeMap<String, Vec<u8>>>::type_key(),
            "BTreeMap<String,Vec<u8>>"
        );
        assert_eq!(<Box<str>>::type_key(), "Box<str>");
        assert_eq!(<[u8; 4]>::type_key(), "Array<u8,4>");
        assert_eq!(<[u16]>::type_key(), "Slice<u16>");
        assert_eq!(<(u8, String)>::type_key(), "(u8,String)");
        assert_eq!(<(u8,)>::type_key(), "(u8,)");
        assert_eq!(<()>::type_key(), "()");
    }

    #[test]
    fn different_types_have_different_names() {
        let names = [
            u64::type_key(),
            i64::type_key(),
            <(u64,)>::type_key(),
            <[u64; 1]>::type_key(),
            <Vec<u64>>::type_key(),
            <Option<u64>>::type_key(),
            usize::type_key(),
        ];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn an_instance_namespace_lists_the_type_arguments_in_order() {
        let keys = [u64::type_key(), String::type_key()];
        assert_eq!(instance_namespace("app::f", &keys), "app::f<u64,String>");
        assert_eq!(
            instance_namespace("users", &[<Vec<u8>>::type_key()]),
            "users<Vec<u8>>"
        );
    }
}
