//! Options of `#[cached(...)]`, each parsed into plain data that keeps the
//! span of what the user wrote. A value is checked on its own here (a
//! string where a string belongs, a fraction in range); checks between
//! options, and against the function, are `valid`'s.

use proc_macro2::Span;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitInt, LitStr, Meta, Token};

use crate::options::{unknown_option, OPTIONS};

/// The parsed options of one `#[cached(...)]`.
#[derive(Default)]
pub struct CachedArgs {
    pub timeout: Option<(u64, Span)>,
    pub timeout_ms: Option<(u64, Span)>,
    pub key_prefix: Option<LitStr>,
    pub key: Option<LitStr>,
    pub max_entries: Option<LitInt>,
    /// `max_bytes = 67108864`: the byte bound of the local tier.
    pub max_bytes: Option<LitInt>,
    pub in_impl: bool,
    /// `in_impl = "Repo"`: the `impl`'s type, which names a method's cache
    /// (`module::Repo::method`) when it has no `key_prefix`.
    pub impl_type: Option<LitStr>,
    /// `output = "result" | "option" | "value"`: how to treat the return type
    /// when its name does not say (an alias of `Result`, say).
    pub output: Option<crate::sig::Mode>,
    /// `local_timeout` (seconds) or `local_timeout_ms`.
    pub local_timeout: SecsOrMs,
    /// `tier = "local" | "shared" | "both"`.
    pub tier: Option<Tier>,
    /// `jitter = 0.1`: each timeout spread by ±10 %.
    pub jitter: Option<(f64, Span)>,
    /// `cache_none = true`: cache `None` results too.
    pub cache_none: Option<(bool, Span)>,
    /// `none_timeout = 30` (seconds) or `none_timeout_ms`: life of a
    /// cached `None`.
    pub none_timeout: SecsOrMs,
    /// `lock = true`: distributed single-flight through the shared tier.
    pub lock: Option<(bool, Span)>,
    /// `lock_timeout` (seconds) or `lock_timeout_ms`: the lock's life.
    pub lock_timeout: SecsOrMs,
    /// `stale_if_error = 600` (seconds): fail-safe window.
    pub stale_if_error: Option<(u64, Span)>,
    /// `unless = expr`: when true, the call bypasses the cache.
    pub unless: Option<Expr>,
    /// `cache_if = path or closure`: `fn(&R) -> bool` over the result;
    /// `false` vetoes storing it.
    pub cache_if: Option<Expr>,
    /// `refresh_ahead = 0.8`: refresh in the background after 80 % of the timeout.
    pub refresh_ahead: Option<(f64, Span)>,
    /// `xfetch = 1.0`: probabilistic early refresh with this beta.
    pub xfetch: Option<(f64, Span)>,
    /// `versioned = "catalog"`: the function's shared keys carry the
    /// version of group `catalog` (see `bump_version`).
    pub versioned: Option<LitStr>,
    /// `tags = ["user:{user_id}"]`: templates of the call's tags.
    pub tags: Vec<LitStr>,
    /// `stale_throttle` (seconds) or `stale_throttle_ms`: after a failure
    /// answered by a stale value, how long the key keeps that answer.
    pub stale_throttle: SecsOrMs,
    /// `timeout_by = path`: `fn(&V) -> Duration`, each value's lifetime.
    pub timeout_by: Option<Expr>,
    /// `force_refresh = expr`: when true, the call runs the function and
    /// stores its result in both tiers.
    pub force_refresh: Option<Expr>,
    /// `time_to_idle` (seconds) or `time_to_idle_ms`: sliding expiration,
    /// an entry not read for this long expires.
    pub time_to_idle: SecsOrMs,
    /// `soft_timeout_ms = 100`: past it, a stale value answers.
    pub soft_timeout_ms: Option<(u64, Span)>,
    /// `hard_timeout_ms = 2000`: past it, the call stops waiting.
    pub hard_timeout_ms: Option<(u64, Span)>,
}

/// Which tiers a function uses.
#[derive(Clone, Copy)]
pub enum Tier {
    Local,
    Shared,
    Both,
}

/// A duration option written in seconds (`lock_timeout = 10`) or in
/// milliseconds (`lock_timeout_ms = 2000`).
#[derive(Default, Clone, Copy)]
pub struct SecsOrMs {
    /// The duration in milliseconds, spanned at its literal.
    pub ms: Option<(u64, Span)>,
    /// The literal of the second spelling, when both were written.
    pub both: Option<Span>,
}

