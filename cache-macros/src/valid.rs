//! Checks that parsing cannot make on one option alone: options of
//! `#[cached]` that need or exclude each other, and options of every macro
//! against the function's signature. Every problem found is reported at
//! once, each error pointing at its own token; a signature the model
//! cannot hold stops the checks that depend on it.

use proc_macro2::Span;
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, Pat, ReturnType, Signature, Type};

use crate::ast::{Cached, Checked};
use crate::attr::{CachedArgs, SecsOrMs, Tier};
use crate::sig::{borrowed_part, contains_impl_trait, mut_self, plain_name, FnSig, Mode};
use crate::target::{CheckedInvalidation, Invalidation};
use crate::template::Template;

/// Errors found so far, combined into one `syn::Error`.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn add(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    /// The value of `result`, or `None` with its error kept.
    fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

impl Cached {
    /// Every check of this use, or all the errors found.
    pub fn validate(&self) -> syn::Result<Checked> {
        let mut errors = Errors::default();
        options(&self.opts, &mut errors);
        if errors.take(signature(&self.func.sig)).is_none() {
            // The remaining checks read the argument list and return type.
            return Err(errors.0.expect("the signature's errors were kept"));
        }
        let sig = FnSig::of(&self.func.sig);
        let opts = &self.opts;
        let name = &self.func.sig.ident;
        let arg_names: Vec<String> = sig.args.iter().map(|a| a.ident.to_string()).collect();
        let has_self = sig.receiver.is_some();
        let key = opts
            .key
            .as_ref()
            .and_then(|lit| errors.take(Template::parse(lit, &arg_names, has_self, name, "key")));
        if opts.key.is_none() {
            owned_key_arguments(&sig, &mut errors);
        }
        let mode = mode(opts, &sig, &mut errors);
        if opts.key_prefix.is_none() && opts.impl_type.is_none() && self.in_impl {
            errors.push(unnamed_method(name));
        }
        if opts.refresh_ahead.is_some() {
            owns_arguments(&sig, "refresh_ahead", "after the call returns", &mut errors);
        } else if opts.xfetch.is_some() {
            owns_arguments(&sig, "xfetch", "after the call returns", &mut errors);
        }
        if opts.soft_timeout_ms.is_some() || opts.hard_timeout_ms.is_some() {
            let option = if opts.soft_timeout_ms.is_some() {
                "soft_timeout_ms"
            } else {
                "hard_timeout_ms"
            };
            owns_arguments(&sig, option, "once the call stops waiting", &mut errors);
        }
        let tags = opts
            .tags
            .iter()
            .filter_map(|lit| errors.take(Template::parse(lit, &arg_names, has_self, name, "tags")))
            .collect();
        errors.finish(Checked {
            sig,
            key,
            tags,
            mode,
        })
    }
}

/// Options that need or exclude each other.
fn options(opts: &CachedArgs, errors: &mut Errors) {
    for (pair, base) in [
        (opts.local_timeout, "local_timeout"),
        (opts.none_timeout, "none_timeout"),
        (opts.lock_timeout, "lock_timeout"),
        (opts.stale_throttle, "stale_throttle"),
        (opts.time_to_idle, "time_to_idle"),
    ] {
        if let SecsOrMs {
            both: Some(span), ..
        } = pair
        {
            errors.add(
                span,
                format!("use either `{base}` (seconds) or `{base}_ms`, not both"),
            );
        }
    }
    if let (Some(_), Some((_, span))) = (opts.timeout, opts.timeout_ms) {
        errors.add(
            span,
            "use either `timeout` (seconds) or `timeout_ms`, not both",
        );
    }
    if let (None | Some((false, _)), Some((_, span))) = (opts.lock, opts.lock_timeout.ms) {
        errors.add(
            span,
            "`lock_timeout` is the life of the shared lock; it needs `lock = true`",
        );
    }
    if let (None, Some((_, span))) = (opts.stale_if_error, opts.soft_timeout_ms) {
        errors.add(
            span,
            "`soft_timeout_ms` answers a slow call with a stale value; it needs `stale_if_error` (how stale that value may be)",
        );
    }
    if let (Some((soft, span)), Some((hard, _))) = (opts.soft_timeout_ms, opts.hard_timeout_ms) {
        if soft >= hard {
            errors.add(
                span,
                "`soft_timeout_ms` must be below `hard_timeout_ms`: the soft deadline comes first",
            );
        }
    }
    if let (Some(_), Some((_, span))) = (
        opts.refresh_ahead.or(opts.xfetch),
        opts.soft_timeout_ms.or(opts.hard_timeout_ms),
    ) {
        errors.add(
            span,
            "factory timeouts cannot be combined with `refresh_ahead` or `xfetch` yet: choose one",
        );
    }
    if let (Some(Tier::Shared), Some((_, span))) = (opts.tier, opts.xfetch) {
        errors.add(
            span,
            "`xfetch` acts on local hits; it cannot be used with `tier = \"shared\"`",
        );
    }
    if let (None, Some((_, span))) = (opts.stale_if_error, opts.stale_throttle.ms) {
        errors.add(
            span,
            "`stale_throttle` is how long a stale value answers for a failing function; it needs `stale_if_error`",
        );
    }
    if let (Some(Tier::Shared), Some((_, span))) = (opts.tier, opts.refresh_ahead) {
        errors.add(
            span,
            "`refresh_ahead` acts on local hits; it cannot be used with `tier = \"shared\"`",
        );
    }
    time_to_idle(opts, errors);
    if let (Some(Tier::Local), Some((true, span))) = (opts.tier, opts.lock) {
        errors.add(
            span,
            "`lock` coordinates processes through the shared tier; it cannot be used with `tier = \"local\"` (single-flight within a process is always on)",
        );
    }
    if let (None | Some((false, _)), Some((_, span))) = (opts.cache_none, opts.none_timeout.ms) {
        errors.add(
            span,
            "`none_timeout` is the life of a cached `None`; it needs `cache_none = true`",
        );
    }
    if let (Some(Tier::Shared | Tier::Local), Some((_, span))) = (opts.tier, opts.local_timeout.ms)
    {
        errors.add(
            span,
            "`local_timeout` caps the local copy of a two-tier function; it needs `tier = \"both\"` (the default)",
        );
    }
}

