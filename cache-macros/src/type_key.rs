//! `#[derive(CacheKeyType)]`: a stable name for a user type, so it can be
//! a type argument of a generic `#[cached]` function (see
//! `layercache_runtime::key::CacheKeyType`).
//!
//! The name is the type's module path and name as written
//! (`app::models::User`), which no compiler version changes and no other
//! type of the crate shares; `#[cache_key_type(name = "user")]` picks one
//! that survives moving the type. A generic type's name lists its
//! parameters' names, as `Vec<u64>` does.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{parse_quote, DeriveInput, GenericParam, LitStr};

use crate::attr::check_prefix;

pub fn derive(input: TokenStream) -> syn::Result<TokenStream> {
    let mut input: DeriveInput = syn::parse2(input)?;
    let ident = input.ident.clone();
    let name = match chosen_name(&input)? {
        Some(lit) => quote!(#lit),
        None => {
            let ident_str = ident.to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #ident_str))
        }
    };
    let mut parts = Vec::new();
    for param in &input.generics.params {
        match param {
            GenericParam::Lifetime(l) => {
                return Err(syn::Error::new(
                    l.lifetime.span(),
                    "`CacheKeyType` names types whose values a cache can keep, and a type with a lifetime parameter borrows its data",
                ))
            }
            GenericParam::Type(t) => {
                let p = &t.ident;
                parts.push(quote_spanned!(p.span()=> <#p as ::layercache::CacheKeyType>::type_key()));
            }
            GenericParam::Const(c) => {
                let p = &c.ident;
                parts.push(quote!(::std::borrow::Cow::Owned(::std::string::ToString::to_string(&#p))));
            }
        }
    }
    let type_params: Vec<_> = input
        .generics
        .type_params()
        .map(|t| t.ident.clone())
        .collect();
    let where_clause = input.generics.make_where_clause();
    for p in type_params {
        where_clause
            .predicates
            .push(parse_quote!(#p: ::layercache::CacheKeyType));
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let body = if parts.is_empty() {
        quote!(::std::borrow::Cow::Borrowed(#name))
    } else {
        quote! {
            let params: &[::std::borrow::Cow<'static, str>] = &[#(#parts),*];
            ::std::borrow::Cow::Owned(::std::format!("{}<{}>", #name, params.join(",")))
        }
    };
    Ok(quote! {
        impl #impl_generics ::layercache::CacheKeyType for #ident #ty_generics #where_clause {
            fn type_key() -> ::std::borrow::Cow<'static, str> {
                #body
            }
        }
    })
}

/// The name given by `#[cache_key_type(name = "...")]`, if any.
fn chosen_name(input: &DeriveInput) -> syn::Result<Option<LitStr>> {
    let mut name = None;
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cache_key_type"))
    {
        attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident("name") {
                let path = &meta.path;
                let option = quote!(#path).to_string().replace(' ', "");
                return Err(meta.error(format!(
                    "unknown `cache_key_type` option `{option}`: the only one is `name = \"...\"`"
                )));
            }
            let lit: LitStr = meta.value()?.parse()?;
            check_prefix(&lit, "name")?;
            if name.is_some() {
                return Err(syn::Error::new(lit.span(), "`name` is given twice"));
            }
            name = Some(lit);
            Ok(())
        })?;
    }
    Ok(name)
}
