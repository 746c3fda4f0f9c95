//! Attribute macros of [layercache](https://docs.rs/layercache):
//! `#[cached]`, `#[cache_invalidate]`, `#[cache_put]`, and the `entry!` /
//! `fn_cache!` handles. Use them through the `layercache` facade; generated
//! code names the runtime as `::layercache::__private`.
//!
//! `#[cached]` goes through fixed stages, as thiserror-impl does: `ast`
//! models the use as written (`attr` parses the options, `options` names
//! them and hints at misspelt ones), `valid` makes every check between
//! options and against the signature (`sig` models the signature,
//! `template` parses key templates), and `expand` writes the code, which
//! cannot fail. `in_impl` handles `#[cached]` on an `impl` block,
//! `signature` writes the argument types hashed into keys, `target` parses
//! invalidation targets, `invalidate` expands `#[cache_invalidate]`
//! and `#[cache_put]`, and `type_key` derives `CacheKeyType`.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::ToTokens;

mod ast;
mod attr;
mod expand;
mod in_impl;
mod invalidate;
mod options;
mod sig;
mod signature;
#[cfg(test)]
mod snapshots;
mod target;
mod template;
mod type_key;
mod valid;

/// Memoizes a function: see the `layercache` crate documentation. On an
/// inherent `impl` block, names its `#[cached]` methods' caches after the type.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    if let Ok(block) = syn::parse::<syn::ItemImpl>(item.clone()) {
        return match in_impl::cached_impl(args.into(), block) {
            Ok(ts) => ts.into(),
            Err(err) => {
                let mut out = err.to_compile_error();
                out.extend(TokenStream2::from(item));
                out.into()
            }
        };
    }
    with_fallback(item.clone(), expand::cached(args.into(), item.into()))
}

/// Invalidates cached entries after the function succeeds: see the `layercache` crate documentation.
#[proc_macro_attribute]
pub fn cache_invalidate(args: TokenStream, item: TokenStream) -> TokenStream {
    with_fallback(
        item.clone(),
        invalidate::cache_invalidate(args.into(), item.into()),
    )
}

/// Stores the function's result as another cached function's entry: see the `layercache` crate documentation.
#[proc_macro_attribute]
pub fn cache_put(args: TokenStream, item: TokenStream) -> TokenStream {
    with_fallback(
        item.clone(),
        invalidate::cache_put(args.into(), item.into()),
    )
}

/// The entry handle of one call of a cached function: see the `layercache` crate documentation.
#[proc_macro]
pub fn entry(input: TokenStream) -> TokenStream {
    match target::entry_macro(input.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// The cache handle of a cached function: see the `layercache` crate documentation.
#[proc_macro]
pub fn fn_cache(input: TokenStream) -> TokenStream {
    match target::fn_cache_macro(input.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Derives `layercache::CacheKeyType`: the type's stable name, so it can be
/// a type argument of a generic `#[cached]` function. The name is
/// `module::path::Type` (with the parameters' names, `Page<u64>`), or the
/// one given by `#[cache_key_type(name = "...")]`: see the `layercache`
/// crate documentation.
#[proc_macro_derive(CacheKeyType, attributes(cache_key_type))]
pub fn derive_cache_key_type(input: TokenStream) -> TokenStream {
    match type_key::derive(input.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// On error, emit the user's item untouched next to the errors (as
/// `#[tokio::main]` does), so one mistake does not cascade into errors at
/// every call site and editors keep working.
fn with_fallback(item: TokenStream, result: syn::Result<TokenStream2>) -> TokenStream {
    match result {
        Ok(ts) => ts.into(),
        Err(err) => {
            let mut out = err.to_compile_error();
            let item: TokenStream2 = item.into();
            match syn::parse2::<syn::ItemFn>(item.clone()) {
                Ok(f) => f.to_tokens(&mut out),
                Err(_) => out.extend(item),
            }
            out.into()
        }
    }
}