impl SecsOrMs {
    fn set(&mut self, (ms, span): (u64, Span)) {
        match self.ms {
            Some(_) => self.both = Some(span),
            None => self.ms = Some((ms, span)),
        }
    }
}

pub fn parse_cached_args(tokens: proc_macro2::TokenStream) -> syn::Result<CachedArgs> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens)?;
    let mut args = CachedArgs::default();
    let mut seen = Vec::new();
    for meta in &metas {
        args.set(&Written::of(meta, &mut seen)?)?;
    }
    Ok(args)
}

impl CachedArgs {
    fn set(&mut self, o: &Written) -> syn::Result<()> {
        match o.name.as_str() {
            "timeout" => self.timeout = Some(o.int("the timeout in seconds", "timeout = 300")?),
            "timeout_ms" => {
                self.timeout_ms = Some(o.int("the timeout in milliseconds", "timeout_ms = 250")?)
            }
            "key_prefix" => {
                self.key_prefix = Some(o.prefix("the key prefix", "key_prefix = \"user_profile\"")?)
            }
            "key" => self.key = Some(o.str("the key template", "key = \"{query}:page:{page}\"")?),
            "max_entries" => self.max_entries = Some(max_entries(o)?),
            "max_bytes" => self.max_bytes = Some(max_bytes(o)?),
            "output" => self.output = Some(output_mode(o.need("output = \"result\"")?)?),
            "tier" => self.tier = Some(tier(o)?),
            "local_timeout" | "local_timeout_ms" => self.local_timeout.set(o.secs_or_ms(
                "the local copies' life",
                ("local_timeout = 5", "local_timeout_ms = 500"),
                "to keep no local copy, use `tier = \"shared\"`",
            )?),
            "jitter" => self.jitter = Some(jitter(o)?),
            "cache_none" => self.cache_none = Some(o.flag()?),
            "none_timeout" | "none_timeout_ms" => self.none_timeout.set(o.secs_or_ms(
                "the life of a cached `None`",
                ("none_timeout = 30", "none_timeout_ms = 500"),
                "a cached `None` that never expires would hide data created later",
            )?),
            "lock" => self.lock = Some(o.flag()?),
            "lock_timeout" | "lock_timeout_ms" => self.lock_timeout.set(o.secs_or_ms(
                "how long a lock outlives a holder that died",
                ("lock_timeout = 10", "lock_timeout_ms = 2000"),
                "it should exceed the function's longest run",
            )?),
            "stale_if_error" => self.stale_if_error = Some(stale_if_error(o)?),
            "stale_throttle" | "stale_throttle_ms" => self.stale_throttle.set(o.secs_or_ms(
                "how long a failing function is not asked again",
                ("stale_throttle = 30", "stale_throttle_ms = 500"),
                "the default, without it, is 30 s",
            )?),
            "timeout_by" => self.timeout_by = Some(timeout_by(o)?),
            "time_to_idle" | "time_to_idle_ms" => self.time_to_idle.set(o.secs_or_ms(
                "how long an unread entry lives",
                ("time_to_idle = 60", "time_to_idle_ms = 500"),
                "for entries that never idle out, leave `time_to_idle` out",
            )?),
            "soft_timeout_ms" => {
                self.soft_timeout_ms = Some(o.secs_or_ms(
                    "how long to wait before a stale value answers",
                    ("soft_timeout_ms = 100", "soft_timeout_ms = 100"),
                    "to answer with the stale value at once, use a short timeout",
                )?)
            }
            "hard_timeout_ms" => {
                self.hard_timeout_ms = Some(o.secs_or_ms(
                    "how long to wait for the function at most",
                    ("hard_timeout_ms = 2000", "hard_timeout_ms = 2000"),
                    "a call must be given some time",
                )?)
            }
            "refresh_ahead" => self.refresh_ahead = Some(refresh_ahead(o)?),
            "xfetch" => self.xfetch = Some(xfetch(o)?),
            "versioned" => {
                self.versioned = Some(o.prefix("the version group", "versioned = \"catalog\"")?)
            }
            "tags" => self.tags = tags(o)?,
            "unless" => self.unless = Some(o.need("unless = is_admin")?.clone()),
            "force_refresh" => {
                self.force_refresh = Some(o.need("force_refresh = refresh_now")?.clone())
            }
            "cache_if" => self.cache_if = Some(o.need("cache_if = worth_caching")?.clone()),
            "in_impl" => match o.value {
                Some(Expr::Lit(ExprLit {
                    lit: Lit::Str(lit), ..
                })) => {
                    check_prefix(lit, "in_impl")?;
                    self.impl_type = Some(lit.clone());
                    self.in_impl = true;
                }
                _ => self.in_impl = o.flag()?.0,
            },
            _ => return Err(unknown_option(o.path, &o.name, OPTIONS, "cached")),
        }
        Ok(())
    }
}

