//! Expansion of `#[cached]`: the wrapper in place of the function, and its
//! two hidden companions (see [`crate::target`]).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn};

use crate::attr::parse_cached_args;
use crate::sig::{analyze, mentions_self_type};
use crate::target::{entry_ident, fn_ident};
use crate::template::Template;

/// `Some(value)` spanned at the option that set it, or `None`: a field of
/// the generated `FnSpec`.
fn some_or_none(value: Option<(TokenStream, proc_macro2::Span)>) -> TokenStream {
    match value {
        Some((v, span)) => quote_spanned!(span=> ::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

/// A `Duration` of `ms` milliseconds, with the span of the option.
fn millis((ms, span): (u64, proc_macro2::Span)) -> (TokenStream, proc_macro2::Span) {
    (
        quote!(::layercache::__private::Duration::from_millis(#ms)),
        span,
    )
}

/// The life of a `lock = true` lock without `lock_timeout`: longer than
/// most origins run, short enough that a dead holder stalls others briefly.
const DEFAULT_LOCK_TIMEOUT_MS: u64 = 5_000;

/// The argument signature of a template-less key: the receiver's and every
/// argument's key type as written (`&T` as `T`).
fn hashed_signature(sig: &crate::sig::FnSig) -> String {
    let receiver = sig.receiver.as_ref().map(|r| &r.key_ty as &dyn ToTokens);
    let args = sig
        .args
        .iter()
        .map(|a| a.referent.as_ref().unwrap_or(&a.ty) as &dyn ToTokens);
    crate::signature::of(receiver.into_iter().chain(args))
}

/// The argument signature of a template: the type of each placeholder's
/// argument (`Self` for `self`), in template order.
fn template_signature(t: &Template, sig: &crate::sig::FnSig) -> String {
    let self_ty = quote!(Self);
    let types = t.pieces.iter().filter_map(|p| match p {
        crate::template::Piece::Value { root, .. } if root == "self" => {
            Some(&self_ty as &dyn ToTokens)
        }
        crate::template::Piece::Value { root, .. } => sig
            .args
            .iter()
            .find(|a| a.ident == root)
            .map(|a| a.referent.as_ref().unwrap_or(&a.ty) as &dyn ToTokens),
        crate::template::Piece::Literal(_) => None,
    });
    crate::signature::of(types)
}

pub fn cached(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let opts = parse_cached_args(args)?;
    let func: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "`#[cached]` goes on a function (`fn` or `async fn`)",
        )
    })?;
    if let Some(c) = &func.sig.constness {
        return Err(syn::Error::new(
            c.span,
            "`#[cached]` cannot be used on a `const fn`",
        ));
    }
    let sig = analyze(&func.sig, "cached")?;
    let ItemFn {
        attrs,
        vis,
        sig: fn_sig,
        block,
        ..
    } = &func;
    let name = &fn_sig.ident;
    // `Self` inside a nested item (a local `impl`) says nothing about where `f` is.
    let body_mentions_self = block
        .stmts
        .iter()
        .filter(|stmt| !matches!(stmt, syn::Stmt::Item(_)))
        .any(|stmt| mentions_self_type(stmt.to_token_stream()));
    let in_impl = opts.in_impl
        || sig.receiver.is_some()
        || mentions_self_type(fn_sig.to_token_stream())
        || body_mentions_self;

    let arg_names: Vec<String> = sig.args.iter().map(|a| a.ident.to_string()).collect();
    let template = opts
        .key
        .as_ref()
        .map(|lit| Template::parse(lit, &arg_names, sig.receiver.is_some(), name, "key"))
        .transpose()?;

    // The exact-arguments key: the rendered template, or a tuple of owned
    // arguments. The shared key also covers the argument signature (the
    // types as written), so arguments of other types never share it.
    let (key_ty, key_expr, render, key_checks) = match &template {
        Some(t) => {
            let signature = template_signature(t, &sig);
            (
                quote!(::std::string::String),
                t.render(),
                quote!(|k: &::std::string::String, out: &mut ::std::string::String| {
                    ::layercache::__private::render_template_typed(k, out, #signature)
                }),
                TokenStream::new(),
            )
        }
        None => {
            let mut tys = Vec::new();
            let mut exprs = Vec::new();
            let mut checks = Vec::new();
            if let Some(r) = &sig.receiver {
                let span = r.tokens.span();
                let ty = &r.key_ty;
                tys.push(quote_spanned!(span=> #ty));
                exprs.push(if r.by_ref {
                    quote_spanned!(span=> ::core::clone::Clone::clone(self))
                } else {
                    quote_spanned!(span=> ::core::clone::Clone::clone(&self))
                });
                checks.push(
                    quote_spanned!(span=> ::layercache::__private::require_key_arg::<Self>();),
                );
            }
            for a in &sig.args {
                let owned_part = a.referent.as_ref().unwrap_or(&a.ty);
                if let Some(span) = crate::sig::borrowed_part(owned_part) {
                    return Err(syn::Error::new(
                        span,
                        format!(
                            "`{}` borrows data, so it cannot be kept in a cache key; take an owned type (`String`, `Vec<String>`) or name what identifies the call with a `key` template",
                            a.ident
                        ),
                    ));
                }
                let ty = a.key_type();
                checks.push(quote_spanned!(a.ty.span()=> ::layercache::__private::require_key_arg::<#ty>();));
                tys.push(ty);
                exprs.push(a.key_expr());
            }
            let key_ty = quote!((#(#tys,)*));
            let signature = hashed_signature(&sig);
            (
                key_ty.clone(),
                quote!((#(#exprs,)*)),
                quote!(|k: &#key_ty, out: &mut ::std::string::String| {
                    ::layercache::__private::render_hashed_typed::<#key_ty>(k, out, #signature)
                }),
                quote!(#(#checks)*),
            )
        }
    };

    let output = &sig.output;
    let mut sig_mode = opts.output.unwrap_or(sig.mode);
    if let Some((true, span)) = opts.cache_none {
        if sig_mode != crate::sig::Mode::Option {
            return Err(syn::Error::new(
                span,
                "`cache_none` caches `None` results: the function must return `Option<T>`",
            ));
        }
        sig_mode = crate::sig::Mode::OptionAll;
    }
    let mode = sig_mode.marker();
    if let Some((_, span)) = opts.stale_if_error {
        if sig_mode != crate::sig::Mode::Result {
            return Err(syn::Error::new(
                span,
                "`stale_if_error` serves a stale value in place of an `Err`: the function must return `Result<T, E>`",
            ));
        }
    }
    let value_ty = quote!(::layercache::__private::ValueOf<#mode, #output>);
    let value_check = {
        let span = output.span();
        let mode = sig_mode.marker_at(span);
        quote_spanned!(span=> ::layercache::__private::require_value::<::layercache::__private::ValueOf<#mode, #output>>();)
    };

    let name_str = name.to_string();
    // Never `type_name::<Self>()`: it may change with the compiler, and
    // every key of the method with it.
    let cache_name = match (&opts.key_prefix, &opts.impl_type, in_impl) {
        (Some(lit), _, _) => quote!(::std::string::String::from(#lit)),
        (None, Some(ty), true) => quote!(::std::string::String::from(
            ::core::concat!(::core::module_path!(), "::", #ty, "::", #name_str)
        )),
        (None, None, true) => {
            return Err(syn::Error::new(
                name.span(),
                format!(
                    "a cached method needs a stable name for its cache: add `key_prefix = \"...\"`, or put `#[cached]` on the `impl` block too (names it `module::Type::{name_str}`; or write `in_impl = \"Type\"`); `#[cached]` cannot see the `impl` around `{name_str}`, and the compiler's type names may change between versions"
                ),
            ))
        }
        (None, _, false) => quote!(::std::string::String::from(
            ::core::concat!(::core::module_path!(), "::", #name_str)
        )),
    };
    let timeout = match (opts.timeout, opts.timeout_ms) {
        (Some((0, _)), _) | (_, Some((0, _))) => quote!(::layercache::__private::Timeout::Never),
        (Some((s, span)), _) => {
            quote_spanned!(span=> ::layercache::__private::Timeout::After(::layercache::__private::Duration::from_secs(#s)))
        }
        (_, Some((ms, span))) => {
            quote_spanned!(span=> ::layercache::__private::Timeout::After(::layercache::__private::Duration::from_millis(#ms)))
        }
        (None, None) => quote!(::layercache::__private::Timeout::Default),
    };
    let max_entries = match &opts.max_entries {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };
    let tier = match opts.tier {
        Some(crate::attr::Tier::Local) => quote!(Local),
        Some(crate::attr::Tier::Shared) => quote!(Shared),
        Some(crate::attr::Tier::Both) | None => quote!(Both),
    };
    let local_timeout = some_or_none(opts.local_timeout_ms.map(millis));
    let jitter = some_or_none(opts.jitter.map(|(j, span)| (quote!(#j), span)));
    let none_timeout = some_or_none(opts.none_timeout_ms.map(millis));
    let lock = some_or_none(match (opts.lock, opts.lock_timeout_ms) {
        (Some((true, span)), ms) => Some(millis((
            ms.map_or(DEFAULT_LOCK_TIMEOUT_MS, |(ms, _)| ms),
            span,
        ))),
        _ => None,
    });
    let stale_if_error = some_or_none(opts.stale_if_error.map(|(secs, span)| {
        (
            quote!(::layercache::__private::Duration::from_secs(#secs)),
            span,
        )
    }));
    let refresh_ahead = some_or_none(opts.refresh_ahead.map(|(r, span)| (quote!(#r), span)));

    let versioned = match &opts.versioned {
        Some(lit) => quote!(::core::option::Option::Some(::std::string::String::from(#lit))),
        None => quote!(::core::option::Option::None),
    };

    let fn_companion = fn_ident(name);
    let entry_companion = entry_ident(name);
    let cache_call = if in_impl {
        quote!(Self::#fn_companion())
    } else {
        quote!(#fn_companion())
    };

    let cache_var = proc_macro2::Ident::new("__lc_cache", proc_macro2::Span::mixed_site());
    let key_var = proc_macro2::Ident::new("__lc_key", proc_macro2::Span::mixed_site());
    let (sync_fn, async_fn) = match opts.refresh_ahead {
        Some(_) => {
            // The refresh runs after the call returned: it owns the arguments.
            if let Some(r) = &sig.receiver {
                if r.by_ref {
                    return Err(syn::Error::new(
                        r.tokens.span(),
                        "`refresh_ahead` runs the function in the background after the call returns, so it cannot borrow `self`; use it on a free function or an associated function with owned arguments",
                    ));
                }
            }
            if let Some(a) = sig.args.iter().find(|a| a.referent.is_some()) {
                return Err(syn::Error::new(
                    a.ty.span(),
                    format!("`refresh_ahead` runs the function in the background after the call returns, so `{}` must be owned (`String`, not `&str`)", a.ident),
                ));
            }
            (
                quote!(::layercache::__private::get_or_compute_refreshing),
                quote!(::layercache::__private::get_or_compute_async_refreshing),
            )
        }
        None => (
            quote!(::layercache::__private::get_or_compute),
            quote!(::layercache::__private::get_or_compute_async),
        ),
    };
    let cache_if = match &opts.cache_if {
        Some(e) => quote_spanned!(e.span()=> #e),
        None => quote!(::layercache::__private::always),
    };
    let is_async = fn_sig.asyncness.is_some();
    // `tags = [...]`: rendered after a local miss, from the key when it holds
    // the arguments (no template, no receiver); otherwise now, before the
    // body may consume the arguments.
    let tags_var = proc_macro2::Ident::new("__lc_tags", proc_macro2::Span::mixed_site());
    let (tags_setup, tags_fn) = if opts.tags.is_empty() {
        (TokenStream::new(), quote!(::layercache::__private::no_tags))
    } else {
        let renders = opts
            .tags
            .iter()
            .map(|lit| {
                Template::parse(lit, &arg_names, sig.receiver.is_some(), name, "tags")
                    .map(|t| t.render())
            })
            .collect::<syn::Result<Vec<_>>>()?;
        if template.is_none() && sig.receiver.is_none() {
            let idents = sig.args.iter().map(|a| &a.ident);
            (
                TokenStream::new(),
                quote! {
                    |__lc_k: &#key_ty| -> ::std::vec::Vec<::std::string::String> {
                        #[allow(unused_variables)]
                        let (#(#idents,)*) = __lc_k;
                        ::std::vec![#(#renders),*]
                    }
                },
            )
        } else {
            (
                quote!(let #tags_var: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#renders),*];),
                quote!(move |_: &#key_ty| #tags_var),
            )
        }
    };
    let origin_var = proc_macro2::Ident::new("__lc_origin", proc_macro2::Span::mixed_site());
    let bypass_var = proc_macro2::Ident::new("__lc_bypass", proc_macro2::Span::mixed_site());
    let body = match &opts.unless {
        None if is_async => quote! {
            let #cache_var = #cache_call;
            let #key_var = #key_expr;
            #tags_setup
            #async_fn::<#mode, _, #output>(#cache_var, #key_var, #cache_if, #tags_fn, async move #block).await
        },
        None => quote! {
            let #cache_var = #cache_call;
            let #key_var = #key_expr;
            #tags_setup
            #sync_fn::<#mode, _, #output>(#cache_var, #key_var, #cache_if, #tags_fn, move || -> #output #block)
        },
        Some(cond) => {
            // An argument named alone is a flag; another path is a function
            // to call; anything else is a `bool` expression.
            let cond = match cond {
                syn::Expr::Path(p)
                    if p.path
                        .get_ident()
                        .is_none_or(|i| !arg_names.contains(&i.to_string())) =>
                {
                    quote_spanned!(cond.span()=> (#cond)())
                }
                _ => quote_spanned!(cond.span()=> #cond),
            };
            let (origin, run, bypass) = if is_async {
                (
                    quote!(async move #block),
                    quote!(#async_fn::<#mode, _, #output>(#cache_var, #key_var, #cache_if, #tags_fn, #origin_var).await),
                    quote!(::layercache::__private::bypass_async(#cache_var, #origin_var).await),
                )
            } else {
                (
                    quote!(move || -> #output #block),
                    quote!(#sync_fn::<#mode, _, #output>(#cache_var, #key_var, #cache_if, #tags_fn, #origin_var)),
                    quote!(::layercache::__private::bypass(#cache_var, #origin_var)),
                )
            };
            quote! {
                let #bypass_var: bool = #cond;
                let #cache_var = #cache_call;
                let #key_var = #key_expr;
                #tags_setup
                let #origin_var = #origin;
                if #bypass_var {
                    return #bypass;
                }
                #run
            }
        }
    };

    // The entry companion takes the same receiver and arguments (without `mut` bindings).
    let receiver = sig.receiver.as_ref().map(|r| {
        let mut tokens = r.tokens.clone();
        if let FnArg::Receiver(rec) = &mut tokens {
            rec.mutability = None;
        }
        quote!(#tokens,)
    });
    let params = sig.args.iter().map(|a| {
        let (ident, ty) = (&a.ident, &a.ty);
        quote!(#ident: #ty)
    });
    let generics = &fn_sig.generics;
    let where_clause = &fn_sig.generics.where_clause;
    let unsafety = &fn_sig.safety;

    Ok(quote! {
        #(#attrs)*
        #vis #fn_sig {
            #body
        }

        #[doc(hidden)]
        #[allow(non_snake_case, dead_code, clippy::all)]
        #[inline]
        #vis fn #fn_companion() -> &'static ::layercache::__private::FnCache<#key_ty, #value_ty> {
            #key_checks
            #value_check
            static __LC_SLOT: ::layercache::__private::CacheSlot = ::layercache::__private::CacheSlot::new();
            ::layercache::__private::slot_cache(&__LC_SLOT, || {
                let name = #cache_name;
                ::layercache::__private::FnSpec {
                    namespace: ::core::clone::Clone::clone(&name),
                    name,
                    timeout: #timeout,
                    max_entries: #max_entries,
                    render: #render,
                    tier: ::layercache::__private::TierChoice::#tier,
                    local_timeout: #local_timeout,
                    jitter: #jitter,
                    none_timeout: #none_timeout,
                    lock: #lock,
                    stale_if_error: #stale_if_error,
                    refresh_ahead: #refresh_ahead,
                    versioned: #versioned,
                }
            })
        }

        #[doc(hidden)]
        #[allow(non_snake_case, dead_code, unused_variables, clippy::all)]
        #vis #unsafety fn #entry_companion #generics (#receiver #(#params),*) -> ::layercache::__private::CallEntry<#key_ty, #value_ty> #where_clause {
            #cache_call.entry(#key_expr)
        }
    })
}
