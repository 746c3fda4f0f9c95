//! What a `#[cached]` signature allows, and what the key and value types are.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{
    parse_quote, FnArg, GenericParam, Ident, Pat, ReceiverKind, ReturnType, Signature, Type,
};

/// How the return value maps to what is cached.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Any value: always cached.
    Plain,
    /// `Result<T, E>` (or `output = "result"`): only `Ok`.
    Result,
    /// `Option<T>`: only `Some`.
    Option,
    /// `Option<T>` with `cache_none = true`: `None` too.
    OptionAll,
}

impl Mode {
    pub fn of(output: &ReturnType) -> Mode {
        let ReturnType::Type(_, ty) = output else {
            return Mode::Plain;
        };
        let Type::Path(p) = &**ty else {
            return Mode::Plain;
        };
        let Some(last) = p.path.segments.last() else {
            return Mode::Plain;
        };
        // By name: a macro cannot resolve types. `io::Result<T>` and `anyhow::Result<T>`
        // end in `Result`; an alias with another name needs `output = "result"`.
        match last.ident.to_string().as_str() {
            "Option" => Mode::Option,
            "Result" => Mode::Result,
            _ => Mode::Plain,
        }
    }

    /// The runtime's marker type for this mode.
    pub fn marker(self) -> TokenStream {
        self.marker_at(Span::call_site())
    }

    /// The marker type, with its tokens spanned at `span` (so errors about it point there).
    pub fn marker_at(self, span: Span) -> TokenStream {
        match self {
            Mode::Plain => quote_spanned!(span=> ::layercache::__private::Plain),
            Mode::Result => quote_spanned!(span=> ::layercache::__private::OkOnly),
            Mode::Option => quote_spanned!(span=> ::layercache::__private::SomeOnly),
            Mode::OptionAll => quote_spanned!(span=> ::layercache::__private::SomeOrNone),
        }
    }
}

/// One named argument.
pub struct Arg {
    pub ident: Ident,
    pub ty: Type,
    /// `Some(T)` for an argument of type `&T` (the key keeps `T::Owned`).
    pub referent: Option<Type>,
}