/// One option as written: `name` alone or `name = value`.
struct Written<'a> {
    name: String,
    path: &'a syn::Path,
    value: Option<&'a Expr>,
}

impl<'a> Written<'a> {
    /// The option of `meta`, which must not repeat one in `seen`.
    fn of(meta: &'a Meta, seen: &mut Vec<String>) -> syn::Result<Written<'a>> {
        let path = meta.path();
        let name = path.get_ident().map(|i| i.to_string()).unwrap_or_else(|| {
            quote::ToTokens::to_token_stream(path)
                .to_string()
                .replace(' ', "")
        });
        if seen.contains(&name) {
            return Err(syn::Error::new_spanned(
                path,
                format!("duplicate `cached` option `{name}`"),
            ));
        }
        seen.push(name.clone());
        let value = match meta {
            Meta::NameValue(nv) => Some(&nv.value),
            Meta::Path(_) => None,
            Meta::List(l) => {
                return Err(syn::Error::new_spanned(
                    l,
                    format!("expected `{name} = value`, not `{name}(...)`"),
                ))
            }
        };
        Ok(Written { name, path, value })
    }

    /// The value, which this option cannot do without.
    fn need(&self, example: &str) -> syn::Result<&'a Expr> {
        self.value.ok_or_else(|| {
            syn::Error::new_spanned(
                self.path,
                format!("`{}` needs a value, like `{example}`", self.name),
            )
        })
    }

    /// `name` alone means `name = true`.
    fn flag(&self) -> syn::Result<(bool, Span)> {
        let b = match self.value {
            Some(v) => bool_value(v, &self.name)?,
            None => true,
        };
        Ok((b, self.path.span()))
    }

    /// A float or integer literal, as `f64`; `expected` when it is neither.
    fn number(&self, expected: &str, example: &str) -> syn::Result<(f64, Span)> {
        let expr = self.need(example)?;
        match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Float(f), ..
            }) => Ok((f.base10_parse::<f64>()?, f.span())),
            Expr::Lit(ExprLit {
                lit: Lit::Int(i), ..
            }) => Ok((i.base10_parse::<u64>()? as f64, i.span())),
            _ => Err(syn::Error::new(expr.span(), expected)),
        }
    }

    fn int(&self, what: &str, example: &str) -> syn::Result<(u64, Span)> {
        let lit = int_value(self.need(example)?, what, example)?;
        Ok((lit.base10_parse()?, lit.span()))
    }

    fn str(&self, what: &str, example: &str) -> syn::Result<LitStr> {
        str_value(self.need(example)?, what, example)
    }

    /// A string that becomes part of keys (see [`check_prefix`]).
    fn prefix(&self, what: &str, example: &str) -> syn::Result<LitStr> {
        let lit = self.str(what, example)?;
        check_prefix(&lit, &self.name)?;
        Ok(lit)
    }

    /// A duration given as `{base} = seconds` or `{base}_ms = milliseconds`:
    /// milliseconds, at least 1.
    fn secs_or_ms(
        &self,
        what: &str,
        (secs_example, ms_example): (&str, &str),
        zero_hint: &str,
    ) -> syn::Result<(u64, Span)> {
        let ms = self.name.ends_with("_ms");
        let (unit, example) = if ms {
            ("milliseconds", ms_example)
        } else {
            ("seconds", secs_example)
        };
        let value = self.need(example)?;
        if is_negative(value) {
            return Err(syn::Error::new_spanned(
                value,
                format!(
                    "`{}` cannot be negative: it is {what} in {unit}, like `{example}`",
                    self.name
                ),
            ));
        }
        let lit = int_value(value, &format!("{what} in {unit}"), example)?;
        let n: u64 = lit.base10_parse()?;
        if n == 0 {
            return Err(syn::Error::new(
                lit.span(),
                format!("`{}` must be at least 1; {zero_hint}", self.name),
            ));
        }
        Ok((if ms { n } else { n.saturating_mul(1000) }, lit.span()))
    }
}

fn max_entries(o: &Written) -> syn::Result<LitInt> {
    let lit = int_value(
        o.need("max_entries = 10000")?,
        "the local bound",
        "max_entries = 10000",
    )?;
    if lit.base10_parse::<u64>()? == 0 {
        return Err(syn::Error::new(
            lit.span(),
            "`max_entries` must be at least 1",
        ));
    }
    Ok(lit)
}

