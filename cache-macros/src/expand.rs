//! Expansion of `#[cached]`: the wrapper in place of the function, and its
//! two hidden companions (see [`crate::target`]). What reaches expansion
//! passed `valid`, so nothing here fails.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn};

use crate::ast::{Cached, Checked};
use crate::attr::{CachedArgs, Tier};
use crate::target::{entry_ident, fn_ident};
use crate::template::{Piece, Template};

pub fn cached(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let input = Cached::from_syn(args, item)?;
    let checked = input.validate()?;
    Ok(expand(&input, &checked))
}

/// The exact-arguments key of a call: the rendered template, or a tuple of
/// owned arguments.
struct Key {
    /// `String` for a template, else the tuple of owned arguments.
    ty: TokenStream,
    /// Builds the key from the arguments.
    expr: TokenStream,
    /// Renders the key for the shared tier.
    render: TokenStream,
    /// Compile-time checks that each part can be a key.
    checks: TokenStream,
    /// The arguments borrowed, standing for the key in a local lookup
    /// (`Probe((&x, name))`), so a hit builds no owned key; `None` for a
    /// template, which is rendered anyway.
    probe: Option<TokenStream>,
}

/// What the wrapper and its companions share.
struct Parts<'a> {
    input: &'a Cached,
    checked: &'a Checked,
    key: Key,
    /// The marker type of [`Checked::mode`].
    mode: TokenStream,
    /// What the cache holds of the return value.
    value_ty: TokenStream,
    /// `f__layercache_fn()`, or `Self::...` in an `impl`.
    cache_call: TokenStream,
}

