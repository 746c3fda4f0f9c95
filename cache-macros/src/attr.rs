//! Options of `#[cached(...)]`.

use proc_macro2::Span;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitInt, LitStr, Meta, Token};

/// The parsed options of one `#[cached(...)]`.
#[derive(Default)]
pub struct CachedArgs {
    pub timeout: Option<(u64, Span)>,
    pub timeout_ms: Option<(u64, Span)>,
    pub key_prefix: Option<LitStr>,
    pub key: Option<LitStr>,
    pub max_entries: Option<LitInt>,
    pub in_impl: bool,
    /// `in_impl = "Repo"`: the `impl`'s type, which names a method's cache
    /// (`module::Repo::method`) when it has no `key_prefix`.
    pub impl_type: Option<LitStr>,
    /// `output = "result" | "option" | "value"`: how to treat the return type
    /// when its name does not say (an alias of `Result`, say).
    pub output: Option<crate::sig::Mode>,
    /// `local_timeout` (seconds) or `local_timeout_ms`, in milliseconds.
    pub local_timeout_ms: Option<(u64, Span)>,
    /// `tier = "local" | "shared" | "both"`.
    pub tier: Option<Tier>,
    /// `jitter = 0.1`: each timeout spread by ±10 %.
    pub jitter: Option<(f64, Span)>,
    /// `cache_none = true`: cache `None` results too.
    pub cache_none: Option<(bool, Span)>,
    /// `none_timeout = 30` (seconds) or `none_timeout_ms`: life of a
    /// cached `None`, in milliseconds.
    pub none_timeout_ms: Option<(u64, Span)>,
    /// `lock = true`: distributed single-flight through the shared tier.
    pub lock: Option<(bool, Span)>,
    /// `lock_timeout` (seconds) or `lock_timeout_ms`: the lock's life, in ms.
    pub lock_timeout_ms: Option<(u64, Span)>,
    /// `stale_if_error = 600` (seconds): fail-safe window.
    pub stale_if_error: Option<(u64, Span)>,
    /// `unless = expr`: when true, the call bypasses the cache.
    pub unless: Option<Expr>,
    /// `cache_if = path or closure`: `fn(&R) -> bool` over the result;
    /// `false` vetoes storing it.
    pub cache_if: Option<Expr>,
    /// `refresh_ahead = 0.8`: refresh in the background after 80 % of the timeout.
    pub refresh_ahead: Option<(f64, Span)>,
    /// `versioned = "catalog"`: the function's shared keys carry the
    /// version of group `catalog` (see `bump_version`).
    pub versioned: Option<LitStr>,
    /// `tags = ["user:{user_id}"]`: templates of the call's tags.
    pub tags: Vec<LitStr>,
}

/// Which tiers a function uses.
#[derive(Clone, Copy)]
pub enum Tier {
    Local,
    Shared,
    Both,
}

const OPTIONS: &[&str] = &[
    "timeout",
    "timeout_ms",
    "key_prefix",
    "key",
    "max_entries",
    "in_impl",
    "output",
    "tier",
    "local_timeout",
    "local_timeout_ms",
    "jitter",
    "cache_none",
    "none_timeout",
    "none_timeout_ms",
    "lock",
    "lock_timeout",
    "lock_timeout_ms",
    "stale_if_error",
    "unless",
    "cache_if",
    "refresh_ahead",
    "versioned",
    "tags",
];