/// `time_to_idle` against the options it cannot go with.
fn time_to_idle(opts: &CachedArgs, errors: &mut Errors) {
    let Some((idle_ms, span)) = opts.time_to_idle.ms else {
        return;
    };
    let timeout_ms = opts
        .timeout
        .map(|(secs, _)| secs.saturating_mul(1000))
        .or(opts.timeout_ms.map(|(ms, _)| ms));
    // `timeout = 0` is "never expires": any idle time is shorter.
    if let Some(timeout_ms) = timeout_ms.filter(|&t| t > 0) {
        if idle_ms >= timeout_ms {
            errors.add(
                span,
                "`time_to_idle` must be shorter than `timeout`: every entry expires at `timeout` before it could idle out; leave `time_to_idle` out, or shorten it",
            );
        }
    }
    if opts.refresh_ahead.is_some() || opts.xfetch.is_some() {
        errors.add(
            span,
            "`time_to_idle` cannot be combined with `refresh_ahead` or `xfetch`: they refresh ahead of a fixed expiry, which sliding expiration keeps moving",
        );
    }
    if opts.soft_timeout_ms.is_some() || opts.hard_timeout_ms.is_some() {
        errors.add(
            span,
            "`time_to_idle` cannot be combined with factory timeouts (`soft_timeout_ms`, `hard_timeout_ms`) yet: choose one",
        );
    }
}

/// What a cached function's signature cannot have: each cached function
/// has one cache with one nameable key and value type, and a hit skips the
/// body (so the body may not change its arguments).
fn signature(sig: &Signature) -> syn::Result<()> {
    let mut errors = Errors::default();
    if let Some(c) = &sig.constness {
        errors.add(c.span, "`#[cached]` cannot be used on a `const fn`");
    }
    for param in &sig.generics.params {
        match param {
            // Each instantiation over type parameters gets a cache of its
            // own, named after the parameters' `CacheKeyType` names.
            GenericParam::Lifetime(_) | GenericParam::Type(_) => {}
            GenericParam::Const(c) => errors.add(
                c.ident.span(),
                "`#[cached]` functions cannot have const parameters; pass the value as an argument instead",
            ),
        }
    }
    for input in &sig.inputs {
        if let Err(e) = argument(input) {
            errors.push(e);
        }
    }
    match &sig.output {
        ReturnType::Default => errors.add(
            sig.paren_token.span.close(),
            "a `#[cached]` function must return a value to cache",
        ),
        ReturnType::Type(_, ty) => {
            if let Some(span) = contains_impl_trait(ty) {
                errors.add(
                    span,
                    "`impl Trait` return values cannot be cached: the value type must be nameable (and `Clone`)",
                );
            }
        }
    }
    errors.finish(())
}

