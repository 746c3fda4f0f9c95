//! `#[cached]` on an inherent `impl` block: it caches nothing itself, it
//! names the caches of the block's `#[cached]` methods after the type
//! (`module::Repo::method`), as `in_impl = "Repo"` on each would.
//!
//! A method's own `#[cached]` cannot see the `impl` around it, and
//! `std::any::type_name` is no stable source for a name that keys depend
//! on; the block's attribute sees the type as written.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::spanned::Spanned;
use syn::{ImplItem, ItemImpl, LitStr, Meta, Type};

use crate::attr::parse_cached_args;

/// Whether `attr` is `#[cached]`, `#[cached(...)]` or `#[path::cached...]`.
fn is_cached(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "cached")
}

pub fn cached_impl(args: TokenStream, mut item: ItemImpl) -> syn::Result<TokenStream> {
    if let Some((path, _)) = &item.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "`#[cached]` cannot be used on a trait impl: cache an inherent method and call it from the trait's",
        ));
    }
    let Type::Path(ty) = &*item.self_ty else {
        return Err(syn::Error::new(
            item.self_ty.span(),
            "`#[cached]` on an `impl` block needs a named type, like `impl Repo`",
        ));
    };
    let name = ty
        .path
        .segments
        .last()
        .expect("a type path has a segment")
        .ident
        .to_string();
    let name = LitStr::new(&name, Span::call_site());
    let mut methods = 0;
    for member in &mut item.items {
        let ImplItem::Fn(f) = member else { continue };
        for attr in f.attrs.iter_mut().filter(|a| is_cached(a)) {
            methods += 1;
            name_after(attr, &name);
        }
    }
    if methods == 0 {
        return Err(syn::Error::new(
            item.impl_token.span,
            "`#[cached]` on an `impl` block names the caches of its `#[cached]` methods, and this block has none",
        ));
    }
    let mut out = TokenStream::new();
    if !args.is_empty() {
        // Reported next to the named methods, so their own expansion does
        // not add an error about their names.
        out = syn::Error::new(
            args.span(),
            "`#[cached]` on an `impl` block takes no options; put them on its methods",
        )
        .to_compile_error();
    }
    item.to_tokens(&mut out);
    Ok(out)
}

/// Adds `in_impl = "Type"` to a method's `#[cached]` unless it already
/// names its cache; options that do not parse are left for the method's
/// own expansion to report.
fn name_after(attr: &mut syn::Attribute, ty: &LitStr) {
    let path = attr.path().clone();
    let options = match &attr.meta {
        Meta::Path(_) => TokenStream::new(),
        Meta::List(list) => list.tokens.clone(),
        Meta::NameValue(_) => return,
    };
    match parse_cached_args(options.clone()) {
        Ok(args) if args.key_prefix.is_some() || args.impl_type.is_some() || args.in_impl => {}
        Ok(_) => {
            let sep = (!options.is_empty()).then(|| quote!(,));
            attr.meta = syn::parse_quote!(#path(#options #sep in_impl = #ty));
        }
        Err(_) => {}
    }
}