/// Names other caching libraries use for our options.
const ALIASES: &[(&str, &str)] = &[
    ("time", "timeout"),
    ("ttl", "timeout"),
    ("ttl_secs", "timeout"),
    ("expire", "timeout"),
    ("expires", "timeout"),
    ("expiry", "timeout"),
    ("expiration", "timeout"),
    ("seconds", "timeout"),
    ("secs", "timeout"),
    ("ttl_ms", "timeout_ms"),
    ("ttl_millis", "timeout_ms"),
    ("timeout_millis", "timeout_ms"),
    ("millis", "timeout_ms"),
    ("ms", "timeout_ms"),
    ("prefix", "key_prefix"),
    ("namespace", "key_prefix"),
    ("name", "key_prefix"),
    ("template", "key"),
    ("key_template", "key"),
    ("convert", "key"),
    ("max_size", "max_entries"),
    ("size", "max_entries"),
    ("capacity", "max_entries"),
    ("max_capacity", "max_entries"),
    ("limit", "max_entries"),
    ("mode", "output"),
    ("tiers", "tier"),
    ("layer", "tier"),
    ("level", "tier"),
    ("local_ttl", "local_timeout"),
    ("l1_timeout", "local_timeout"),
    ("local_ttl_ms", "local_timeout_ms"),
    ("returns", "output"),
    ("result", "output"),
    ("ttl_jitter", "jitter"),
    ("spread", "jitter"),
    ("cache_null", "cache_none"),
    ("negative", "cache_none"),
    ("negative_cache", "cache_none"),
    ("cache_empty", "cache_none"),
    ("none_ttl", "none_timeout"),
    ("negative_timeout", "none_timeout"),
    ("negative_ttl", "none_timeout"),
    ("none_ttl_ms", "none_timeout_ms"),
    ("distributed_lock", "lock"),
    ("sync_lock", "lock"),
    ("locked", "lock"),
    ("lock_ttl", "lock_timeout"),
    ("lock_ttl_ms", "lock_timeout_ms"),
    ("fail_safe", "stale_if_error"),
    ("failsafe", "stale_if_error"),
    ("stale_on_error", "stale_if_error"),
    ("serve_stale", "stale_if_error"),
    ("max_stale", "stale_if_error"),
    ("skip_if", "unless"),
    ("bypass_if", "unless"),
    ("condition", "cache_if"),
    ("filter", "cache_if"),
    ("response_filter", "cache_if"),
    ("store_if", "cache_if"),
    ("veto", "cache_if"),
    ("refresh", "refresh_ahead"),
    ("refresh_after", "refresh_ahead"),
    ("early_refresh", "refresh_ahead"),
    ("refresh_factor", "refresh_ahead"),
    ("version", "versioned"),
    ("version_group", "versioned"),
    ("group", "versioned"),
    ("cache_type", "versioned"),
];

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// "did you mean ...?" for an unknown option name, if one is close.
pub fn suggest(name: &str, options: &[&'static str]) -> Option<&'static str> {
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == name) {
        if options.contains(to) {
            return Some(to);
        }
    }
    options
        .iter()
        .map(|o| (levenshtein(name, o), *o))
        .filter(|(d, o)| *d <= 2 && *d < o.len())
        .min()
        .map(|(_, o)| o)
}

pub fn unknown_option(
    path: &syn::Path,
    name: &str,
    options: &[&'static str],
    attr: &str,
) -> syn::Error {
    let list = options
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let msg = match suggest(name, options) {
        Some(s) => format!("unknown `{attr}` option `{name}`: did you mean `{s}`?"),
        None => format!("unknown `{attr}` option `{name}`; expected one of {list}"),
    };
    syn::Error::new_spanned(path, msg)
}

fn int_value(expr: &Expr, what: &str, example: &str) -> syn::Result<LitInt> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => Ok(i.clone()),
        _ => Err(syn::Error::new(
            expr.span(),
            format!("expected {what} as an integer literal, like `{example}`"),
        )),
    }
}