/// The first problem of one argument.
fn argument(input: &FnArg) -> syn::Result<()> {
    let pt = match input {
        FnArg::Receiver(r) if mut_self(r) => {
            return Err(syn::Error::new_spanned(
                r,
                "`#[cached]` cannot be used on a method taking `&mut self`: a cache hit skips the body, so its changes to `self` would be lost",
            ))
        }
        FnArg::Receiver(_) => return Ok(()),
        FnArg::Typed(pt) => pt,
    };
    if plain_name(&pt.pat).is_none() {
        return Err(syn::Error::new(
            pt.pat.span(),
            "`#[cached]` needs plain argument names (`name: Type`) to build the key; destructure inside the body",
        ));
    }
    if let Type::Reference(r) = &*pt.ty {
        if let Some(m) = r.mutability {
            let and = r.and_token;
            return Err(syn::Error::new_spanned(
                quote!(#and #m),
                "`#[cached]` functions cannot take `&mut` arguments: a cache hit skips the body, so its changes would be lost",
            ));
        }
    }
    if let Some(span) = contains_impl_trait(&pt.ty) {
        return Err(syn::Error::new(
            span,
            "`impl Trait` arguments cannot be part of a cache key: the key type must be nameable; take a concrete type, or `&dyn Trait` with a `key` template",
        ));
    }
    Ok(())
}

/// Without a template, the key holds owned copies of the arguments.
fn owned_key_arguments(sig: &FnSig, errors: &mut Errors) {
    for a in &sig.args {
        if let Some(span) = borrowed_part(a.referent.as_ref().unwrap_or(&a.ty)) {
            errors.add(
                span,
                format!(
                    "`{}` borrows data, so it cannot be kept in a cache key; take an owned type (`String`, `Vec<String>`) or name what identifies the call with a `key` template",
                    a.ident
                ),
            );
        }
    }
}

/// What is cached of the return value, and the options that need a kind
/// of return value.
fn mode(opts: &CachedArgs, sig: &FnSig, errors: &mut Errors) -> Mode {
    let mut mode = opts.output.unwrap_or(sig.mode);
    if let Some((true, span)) = opts.cache_none {
        if mode != Mode::Option {
            errors.add(
                span,
                "`cache_none` caches `None` results: the function must return `Option<T>`",
            );
        }
        mode = Mode::OptionAll;
    }
    if let Some((_, span)) = opts.hard_timeout_ms {
        if mode != Mode::Result {
            errors.add(
                span,
                "`hard_timeout_ms` answers a call that took too long with `Err(OriginTimeout.into())`: the function must return `Result<T, E>` with `E: From<layercache::OriginTimeout>`",
            );
        }
    }
    if let Some((_, span)) = opts.stale_if_error {
        if mode != Mode::Result {
            errors.add(
                span,
                "`stale_if_error` serves a stale value in place of an `Err`: the function must return `Result<T, E>`",
            );
        }
    }
    mode
}

/// A method's cache needs a name that does not come from the compiler.
fn unnamed_method(name: &syn::Ident) -> syn::Error {
    let name_str = name.to_string();
    syn::Error::new(
        name.span(),
        format!(
            "a cached method needs a stable name for its cache: add `key_prefix = \"...\"`, or put `#[cached]` on the `impl` block too (names it `module::Type::{name_str}`; or write `in_impl = \"Type\"`); `#[cached]` cannot see the `impl` around `{name_str}`, and the compiler's type names may change between versions"
        ),
    )
}

/// The refresh runs after the call returned: it owns the arguments.
fn owns_arguments(sig: &FnSig, option: &str, when: &str, errors: &mut Errors) {
    if let Some(r) = sig.receiver.as_ref().filter(|r| r.by_ref) {
        errors.add(
            r.tokens.span(),
            format!("`{option}` runs the function in the background {when}, so it cannot borrow `self`; use it on a free function or an associated function with owned arguments"),
        );
    }
    for a in sig.args.iter().filter(|a| a.referent.is_some()) {
        errors.add(
            a.ty.span(),
            format!("`{option}` runs the function in the background {when}, so `{}` must be owned (`String`, not `&str`)", a.ident),
        );
    }
}

/// `#[cache_invalidate]`'s targets, with the templates of `prefix` and
/// `tag` checked against the function's arguments.
pub fn invalidations<'a>(
    targets: &'a [Invalidation],
    sig: &Signature,
) -> syn::Result<Vec<CheckedInvalidation<'a>>> {
    let names: Vec<String> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(pi) => Some(pi.ident.to_string()),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect();
    let has_self = sig.receiver().is_some();
    let parse = |lit, what| Template::parse(lit, &names, has_self, &sig.ident, what);
    let mut errors = Errors::default();
    let checked = targets
        .iter()
        .filter_map(|target| {
            errors.take(match target {
                Invalidation::One(call) => Ok(CheckedInvalidation::One(call)),
                Invalidation::All(path) => Ok(CheckedInvalidation::All(path)),
                Invalidation::Prefix(lit) => parse(lit, "prefix").map(CheckedInvalidation::Prefix),
                Invalidation::Tag(lit) => parse(lit, "tag").map(CheckedInvalidation::Tag),
            })
        })
        .collect();
    errors.finish(checked)
}

/// The type of what a `#[cache_put]` function returns, which it stores.
pub fn put_value(sig: &Signature) -> syn::Result<&Type> {
    match &sig.output {
        ReturnType::Type(_, output) => Ok(output),
        ReturnType::Default => Err(syn::Error::new(
            sig.paren_token.span.close(),
            "a `#[cache_put]` function must return the value to store",
        )),
    }
}