fn max_bytes(o: &Written) -> syn::Result<LitInt> {
    let lit = int_value(
        o.need("max_bytes = 67108864")?,
        "the local tier's byte bound",
        "max_bytes = 67108864",
    )?;
    if lit.base10_parse::<u64>()? == 0 {
        return Err(syn::Error::new(
            lit.span(),
            "`max_bytes` must be at least 1",
        ));
    }
    Ok(lit)
}

fn tier(o: &Written) -> syn::Result<Tier> {
    let lit = o.str("the tiers", "tier = \"both\"")?;
    match lit.value().as_str() {
        "local" => Ok(Tier::Local),
        "shared" => Ok(Tier::Shared),
        "both" => Ok(Tier::Both),
        other => Err(syn::Error::new(
            lit.span(),
            format!("unknown `tier` {other:?}: expected \"local\" (in-process only), \"shared\" (shared tier only) or \"both\""),
        )),
    }
}

fn jitter(o: &Written) -> syn::Result<(f64, Span)> {
    let (j, span) = o.number(
        "expected the jitter as a fraction literal, like `jitter = 0.1` (±10 %)",
        "jitter = 0.1",
    )?;
    if !(0.0..1.0).contains(&j) {
        return Err(syn::Error::new(
            span,
            "`jitter` is a fraction of the timeout: at least 0 and below 1, like `jitter = 0.1` (±10 %)",
        ));
    }
    Ok((j, span))
}

fn stale_if_error(o: &Written) -> syn::Result<(u64, Span)> {
    let (n, span) = o.int(
        "how long past expiry a value may replace an error, in seconds",
        "stale_if_error = 600",
    )?;
    if n == 0 {
        return Err(syn::Error::new(
            span,
            "`stale_if_error` must be at least 1 (seconds past expiry)",
        ));
    }
    Ok((n, span))
}

fn timeout_by(o: &Written) -> syn::Result<Expr> {
    let expr = o.need("timeout_by = ttl_of")?;
    match expr {
        Expr::Path(_) | Expr::Closure(_) => Ok(expr.clone()),
        _ => Err(syn::Error::new(
            expr.span(),
            "`timeout_by` takes a function `fn(&V) -> std::time::Duration` over the value to cache, like `timeout_by = ttl_of`; for one timeout for every value, use `timeout`",
        )),
    }
}

fn xfetch(o: &Written) -> syn::Result<(f64, Span)> {
    let (beta, span) = o.number(
        "expected XFetch's beta as a number literal, like `xfetch = 1.0` (larger refreshes earlier)",
        "xfetch = 1.0",
    )?;
    if !(beta > 0.0 && beta.is_finite()) {
        return Err(syn::Error::new(
            span,
            "`xfetch` is XFetch's beta: above 0, like `xfetch = 1.0` (larger refreshes earlier)",
        ));
    }
    Ok((beta, span))
}

fn refresh_ahead(o: &Written) -> syn::Result<(f64, Span)> {
    let expr = o.need("refresh_ahead = 0.8")?;
    let Expr::Lit(ExprLit {
        lit: Lit::Float(f), ..
    }) = expr
    else {
        return Err(syn::Error::new(
            expr.span(),
            "expected the refresh point as a fraction of the timeout, like `refresh_ahead = 0.8`",
        ));
    };
    let r = f.base10_parse::<f64>()?;
    if !(r > 0.0 && r < 1.0) {
        return Err(syn::Error::new(
            f.span(),
            "`refresh_ahead` is a fraction of the timeout, above 0 and below 1, like `refresh_ahead = 0.8`",
        ));
    }
    Ok((r, f.span()))
}

fn tags(o: &Written) -> syn::Result<Vec<LitStr>> {
    let example = "tags = [\"user:{user_id}\"]";
    let expr = o.need(example)?;
    let Expr::Array(array) = expr else {
        return Err(syn::Error::new(
            expr.span(),
            "expected a list of tag templates, like `tags = [\"user:{user_id}\"]`",
        ));
    };
    let tags = array
        .elems
        .iter()
        .map(|e| str_value(e, "a tag template", example))
        .collect::<syn::Result<Vec<_>>>()?;
    if tags.is_empty() {
        return Err(syn::Error::new(
            array.span(),
            "`tags` needs at least one tag, like `tags = [\"user:{user_id}\"]`",
        ));
    }
    Ok(tags)
}

/// `-5` as written (a negation) or as one literal (what parsing a string gives).
fn is_negative(expr: &Expr) -> bool {
    match expr {
        Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => true,
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_digits().starts_with('-'),
        _ => false,
    }
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