/// A duration option given as `{base} = seconds` or `{base}_ms =
/// milliseconds` (`name` says which): milliseconds, at least 1, and only
/// one of the two forms (`earlier` is what the other form set).
fn secs_or_ms(
    name: &str,
    expr: &Expr,
    what: &str,
    (secs_example, ms_example): (&str, &str),
    zero_hint: &str,
    earlier: Option<(u64, Span)>,
) -> syn::Result<(u64, Span)> {
    let ms = name.ends_with("_ms");
    let base = name.trim_end_matches("_ms");
    let (unit, example) = if ms {
        ("milliseconds", ms_example)
    } else {
        ("seconds", secs_example)
    };
    let lit = int_value(expr, &format!("{what} in {unit}"), example)?;
    let n: u64 = lit.base10_parse()?;
    if n == 0 {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{name}` must be at least 1; {zero_hint}"),
        ));
    }
    if earlier.is_some() {
        return Err(syn::Error::new(
            lit.span(),
            format!("use either `{base}` (seconds) or `{base}_ms`, not both"),
        ));
    }
    Ok((if ms { n } else { n.saturating_mul(1000) }, lit.span()))
}

fn str_value(expr: &Expr, what: &str, example: &str) -> syn::Result<LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        _ => Err(syn::Error::new(
            expr.span(),
            format!("expected {what} as a string literal, like `{example}`"),
        )),
    }
}

fn bool_value(expr: &Expr, name: &str) -> syn::Result<bool> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b.value),
        _ => Err(syn::Error::new(
            expr.span(),
            format!("expected `true` or `false` for `{name}`"),
        )),
    }
}

/// Characters a key prefix may not hold: glob characters (they would widen
/// a `SCAN MATCH`), template braces, and white space.
pub fn check_prefix(lit: &LitStr, what: &str) -> syn::Result<()> {
    let value = lit.value();
    if value.is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{what}` must not be empty"),
        ));
    }
    if let Some(c) = value.chars().find(|c| {
        matches!(c, '*' | '?' | '[' | ']' | '\\' | '{' | '}') || c.is_whitespace() || c.is_control()
    }) {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{what}` must not contain {c:?}: glob characters, braces and white space would break prefix invalidation"),
        ));
    }
    if value.ends_with(':') {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{what}` must not end with `:`; the separator is added for you"),
        ));
    }
    Ok(())
}

