//! Targets of `#[cache_invalidate]`, `#[cache_put]`, `entry!` and `fn_cache!`.
//!
//! A cached function `f` comes with two hidden companions, generated next
//! to it by `#[cached]`: `f__layercache_entry(args...)` (same receiver and
//! arguments as `f`, returns the call's entry handle) and
//! `f__layercache_fn()` (the function's cache). A target is rewritten into
//! a call of a companion, so the compiler checks that the function exists
//! and that the arguments have the right number and types.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Expr, ExprAssign, ExprCall, ExprLit, ExprMethodCall, ExprPath, Ident, Lit, LitStr, Path, Token,
};

use crate::options::unknown_option;
use crate::template::Template;

pub fn entry_ident(f: &Ident) -> Ident {
    format_ident!("{}__layercache_entry", f, span = f.span())
}

pub fn fn_ident(f: &Ident) -> Ident {
    format_ident!("{}__layercache_fn", f, span = f.span())
}

/// `path` with its last segment renamed by `rename`.
fn rename_last(path: &Path, rename: fn(&Ident) -> Ident) -> Path {
    let mut path = path.clone();
    if let Some(last) = path.segments.last_mut() {
        last.ident = rename(&last.ident);
    }
    path
}

/// One call of a cached function: `f(a, b)`, `module::f(a)`, `Self::f(a)`, `recv.method(a)`.
pub enum CallTarget {
    Path(ExprCall, Path),
    Method(ExprMethodCall),
}

impl CallTarget {
    pub fn parse(expr: &Expr, what: &str) -> syn::Result<CallTarget> {
        match expr {
            Expr::Call(call) => match &*call.func {
                Expr::Path(ExprPath { path, qself: None, .. }) => Ok(CallTarget::Path(call.clone(), path.clone())),
                other => Err(syn::Error::new(
                    other.span(),
                    format!("`{what}` expects a cached function's name, like `get_user(user_id)`"),
                )),
            },
            Expr::MethodCall(m) => Ok(CallTarget::Method(m.clone())),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{what}` expects a call of a cached function, like `get_user(user_id)` or `self.get_user(user_id)`"),
            )),
        }
    }

    /// An expression of the call's entry handle, the arguments passed as written.
    pub fn entry_expr(&self) -> TokenStream {
        self.entry_with(|args| quote!(#args))
    }

    /// The same with each argument cloned, for attribute targets: their keys
    /// are computed before the body runs, which must still own its arguments
    /// (`get(query)` with `query: String` would otherwise move it).
    pub fn entry_expr_cloned(&self) -> TokenStream {
        self.entry_with(|args| {
            let args = args.iter().map(|a| quote_spanned!(a.span()=> (#a).clone()));
            quote!(#(#args),*)
        })
    }

    fn entry_with(
        &self,
        args: impl Fn(&Punctuated<Expr, Token![,]>) -> TokenStream,
    ) -> TokenStream {
        match self {
            CallTarget::Path(call, path) => {
                let companion = rename_last(path, entry_ident);
                let args = args(&call.args);
                quote_spanned!(call.span()=> #companion(#args))
            }
            CallTarget::Method(m) => {
                let receiver = &m.receiver;
                let companion = entry_ident(&m.method);
                // A generic method's entry companion has its type parameters.
                let turbofish = &m.turbofish;
                let args = args(&m.args);
                quote_spanned!(m.span()=> #receiver.#companion #turbofish(#args))
            }
        }
    }

    pub fn span(&self) -> Span {
        match self {
            CallTarget::Path(c, _) => c.span(),
            CallTarget::Method(m) => m.span(),
        }
    }
}

/// The cache of a cached function, named by path: `f`, `module::f`, `Self::method`.
pub fn fn_cache_expr(path: &Path) -> TokenStream {
    let companion = rename_last(path, fn_ident);
    quote_spanned!(path.span()=> #companion())
}

/// What one `#[cache_invalidate(...)]` drops.
pub enum Invalidation {
    One(CallTarget),
    All(Path),
    Prefix(LitStr),
    Tag(LitStr),
}

/// An [`Invalidation`] as `valid` accepted it: a template's placeholders
/// name the function's arguments.
pub enum CheckedInvalidation<'a> {
    One(&'a CallTarget),
    All(&'a Path),
    Prefix(Template),
    Tag(Template),
}

/// The parsed arguments of one `#[cache_invalidate(...)]`.
pub struct InvalidateArgs {
    pub targets: Vec<Invalidation>,
    pub before: bool,
    /// `output = "result"`: how to tell success when the return type's name does not say.
    pub output: Option<crate::sig::Mode>,
}

const INVALIDATE_OPTIONS: &[&str] = &["all", "prefix", "tag", "before", "output"];

fn assign_name(a: &ExprAssign) -> Option<(&Path, String)> {
    match &*a.left {
        Expr::Path(ExprPath { path, .. }) => path.get_ident().map(|i| (path, i.to_string())),
        _ => None,
    }
}

pub fn parse_invalidate_args(tokens: TokenStream) -> syn::Result<InvalidateArgs> {
    let exprs = Punctuated::<Expr, Token![,]>::parse_terminated.parse2(tokens)?;
    if exprs.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "`cache_invalidate` needs a target: `f(args)`, `all = f` or `prefix = \"...\"`",
        ));
    }
    let mut out = InvalidateArgs {
        targets: Vec::new(),
        before: false,
        output: None,
    };
    for expr in &exprs {
        match expr {
            Expr::Assign(a) => out.set(a)?,
            Expr::Path(ExprPath { path, .. }) => return Err(bare_path(path)),
            other => out.targets.push(Invalidation::One(CallTarget::parse(
                other,
                "cache_invalidate",
            )?)),
        }
    }
    if out.targets.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "`cache_invalidate` needs a target besides `before`: `f(args)`, `all = f` or `prefix = \"...\"`",
        ));
    }
    Ok(out)
}