impl Arg {
    /// The type this argument has inside a key.
    pub fn key_type(&self) -> TokenStream {
        match &self.referent {
            Some(t) => quote_spanned!(self.ty.span()=> ::layercache::__private::Owned<#t>),
            None => self.ty.to_token_stream(),
        }
    }

    /// An owned copy of the argument, for the key.
    pub fn key_expr(&self) -> TokenStream {
        let ident = &self.ident;
        match &self.referent {
            Some(_) => quote_spanned!(self.ty.span()=> ::layercache::__private::owned(#ident)),
            None => quote_spanned!(self.ty.span()=> ::core::clone::Clone::clone(&#ident)),
        }
    }
}

/// The receiver of a method.
pub struct Receiver {
    /// `&self` (or `self: &Self`) rather than `self`.
    pub by_ref: bool,
    /// The receiver's type in the key: `&self` and `self` → `Self`,
    /// `self: &Arc<Self>` → `Arc<Self>`.
    pub key_ty: Type,
    pub tokens: FnArg,
}

/// A checked `#[cached]` signature.
pub struct FnSig {
    pub receiver: Option<Receiver>,
    pub args: Vec<Arg>,
    pub output: Type,
    pub mode: Mode,
}

fn err(span: Span, msg: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span, msg)
}

/// Whether `tokens` mention `Self` anywhere.
pub fn mentions_self_type(tokens: TokenStream) -> bool {
    any_token(
        tokens,
        &|tt| matches!(tt, TokenTree::Ident(i) if i == "Self"),
    )
}

/// Whether any token of `tokens`, inside groups too, satisfies `pred`.
pub fn any_token(tokens: TokenStream, pred: &dyn Fn(&TokenTree) -> bool) -> bool {
    tokens.into_iter().any(|tt| match &tt {
        TokenTree::Group(g) => any_token(g.stream(), pred),
        other => pred(other),
    })
}

/// Where `ty` holds an `impl Trait`, if it does.
pub fn contains_impl_trait(ty: &Type) -> Option<Span> {
    match ty {
        Type::ImplTrait(i) => Some(i.impl_token.span),
        Type::Reference(r) => contains_impl_trait(&r.elem),
        Type::Slice(s) => contains_impl_trait(&s.elem),
        Type::Array(a) => contains_impl_trait(&a.elem),
        Type::Tuple(t) => t.elems.iter().find_map(contains_impl_trait),
        Type::Paren(p) => contains_impl_trait(&p.elem),
        Type::Path(p) => p.path.segments.iter().find_map(|s| match &s.arguments {
            syn::PathArguments::AngleBracketed(a) => a.args.iter().find_map(|a| match a {
                syn::GenericArgument::Type(t) => contains_impl_trait(t),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    }
}

/// The first non-`'static` lifetime or reference inside `ty` (a key must own its data).
pub fn borrowed_part(ty: &Type) -> Option<Span> {
    fn scan(ts: TokenStream) -> Option<Span> {
        let tokens: Vec<TokenTree> = ts.into_iter().collect();
        let is_static_lifetime = |at: usize| {
            matches!(tokens.get(at), Some(TokenTree::Punct(q)) if q.as_char() == '\'')
                && matches!(tokens.get(at + 1), Some(TokenTree::Ident(i)) if i == "static")
        };
        for (at, tt) in tokens.iter().enumerate() {
            match tt {
                TokenTree::Punct(p) if p.as_char() == '&' && !is_static_lifetime(at + 1) => {
                    return Some(p.span())
                }
                TokenTree::Punct(p) if p.as_char() == '\'' && !is_static_lifetime(at) => {
                    return Some(p.span())
                }
                TokenTree::Group(g) => {
                    if let Some(span) = scan(g.stream()) {
                        return Some(span);
                    }
                }
                _ => {}
            }
        }
        None
    }
    scan(ty.to_token_stream())
}

/// Checks what `attr` (`cached`, ...) can work with and extracts the parts.
pub fn analyze(sig: &Signature, attr: &str) -> syn::Result<FnSig> {
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(t) => {
                return Err(err(
                    t.ident.span(),
                    format!("`#[{attr}]` functions cannot have type parameters: each cached function has one cache with one key and value type; cache a concrete function (it may call this generic one)"),
                ))
            }
            GenericParam::Const(c) => {
                return Err(err(
                    c.ident.span(),
                    format!("`#[{attr}]` functions cannot have const parameters; pass the value as an argument instead"),
                ))
            }
        }
    }
    let mut receiver = None;
    let mut args = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                // syn 3 keeps the receiver as written: `&self`, `self`, or `self: Type`.
                let mut_ref = match &r.kind {
                    ReceiverKind::Reference(_, _, mutability) => mutability.is_some(),
                    ReceiverKind::Typed(_, ty) => {
                        matches!(&**ty, Type::Reference(t) if t.mutability.is_some())
                    }
                    _ => false,
                };
                if mut_ref {
                    return Err(syn::Error::new_spanned(
                        r,
                        format!("`#[{attr}]` cannot be used on a method taking `&mut self`: a cache hit skips the body, so its changes to `self` would be lost"),
                    ));
                }
                let (by_ref, key_ty) = match &r.kind {
                    ReceiverKind::Reference(..) => (true, parse_quote!(Self)),
                    ReceiverKind::Typed(_, ty) => match &**ty {
                        Type::Reference(reference) => (true, (*reference.elem).clone()),
                        other => (false, other.clone()),
                    },
                    _ => (false, parse_quote!(Self)),
                };
                receiver = Some(Receiver {
                    by_ref,
                    key_ty,
                    tokens: input.clone(),
                });
            }
            FnArg::Typed(pt) => {
                let ident = match &*pt.pat {
                    Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
                    other => {
                        return Err(err(
                            other.span(),
                            format!("`#[{attr}]` needs plain argument names (`name: Type`) to build the key; destructure inside the body"),
                        ))
                    }
                };
                if let Type::Reference(r) = &*pt.ty {
                    if let Some(m) = r.mutability {
                        let and = r.and_token;
                        return Err(syn::Error::new_spanned(
                            quote!(#and #m),
                            format!("`#[{attr}]` functions cannot take `&mut` arguments: a cache hit skips the body, so its changes would be lost"),
                        ));
                    }
                }
                if let Some(span) = contains_impl_trait(&pt.ty) {
                    return Err(err(
                        span,
                        "`impl Trait` arguments cannot be part of a cache key: the key type must be nameable; take a concrete type, or `&dyn Trait` with a `key` template",
                    ));
                }
                let referent = match &*pt.ty {
                    Type::Reference(r) => Some((*r.elem).clone()),
                    _ => None,
                };
                args.push(Arg {
                    ident,
                    ty: (*pt.ty).clone(),
                    referent,
                });
            }
        }
    }
    let output = match &sig.output {
        ReturnType::Default => {
            return Err(err(
                sig.paren_token.span.close(),
                format!("a `#[{attr}]` function must return a value to cache"),
            ))
        }
        ReturnType::Type(_, ty) => {
            if let Some(span) = contains_impl_trait(ty) {
                return Err(err(
                    span,
                    "`impl Trait` return values cannot be cached: the value type must be nameable (and `Clone`)",
                ));
            }
            (**ty).clone()
        }
    };
    Ok(FnSig {
        receiver,
        args,
        output,
        mode: Mode::of(&sig.output),
    })
}