fn expand(input: &Cached, checked: &Checked) -> TokenStream {
    let fn_companion = fn_ident(&input.func.sig.ident);
    let mode = checked.mode.marker();
    let output = &checked.sig.output;
    let parts = Parts {
        input,
        checked,
        key: key(checked),
        value_ty: quote!(::layercache::__private::ValueOf<#mode, #output>),
        mode,
        cache_call: {
            let turbofish = turbofish(input);
            if input.in_impl {
                quote!(Self::#fn_companion #turbofish())
            } else {
                quote!(#fn_companion #turbofish())
            }
        },
    };
    let ItemFn {
        attrs,
        vis,
        sig: fn_sig,
        ..
    } = &input.func;
    let body = body(&parts);
    let cache_companion = cache_companion(&parts);
    let entry_companion = entry_companion(&parts);
    quote! {
        #(#attrs)*
        #vis #fn_sig {
            #body
        }

        #cache_companion

        #entry_companion
    }
}

/// The key of a call. The shared key also covers the argument signature
/// (the types as written), so arguments of other types never share it.
fn key(checked: &Checked) -> Key {
    let sig = &checked.sig;
    if let Some(t) = &checked.key {
        let signature = template_signature(t, sig);
        return Key {
            ty: quote!(::std::string::String),
            expr: t.render(),
            render: quote!(|k: &::std::string::String, out: &mut ::std::string::String| {
                ::layercache::__private::render_template_typed(k, out, #signature)
            }),
            checks: TokenStream::new(),
            probe: None,
        };
    }
    let mut tys = Vec::new();
    let mut exprs = Vec::new();
    let mut checks = Vec::new();
    let mut borrowed = Vec::new();
    if let Some(r) = &sig.receiver {
        let span = r.tokens.span();
        let ty = &r.key_ty;
        tys.push(quote_spanned!(span=> #ty));
        exprs.push(if r.by_ref {
            quote_spanned!(span=> ::core::clone::Clone::clone(self))
        } else {
            quote_spanned!(span=> ::core::clone::Clone::clone(&self))
        });
        borrowed.push(if r.by_ref {
            quote!(self)
        } else {
            quote!(&self)
        });
        checks.push(quote_spanned!(span=> ::layercache::__private::require_key_arg::<Self>();));
    }
    for a in &sig.args {
        let ty = a.key_type();
        checks
            .push(quote_spanned!(a.ty.span()=> ::layercache::__private::require_key_arg::<#ty>();));
        tys.push(ty);
        exprs.push(a.key_expr());
        let ident = &a.ident;
        borrowed.push(match a.referent {
            Some(_) => quote!(&*#ident),
            None => quote!(&#ident),
        });
    }
    let key_ty = quote!((#(#tys,)*));
    let key_expr = quote!((#(#exprs,)*));
    let signature = hashed_signature(sig);
    Key {
        ty: key_ty.clone(),
        expr: key_expr.clone(),
        render: quote!(|k: &#key_ty, out: &mut ::std::string::String| {
            ::layercache::__private::render_hashed_typed::<#key_ty>(k, out, #signature)
        }),
        checks: quote!(#(#checks)*),
        probe: Some(
            if sig.receiver.is_none() && sig.args.iter().all(is_primitive) {
                // The key itself: copying a few integers costs less than the
                // references a `Probe` holds (one load more per argument, twice).
                quote!(#key_expr)
            } else {
                quote!(::layercache::__private::Probe((#(#borrowed,)*)))
            },
        ),
    }
}

/// An argument of a primitive, `Copy` type (by name: a macro cannot resolve
/// types; a user type named `u64` would only be cloned, which is still right).
fn is_primitive(a: &crate::sig::Arg) -> bool {
    const PRIMITIVES: [&str; 14] = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "bool", "char",
    ];
    match &a.ty {
        syn::Type::Path(p) if p.qself.is_none() && a.referent.is_none() => p
            .path
            .get_ident()
            .is_some_and(|i| PRIMITIVES.contains(&i.to_string().as_str())),
        _ => false,
    }
}

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
        Piece::Value { root, .. } if root == "self" => Some(&self_ty as &dyn ToTokens),
        Piece::Value { root, .. } => sig
            .args
            .iter()
            .find(|a| a.ident == root)
            .map(|a| a.referent.as_ref().unwrap_or(&a.ty) as &dyn ToTokens),
        Piece::Literal(_) => None,
    });
    crate::signature::of(types)
}

/// The wrapper's body: build the key, then hand the key and the original
/// body (as a closure or an `async` block) to the runtime.
fn body(parts: &Parts) -> TokenStream {
    let Parts {
        input,
        checked,
        mode,
        cache_call,
        ..
    } = parts;
    let opts = &input.opts;
    let block = &input.func.block;
    let output = &checked.sig.output;
    let key_expr = &parts.key.expr;
    let cache_var = proc_macro2::Ident::new("__lc_cache", proc_macro2::Span::mixed_site());
    let key_var = proc_macro2::Ident::new("__lc_key", proc_macro2::Span::mixed_site());
    let origin_var = proc_macro2::Ident::new("__lc_origin", proc_macro2::Span::mixed_site());
    let bypass_var = proc_macro2::Ident::new("__lc_bypass", proc_macro2::Span::mixed_site());
    let force_var = proc_macro2::Ident::new("__lc_force", proc_macro2::Span::mixed_site());
    let hit_var = proc_macro2::Ident::new("__lc_hit", proc_macro2::Span::mixed_site());
    let is_async = input.func.sig.asyncness.is_some();
    let (tags_setup, tags_fn) = tags(parts);
    let cache_if = match &opts.cache_if {
        Some(e) => quote_spanned!(e.span()=> #e),
        None => quote!(::layercache::__private::always),
    };
    // A key of the arguments themselves is looked up borrowed first, and
    // built only on a miss (refresh-ahead reads the entry's age on its own path).
    let probe = parts
        .key
        .probe
        .as_ref()
        .filter(|_| opts.refresh_ahead.is_none() && opts.xfetch.is_none());
    let deadlines = deadlines(opts, output);
    // What runs after the local tier (or does its own lookup, without a probe).
    let (sync_fn, async_fn) = match (opts.refresh_ahead.or(opts.xfetch), &deadlines, probe) {
        // Without a probe, a hit moves the entry's idle deadline on a path of
        // its own (`valid` keeps idle apart from refresh-ahead and factory timeouts).
        _ if opts.time_to_idle.ms.is_some() && probe.is_none() => {
            ("get_or_compute_idle", "get_or_compute_async_idle")
        }
        (Some(_), _, _) => (
            "get_or_compute_refreshing",
            "get_or_compute_async_refreshing",
        ),
        (None, Some(_), _) => ("get_or_compute_bounded", "get_or_compute_async_bounded"),
        (None, None, Some(_)) => ("after_local_miss", "after_local_miss_async"),
        (None, None, None) => ("get_or_compute", "get_or_compute_async"),
    };
    let miss_fn = proc_macro2::Ident::new(
        if is_async { async_fn } else { sync_fn },
        proc_macro2::Span::call_site(),
    );
    // Factory timeouts add their arguments between the tags and the origin.
    let deadline_args = deadlines.map(|d| quote!(#d,));
    let (origin, run, bypass, force) = if is_async {
        (
            quote!(async move #block),
            quote!(::layercache::__private::#miss_fn::<#mode, _, #output>(#cache_var, #key_var, #cache_if, #tags_fn, #deadline_args #origin_var).await),
            quote!(::layercache::__private::bypass_async(#cache_var, #origin_var).await),
            quote!(::layercache::__private::refresh_now_async::<#mode, _, #output>(#cache_var, #key_var, #cache_if, #tags_fn, #origin_var).await),
        )
    } else {
        (
            quote!(move || -> #output #block),
            quote!(::layercache::__private::#miss_fn::<#mode, _, #output>(#cache_var, #key_var, #cache_if, #tags_fn, #deadline_args #origin_var)),
            quote!(::layercache::__private::bypass(#cache_var, #origin_var)),
            quote!(::layercache::__private::refresh_now::<#mode, _, #output>(#cache_var, #key_var, #cache_if, #tags_fn, #origin_var)),
        )
    };
    // The conditions read the arguments before the key and the body take them.
    let mut conditions = Vec::new();
    let mut skips_lookup = Vec::new();
    let mut steps = Vec::new();
    if let Some(cond) = &opts.unless {
        let cond = bypass_condition(cond, &checked.sig);
        conditions.push(quote!(let #bypass_var: bool = #cond;));
        skips_lookup.push(quote!(#bypass_var));
        steps.push(quote!(if #bypass_var { return #bypass; }));
    }
    if let Some(cond) = &opts.force_refresh {
        let cond = bypass_condition(cond, &checked.sig);
        conditions.push(quote!(let #force_var: bool = #cond;));
        skips_lookup.push(quote!(#force_var));
        steps.push(quote!(if #force_var { return #force; }));
    }
    let lookup = probe.map(|probe| {
        let lookup = if opts.time_to_idle.ms.is_some() {
            // The owned key is built only when the read moves the entry's deadline.
            quote! {
                match ::layercache::__private::idle_hit::<#mode, _, _, #output>(#cache_var, &#probe) {
                    ::layercache::__private::IdleHit::Fresh(#hit_var) => return #hit_var,
                    ::layercache::__private::IdleHit::Slide(#hit_var) => {
                        ::layercache::__private::idle_slide(#cache_var, &#key_expr);
                        return #hit_var;
                    }
                    ::layercache::__private::IdleHit::Miss => {}
                }
            }
        } else {
            quote! {
                if let ::core::option::Option::Some(#hit_var) = ::layercache::__private::local_hit::<#mode, _, _, #output>(#cache_var, &#probe) {
                    return #hit_var;
                }
            }
        };
        if skips_lookup.is_empty() {
            lookup
        } else {
            quote!(if !(#(#skips_lookup)||*) { #lookup })
        }
    });
    quote! {
        #(#conditions)*
        let #cache_var = #cache_call;
        #lookup
        let #key_var = #key_expr;
        #tags_setup
        let #origin_var = #origin;
        #(#steps)*
        #run
    }
}

/// `soft_timeout_ms` / `hard_timeout_ms`: the `Deadlines` and the error a
/// hard timeout returns (`Err(From::from(OriginTimeout))`, which does not
/// compile unless the error type has that `From`), or `None`.
fn deadlines(opts: &CachedArgs, output: &syn::Type) -> Option<TokenStream> {
    if opts.soft_timeout_ms.is_none() && opts.hard_timeout_ms.is_none() {
        return None;
    }
    let ms = |t: Option<(u64, proc_macro2::Span)>| some_or_none(t.map(millis));
    let (soft, hard) = (ms(opts.soft_timeout_ms), ms(opts.hard_timeout_ms));
    let on_timeout = match opts.hard_timeout_ms {
        Some((_, span)) => quote_spanned!(span=>
            |__lc_t: ::layercache::OriginTimeout| -> #output {
                ::core::result::Result::Err(::core::convert::From::from(__lc_t))
            }
        ),
        None => quote!(::layercache::__private::no_hard_timeout::<#output>),
    };
    Some(quote! {
        ::layercache::__private::Deadlines { soft: #soft, hard: #hard },
        #on_timeout
    })
}

/// `unless = ...`: an argument named alone is a flag; another path is a
/// function to call; anything else is a `bool` expression.
fn bypass_condition(cond: &syn::Expr, sig: &crate::sig::FnSig) -> TokenStream {
    match cond {
        syn::Expr::Path(p)
            if p.path
                .get_ident()
                .is_none_or(|i| !sig.args.iter().any(|a| a.ident == *i)) =>
        {
            quote_spanned!(cond.span()=> (#cond)())
        }
        _ => quote_spanned!(cond.span()=> #cond),
    }
}

/// `tags = [...]`: rendered after a local miss, from the key when it holds
/// the arguments (no template, no receiver); otherwise now, before the
/// body may consume the arguments. Returns the statement rendering them
/// now, if any, and the function the runtime calls for them.
fn tags(parts: &Parts) -> (TokenStream, TokenStream) {
    let Checked { sig, key, tags, .. } = parts.checked;
    if tags.is_empty() {
        return (TokenStream::new(), quote!(::layercache::__private::no_tags));
    }
    let key_ty = &parts.key.ty;
    let renders = tags.iter().map(Template::render);
    if key.is_none() && sig.receiver.is_none() {
        let idents = sig.args.iter().map(|a| &a.ident);
        return (
            TokenStream::new(),
            quote! {
                |__lc_k: &#key_ty| -> ::std::vec::Vec<::std::string::String> {
                    #[allow(unused_variables)]
                    let (#(#idents,)*) = __lc_k;
                    ::std::vec![#(#renders),*]
                }
            },
        );
    }
    let tags_var = proc_macro2::Ident::new("__lc_tags", proc_macro2::Span::mixed_site());
    (
        quote!(let #tags_var: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#renders),*];),
        quote!(move |_: &#key_ty| #tags_var),
    )
}

/// `f__layercache_fn()`: the function's cache, built on first use from
/// its `FnSpec`.
fn cache_companion(parts: &Parts) -> TokenStream {
    let Parts {
        input,
        checked,
        key,
        value_ty,
        ..
    } = parts;
    let vis = &input.func.vis;
    let fn_companion = fn_ident(&input.func.sig.ident);
    let (key_ty, key_checks) = (&key.ty, &key.checks);
    let output = &checked.sig.output;
    let value_check = {
        let span = output.span();
        let mode = checked.mode.marker_at(span);
        quote_spanned!(span=> ::layercache::__private::require_value::<::layercache::__private::ValueOf<#mode, #output>>();)
    };
    let cache_name = cache_name(input);
    let spec = fn_spec(&input.opts, &key.render, value_ty);
    let params = type_params(input);
    // A static in a method or a generic function cannot name the type
    // parameters around it: such caches live in an untyped slot, one per
    // instantiation, found by the type arguments (and the cache's type).
    let slot = if !params.is_empty() {
        let ids = params
            .iter()
            .map(|p| quote_spanned!(p.span()=> ::layercache::__private::type_id::<#p>()));
        let keys = params
            .iter()
            .map(|p| quote_spanned!(p.span()=> ::layercache::__private::type_key::<#p>()));
        quote! {
            static __LC_SLOT: ::layercache::__private::CacheSlot = ::layercache::__private::CacheSlot::new();
            ::layercache::__private::instance_cache(&__LC_SLOT, &[#(#ids),*], || {
                let name = ::layercache::__private::instance_namespace(&#cache_name, &[#(#keys),*]);
                #spec
            })
        }
    } else if input.in_impl {
        quote! {
            static __LC_SLOT: ::layercache::__private::CacheSlot = ::layercache::__private::CacheSlot::new();
            ::layercache::__private::slot_cache(&__LC_SLOT, || {
                let name = #cache_name;
                #spec
            })
        }
    } else {
        quote! {
            static __LC_SLOT: ::layercache::__private::FnSlot<#key_ty, #value_ty> = ::layercache::__private::FnSlot::new();
            __LC_SLOT.get_or_init(|| {
                let name = #cache_name;
                #spec
            })
        }
    };
    // Lifetimes alone need not reach the companion: its key and value own their data.
    let (generics, where_clause) = if params.is_empty() {
        (None, None)
    } else {
        let generics = &input.func.sig.generics;
        (Some(generics), generics.where_clause.as_ref())
    };
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code, clippy::all)]
        #[inline]
        #vis fn #fn_companion #generics () -> &'static ::layercache::__private::FnCache<#key_ty, #value_ty> #where_clause {
            #key_checks
            #value_check
            #slot
        }
    }
}

/// The function's type parameters, in order (lifetimes aside: they are
/// not part of a cache's type).
fn type_params(input: &Cached) -> Vec<&syn::Ident> {
    input
        .func
        .sig
        .generics
        .type_params()
        .map(|t| &t.ident)
        .collect()
}

/// `::<T, U>` naming the type parameters, so calling a generic
/// function's cache needs no inference; nothing for a function without.
fn turbofish(input: &Cached) -> TokenStream {
    let params = type_params(input);
    if params.is_empty() {
        TokenStream::new()
    } else {
        quote!(::<#(#params),*>)
    }
}

/// The cache's name: its `key_prefix`, or its path. Never
/// `type_name::<Self>()`: it may change with the compiler, and every key of
/// the method with it.
fn cache_name(input: &Cached) -> TokenStream {
    let name_str = input.func.sig.ident.to_string();
    match (&input.opts.key_prefix, &input.opts.impl_type) {
        (Some(lit), _) => quote!(::std::string::String::from(#lit)),
        (None, Some(ty)) if input.in_impl => quote!(::std::string::String::from(
            ::core::concat!(::core::module_path!(), "::", #ty, "::", #name_str)
        )),
        (None, _) => quote!(::std::string::String::from(
            ::core::concat!(::core::module_path!(), "::", #name_str)
        )),
    }
}

/// The `FnSpec` literal: the options as the runtime takes them.
fn fn_spec(opts: &CachedArgs, render: &TokenStream, value_ty: &TokenStream) -> TokenStream {
    let timeout = match (opts.timeout, opts.timeout_ms) {
        (Some((0, _)), _) | (_, Some((0, _))) => quote!(::layercache::__private::Timeout::Never),
        (Some((s, span)), _) => {
            quote_spanned!(span=> ::layercache::__private::Timeout::After(::layercache::__private::Duration::from_secs(#s)))
        }
        (_, Some((ms, span))) => {
            quote_spanned!(span=> ::layercache::__private::Timeout::After(::layercache::__private::Duration::from_millis(#ms)))
        }
        // `time_to_idle` alone bounds an entry by its reads only.
        (None, None) if opts.time_to_idle.ms.is_some() => {
            quote!(::layercache::__private::Timeout::Never)
        }
        (None, None) => quote!(::layercache::__private::Timeout::Default),
    };
    let max_entries = match &opts.max_entries {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };
    let (max_bytes, heap_bytes) = match &opts.max_bytes {
        Some(lit) => (
            quote!(::core::option::Option::Some(#lit)),
            quote_spanned!(lit.span()=> ::core::option::Option::Some(|_, __lc_v: &dyn ::core::any::Any| ::layercache::__private::heap_bytes_of::<#value_ty>(__lc_v))),
        ),
        None => (
            quote!(::core::option::Option::None),
            quote!(::core::option::Option::None),
        ),
    };
    let tier = match opts.tier {
        Some(Tier::Local) => quote!(Local),
        Some(Tier::Shared) => quote!(Shared),
        Some(Tier::Both) | None => quote!(Both),
    };
    let local_timeout = some_or_none(opts.local_timeout.ms.map(millis));
    let jitter = some_or_none(opts.jitter.map(|(j, span)| (quote!(#j), span)));
    let none_timeout = some_or_none(opts.none_timeout.ms.map(millis));
    let lock = some_or_none(match (opts.lock, opts.lock_timeout.ms) {
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
    let xfetch = some_or_none(opts.xfetch.map(|(b, span)| (quote!(#b), span)));
    let versioned = match &opts.versioned {
        Some(lit) => quote!(::core::option::Option::Some(::std::string::String::from(#lit))),
        None => quote!(::core::option::Option::None),
    };
    let stale_throttle = some_or_none(opts.stale_throttle.ms.map(millis));
    let time_to_idle = some_or_none(opts.time_to_idle.ms.map(millis));
    let timeout_by = match &opts.timeout_by {
        Some(f) => {
            quote_spanned!(f.span()=> ::core::option::Option::Some(
                |__lc_v: &dyn ::core::any::Any| ::layercache::__private::timeout_by::<#value_ty>(__lc_v, #f)
            ))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        ::layercache::__private::FnSpec {
            namespace: ::core::clone::Clone::clone(&name),
            name,
            timeout: #timeout,
            max_entries: #max_entries,
            max_bytes: #max_bytes,
            heap_bytes: #heap_bytes,
            render: #render,
            tier: ::layercache::__private::TierChoice::#tier,
            local_timeout: #local_timeout,
            jitter: #jitter,
            none_timeout: #none_timeout,
            lock: #lock,
            stale_if_error: #stale_if_error,
            refresh_ahead: #refresh_ahead,
            versioned: #versioned,
            timeout_by: #timeout_by,
            stale_throttle: #stale_throttle,
            xfetch: #xfetch,
            time_to_idle: #time_to_idle,
        }
    }
}

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

/// `f__layercache_entry(args)`: the entry handle of one call, taking the
/// same receiver and arguments as `f` (without `mut` bindings).
fn entry_companion(parts: &Parts) -> TokenStream {
    let Parts {
        input,
        checked,
        key,
        value_ty,
        cache_call,
        ..
    } = parts;
    let sig = &checked.sig;
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
    let fn_sig = &input.func.sig;
    let vis = &input.func.vis;
    let entry_companion = entry_ident(&fn_sig.ident);
    let generics = &fn_sig.generics;
    let where_clause = &fn_sig.generics.where_clause;
    let unsafety = &fn_sig.safety;
    let (key_ty, key_expr) = (&key.ty, &key.expr);
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code, unused_variables, clippy::all)]
        #vis #unsafety fn #entry_companion #generics (#receiver #(#params),*) -> ::layercache::__private::CallEntry<#key_ty, #value_ty> #where_clause {
            #cache_call.entry(#key_expr)
        }
    }
}