impl InvalidateArgs {
    /// One `name = value` option.
    fn set(&mut self, a: &ExprAssign) -> syn::Result<()> {
        let Some((path, name)) = assign_name(a) else {
            return Err(syn::Error::new(
                a.left.span(),
                "expected `all`, `prefix` or `before`",
            ));
        };
        let value = &*a.right;
        let string = match value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => Some(s),
            _ => None,
        };
        match (name.as_str(), string) {
            ("all", _) => match value {
                Expr::Path(ExprPath {
                    path, qself: None, ..
                }) => self.targets.push(Invalidation::All(path.clone())),
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "`all` expects a cached function's name, like `all = search`",
                    ))
                }
            },
            ("prefix", Some(s)) => {
                crate::attr::check_prefix_text(s)?;
                self.targets.push(Invalidation::Prefix(s.clone()))
            }
            ("prefix", None) => {
                // The example shows a literal prefix when a literal of another kind was written.
                let example = match value {
                    Expr::Lit(_) => "search:rust",
                    _ => "search:{query}",
                };
                return Err(syn::Error::new(
                    literal_span(value),
                    format!(
                        "expected the prefix as a string literal, like `prefix = \"{example}\"`"
                    ),
                ));
            }
            ("tag", Some(s)) => self.targets.push(Invalidation::Tag(s.clone())),
            ("tag", None) => {
                return Err(syn::Error::new(
                    value.span(),
                    "expected the tag as a string literal, like `tag = \"user:{user_id}\"`",
                ))
            }
            ("before", _) => match value {
                Expr::Lit(ExprLit {
                    lit: Lit::Bool(b), ..
                }) => self.before = b.value,
                other => {
                    return Err(syn::Error::new(
                        literal_span(other),
                        "expected `true` or `false` for `before`",
                    ))
                }
            },
            ("output", _) => self.output = Some(crate::attr::output_mode(value)?),
            _ => {
                return Err(unknown_option(
                    path,
                    &name,
                    INVALIDATE_OPTIONS,
                    "cache_invalidate",
                ))
            }
        }
        Ok(())
    }
}

/// Where an error about a value points: at the literal itself when it is
/// one (without the attributes a literal expression may carry).
fn literal_span(value: &Expr) -> Span {
    match value {
        Expr::Lit(l) => l.lit.span(),
        other => other.span(),
    }
}

/// A name alone: an option without its value, or a cached function named
/// without its arguments.
fn bare_path(path: &Path) -> syn::Error {
    let name = path.get_ident().map(|i| i.to_string()).unwrap_or_default();
    let msg = if INVALIDATE_OPTIONS.contains(&name.as_str()) {
        format!("`{name}` needs a value, like `{name} = ...`")
    } else {
        let written = quote!(#path).to_string().replace(' ', "");
        format!("to invalidate one entry, call the cached function with the key's arguments: `{written}(...)`; to drop all its entries, write `all = {written}`")
    };
    syn::Error::new(path.span(), msg)
}

/// `#[cache_put(f(args))]` or `#[cache_put(f(args), output = "result")]`.
pub fn parse_put_args(tokens: TokenStream) -> syn::Result<(CallTarget, Option<crate::sig::Mode>)> {
    let exprs = Punctuated::<Expr, Token![,]>::parse_terminated.parse2(tokens)?;
    let mut output = None;
    let mut calls = Vec::new();
    for expr in exprs {
        match &expr {
            Expr::Assign(a) => match assign_name(a) {
                Some((_, name)) if name == "output" => {
                    output = Some(crate::attr::output_mode(&a.right)?)
                }
                Some((path, name)) => {
                    return Err(unknown_option(path, &name, &["output"], "cache_put"))
                }
                None => return Err(syn::Error::new(a.left.span(), "expected `output`")),
            },
            _ => calls.push(expr),
        }
    }
    let target = parse_put_target(calls)?;
    Ok((target, output))
}

fn parse_put_target(exprs: Vec<Expr>) -> syn::Result<CallTarget> {
    let mut iter = exprs.iter();
    let Some(first) = iter.next() else {
        return Err(syn::Error::new(
            Span::call_site(),
            "`cache_put` needs the call whose entry to store, like `#[cache_put(get_user(user.id))]`",
        ));
    };
    if let Some(extra) = iter.next() {
        return Err(syn::Error::new(
            extra.span(),
            "`cache_put` takes exactly one target; stack several attributes for more",
        ));
    }
    CallTarget::parse(first, "cache_put")
}

/// `entry!(f(args))`.
pub fn entry_macro(tokens: TokenStream) -> syn::Result<TokenStream> {
    let expr: Expr = syn::parse2(tokens)?;
    Ok(CallTarget::parse(&expr, "entry!")?.entry_expr())
}

/// `fn_cache!(f)`.
pub fn fn_cache_macro(tokens: TokenStream) -> syn::Result<TokenStream> {
    let path: Path = syn::parse2(tokens).map_err(|e| {
        syn::Error::new(
            e.span(),
            "`fn_cache!` expects a cached function's name, like `fn_cache!(search)`",
        )
    })?;
    Ok(fn_cache_expr(&path))
}
