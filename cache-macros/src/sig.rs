//! The model of a `#[cached]` signature: its receiver, arguments and return
//! value, and what the key and value types are (`valid` checks what it may
//! hold).

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{parse_quote, FnArg, Ident, Pat, ReceiverKind, ReturnType, Signature, Type};

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

/// The name of an argument bound as `name: Type` (or `mut name: Type`).
pub fn plain_name(pat: &Pat) -> Option<&Ident> {
    match pat {
        Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => Some(&pi.ident),
        _ => None,
    }
}

/// Whether a receiver borrows `self` mutably: `&mut self` or `self: &mut Self`.
pub fn mut_self(r: &syn::Receiver) -> bool {
    // syn 3 keeps the receiver as written: `&self`, `self`, or `self: Type`.
    match &r.kind {
        ReceiverKind::Reference(_, _, mutability) => mutability.is_some(),
        ReceiverKind::Typed(_, ty) => matches!(&**ty, Type::Reference(t) if t.mutability.is_some()),
        _ => false,
    }
}

impl FnSig {
    /// The parts of a signature that `valid` accepted: plain argument
    /// names and a return type.
    pub fn of(sig: &Signature) -> FnSig {
        let mut receiver = None;
        let mut args = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => {
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
                FnArg::Typed(pt) => args.push(Arg {
                    ident: plain_name(&pt.pat)
                        .expect("valid: arguments have plain names")
                        .clone(),
                    ty: (*pt.ty).clone(),
                    referent: match &*pt.ty {
                        Type::Reference(r) => Some((*r.elem).clone()),
                        _ => None,
                    },
                }),
            }
        }
        let ReturnType::Type(_, output) = &sig.output else {
            unreachable!("valid: a cached function returns a value")
        };
        FnSig {
            receiver,
            args,
            output: (**output).clone(),
            mode: Mode::of(&sig.output),
        }
    }
}