pub fn parse_cached_args(tokens: proc_macro2::TokenStream) -> syn::Result<CachedArgs> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens)?;
    let mut args = CachedArgs::default();
    let mut seen: Vec<String> = Vec::new();
    for meta in metas {
        let path = meta.path().clone();
        let name = path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_else(|| path.to_token_stream_string());
        if seen.contains(&name) {
            return Err(syn::Error::new_spanned(
                &path,
                format!("duplicate `cached` option `{name}`"),
            ));
        }
        seen.push(name.clone());
        let value = match &meta {
            Meta::NameValue(nv) => Some(&nv.value),
            Meta::Path(_) => None,
            Meta::List(l) => {
                return Err(syn::Error::new_spanned(
                    l,
                    format!("expected `{name} = value`, not `{name}(...)`"),
                ))
            }
        };
        let need = |example: &str| -> syn::Result<&Expr> {
            value.ok_or_else(|| {
                syn::Error::new_spanned(&path, format!("`{name}` needs a value, like `{example}`"))
            })
        };
        match name.as_str() {
            "timeout" => {
                let lit = int_value(
                    need("timeout = 300")?,
                    "the timeout in seconds",
                    "timeout = 300",
                )?;
                args.timeout = Some((lit.base10_parse()?, lit.span()));
            }
            "timeout_ms" => {
                let lit = int_value(
                    need("timeout_ms = 250")?,
                    "the timeout in milliseconds",
                    "timeout_ms = 250",
                )?;
                args.timeout_ms = Some((lit.base10_parse()?, lit.span()));
            }
            "key_prefix" => {
                let lit = str_value(
                    need("key_prefix = \"user_profile\"")?,
                    "the key prefix",
                    "key_prefix = \"user_profile\"",
                )?;
                check_prefix(&lit, "key_prefix")?;
                args.key_prefix = Some(lit);
            }
            "key" => {
                let lit = str_value(
                    need("key = \"{query}:page:{page}\"")?,
                    "the key template",
                    "key = \"{query}:page:{page}\"",
                )?;
                args.key = Some(lit);
            }
            "max_entries" => {
                let lit = int_value(
                    need("max_entries = 10000")?,
                    "the local bound",
                    "max_entries = 10000",
                )?;
                if lit.base10_parse::<u64>()? == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`max_entries` must be at least 1",
                    ));
                }
                args.max_entries = Some(lit);
            }
            "output" => {
                let expr = need("output = \"result\"")?;
                args.output = Some(output_mode(expr)?);
            }
            "tier" => {
                let lit = str_value(need("tier = \"both\"")?, "the tiers", "tier = \"both\"")?;
                args.tier = Some(match lit.value().as_str() {
                    "local" => Tier::Local,
                    "shared" => Tier::Shared,
                    "both" => Tier::Both,
                    other => {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!("unknown `tier` {other:?}: expected \"local\" (in-process only), \"shared\" (shared tier only) or \"both\""),
                        ))
                    }
                });
            }
            "local_timeout" | "local_timeout_ms" => {
                let example = ("local_timeout = 5", "local_timeout_ms = 500");
                let expr = need(if name.ends_with("_ms") {
                    example.1
                } else {
                    example.0
                })?;
                args.local_timeout_ms = Some(secs_or_ms(
                    &name,
                    expr,
                    "the local copies' life",
                    example,
                    "to keep no local copy, use `tier = \"shared\"`",
                    args.local_timeout_ms,
                )?);
            }
            "jitter" => {
                let expr = need("jitter = 0.1")?;
                let (j, span) = match expr {
                    Expr::Lit(ExprLit {
                        lit: Lit::Float(f), ..
                    }) => (f.base10_parse::<f64>()?, f.span()),
                    Expr::Lit(ExprLit {
                        lit: Lit::Int(i), ..
                    }) => (i.base10_parse::<u64>()? as f64, i.span()),
                    _ => return Err(syn::Error::new(
                        expr.span(),
                        "expected the jitter as a fraction literal, like `jitter = 0.1` (±10 %)",
                    )),
                };
                if !(0.0..1.0).contains(&j) {
                    return Err(syn::Error::new(
                        span,
                        "`jitter` is a fraction of the timeout: at least 0 and below 1, like `jitter = 0.1` (±10 %)",
                    ));
                }
                args.jitter = Some((j, span));
            }
            "cache_none" => {
                let b = match value {
                    Some(v) => bool_value(v, "cache_none")?,
                    None => true,
                };
                args.cache_none = Some((b, path.span()));
            }
            "none_timeout" | "none_timeout_ms" => {
                let example = ("none_timeout = 30", "none_timeout_ms = 500");
                let expr = need(if name.ends_with("_ms") {
                    example.1
                } else {
                    example.0
                })?;
                args.none_timeout_ms = Some(secs_or_ms(
                    &name,
                    expr,
                    "the life of a cached `None`",
                    example,
                    "a cached `None` that never expires would hide data created later",
                    args.none_timeout_ms,
                )?);
            }
            "lock" => {
                let b = match value {
                    Some(v) => bool_value(v, "lock")?,
                    None => true,
                };
                args.lock = Some((b, path.span()));
            }
            "lock_timeout" | "lock_timeout_ms" => {
                let example = ("lock_timeout = 10", "lock_timeout_ms = 2000");
                let expr = need(if name.ends_with("_ms") {
                    example.1
                } else {
                    example.0
                })?;
                args.lock_timeout_ms = Some(secs_or_ms(
                    &name,
                    expr,
                    "how long a lock outlives a holder that died",
                    example,
                    "it should exceed the function's longest run",
                    args.lock_timeout_ms,
                )?);
            }
            "stale_if_error" => {
                let lit = int_value(
                    need("stale_if_error = 600")?,
                    "how long past expiry a value may replace an error, in seconds",
                    "stale_if_error = 600",
                )?;
                let n: u64 = lit.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`stale_if_error` must be at least 1 (seconds past expiry)",
                    ));
                }
                args.stale_if_error = Some((n, lit.span()));
            }
            "refresh_ahead" => {
                let expr = need("refresh_ahead = 0.8")?;
                let (r, span) = match expr {
                    Expr::Lit(ExprLit {
                        lit: Lit::Float(f), ..
                    }) => (f.base10_parse::<f64>()?, f.span()),
                    _ => {
                        return Err(syn::Error::new(
                            expr.span(),
                            "expected the refresh point as a fraction of the timeout, like `refresh_ahead = 0.8`",
                        ))
                    }
                };
                if !(r > 0.0 && r < 1.0) {
                    return Err(syn::Error::new(
                        span,
                        "`refresh_ahead` is a fraction of the timeout, above 0 and below 1, like `refresh_ahead = 0.8`",
                    ));
                }
                args.refresh_ahead = Some((r, span));
            }
            "versioned" => {
                let lit = str_value(
                    need("versioned = \"catalog\"")?,
                    "the version group",
                    "versioned = \"catalog\"",
                )?;
                check_prefix(&lit, "versioned")?;
                args.versioned = Some(lit);
            }
            "tags" => {
                let expr = need("tags = [\"user:{user_id}\"]")?;
                let Expr::Array(array) = expr else {
                    return Err(syn::Error::new(
                        expr.span(),
                        "expected a list of tag templates, like `tags = [\"user:{user_id}\"]`",
                    ));
                };
                for e in &array.elems {
                    args.tags.push(str_value(
                        e,
                        "a tag template",
                        "tags = [\"user:{user_id}\"]",
                    )?);
                }
                if args.tags.is_empty() {
                    return Err(syn::Error::new(
                        array.span(),
                        "`tags` needs at least one tag, like `tags = [\"user:{user_id}\"]`",
                    ));
                }
            }
            "unless" => {
                args.unless = Some(need("unless = is_admin")?.clone());
            }
            "cache_if" => {
                args.cache_if = Some(need("cache_if = worth_caching")?.clone());
            }
            "in_impl" => {
                args.in_impl = match value {
                    Some(Expr::Lit(ExprLit {
                        lit: Lit::Str(lit), ..
                    })) => {
                        check_prefix(lit, "in_impl")?;
                        args.impl_type = Some(lit.clone());
                        true
                    }
                    Some(v) => bool_value(v, "in_impl")?,
                    None => true,
                };
            }
            _ => return Err(unknown_option(&path, &name, OPTIONS, "cached")),
        }
    }
    if let (Some(_), Some((_, span))) = (args.timeout, args.timeout_ms) {
        return Err(syn::Error::new(
            span,
            "use either `timeout` (seconds) or `timeout_ms`, not both",
        ));
    }
    if let (None | Some((false, _)), Some((_, span))) = (args.lock, args.lock_timeout_ms) {
        return Err(syn::Error::new(
            span,
            "`lock_timeout` is the life of the shared lock; it needs `lock = true`",
        ));
    }
    if let (Some(Tier::Shared), Some((_, span))) = (args.tier, args.refresh_ahead) {
        return Err(syn::Error::new(
            span,
            "`refresh_ahead` acts on local hits; it cannot be used with `tier = \"shared\"`",
        ));
    }
    if let (Some(Tier::Local), Some((true, span))) = (args.tier, args.lock) {
        return Err(syn::Error::new(
            span,
            "`lock` coordinates processes through the shared tier; it cannot be used with `tier = \"local\"` (single-flight within a process is always on)",
        ));
    }
    if let (None | Some((false, _)), Some((_, span))) = (args.cache_none, args.none_timeout_ms) {
        return Err(syn::Error::new(
            span,
            "`none_timeout` is the life of a cached `None`; it needs `cache_none = true`",
        ));
    }
    if let (Some(Tier::Shared | Tier::Local), Some((_, span))) = (args.tier, args.local_timeout_ms)
    {
        return Err(syn::Error::new(
            span,
            "`local_timeout` caps the local copy of a two-tier function; it needs `tier = \"both\"` (the default)",
        ));
    }
    Ok(args)
}

trait PathString {
    fn to_token_stream_string(&self) -> String;
}

impl PathString for syn::Path {
    fn to_token_stream_string(&self) -> String {
        quote::ToTokens::to_token_stream(self)
            .to_string()
            .replace(' ', "")
    }
}

/// A `prefix = "..."` literal: glob characters are refused (braces are the
/// template's own and are checked by the template parser).
pub fn check_prefix_text(lit: &LitStr) -> syn::Result<()> {
    let value = lit.value();
    if value.is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            "an empty `prefix` would drop every entry; use `layercache::clear()` for that",
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, '*' | '?' | '[' | ']' | '\\'))
    {
        return Err(syn::Error::new(
            lit.span(),
            format!("`prefix` is a literal prefix, not a pattern: remove {c:?}"),
        ));
    }
    Ok(())
}

/// `output = "result" | "option" | "value"`: how to treat a return type whose
/// name does not say (an alias of `Result` with another name, say).
pub fn output_mode(expr: &Expr) -> syn::Result<crate::sig::Mode> {
    let lit = str_value(expr, "how to treat the return value", "output = \"result\"")?;
    match lit.value().as_str() {
        "result" => Ok(crate::sig::Mode::Result),
        "option" => Ok(crate::sig::Mode::Option),
        "value" => Ok(crate::sig::Mode::Plain),
        other => Err(syn::Error::new(
            lit.span(),
            format!("unknown `output` {other:?}: expected \"result\" (only `Ok` counts), \"option\" (only `Some` is cached) or \"value\" (every value)"),
        )),
    }
}
