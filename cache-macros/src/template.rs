//! Key templates: `"{query}:page:{page}"`, `"{self.id}:{user.name}"`.
//!
//! A placeholder is an argument name (or `self`) followed by `.field`
//! accesses; its `Display` rendering is escaped at run time so a value can
//! never forge a separator. `{{` and `}}` stand for literal braces.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::LitStr;

pub enum Piece {
    Literal(String),
    /// `root.field.field`, root being an argument or `self`.
    Value {
        root: String,
        fields: Vec<String>,
    },
}

pub struct Template {
    pub pieces: Vec<Piece>,
    span: Span,
}

fn is_ident(s: &str) -> bool {
    s == "self" || syn::parse_str::<Ident>(s).is_ok()
}

fn is_field(s: &str) -> bool {
    syn::parse_str::<syn::Member>(s).is_ok()
}

/// The text up to the next `}`, which is consumed; `None` if none comes.
fn until_close(chars: &mut impl Iterator<Item = char>) -> Option<String> {
    let mut inner = String::new();
    for c in chars {
        if c == '}' {
            return Some(inner);
        }
        inner.push(c);
    }
    None
}

/// The root and fields of placeholder `{inner}`.
fn placeholder(inner: &str, what: &str) -> Result<(String, Vec<String>), String> {
    if inner.is_empty() {
        return Err(format!(
            "empty `{{}}` in `{what}` template: name an argument, like `{{user_id}}`"
        ));
    }
    if inner.contains(':') {
        return Err(format!(
            "format specs are not supported in `{what}` templates (`{{{inner}}}`): values are rendered with `Display` and escaped"
        ));
    }
    let mut parts = inner.split('.').map(str::trim);
    let root = parts.next().unwrap_or_default().to_string();
    let fields: Vec<String> = parts.map(str::to_string).collect();
    if !is_ident(&root) || !fields.iter().all(|f| is_field(f)) {
        return Err(format!(
            "`{{{inner}}}` in `{what}` template is not an argument name or a field path like `{{user.id}}`"
        ));
    }
    Ok((root, fields))
}

/// A placeholder's root must be an argument of the function (or `self`).
fn known(
    root: &str,
    names: &[String],
    has_self: bool,
    fn_name: &Ident,
    what: &str,
) -> Result<(), String> {
    if names.iter().any(|n| n == root) || (has_self && root == "self") {
        return Ok(());
    }
    let mut list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    if has_self {
        list.insert(0, "`self`".into());
    }
    let list = if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    };
    Err(format!(
        "`{what}` template names `{root}`, which is not an argument of `{fn_name}` (its arguments: {list})"
    ))
}

/// Values never hold a raw `:` (it is escaped), so a `:` between two
/// placeholders makes the rendering injective: no two calls share a key.
/// `literal` is the text since the previous piece.
fn separated(
    previous: Option<&Piece>,
    literal: &str,
    inner: &str,
    what: &str,
) -> Result<(), String> {
    let Some(Piece::Value { root, fields }) = previous else {
        return Ok(());
    };
    if literal.contains(':') {
        return Ok(());
    }
    let prev = std::iter::once(root)
        .chain(fields)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(".");
    Err(format!(
        "separate `{{{prev}}}` and `{{{inner}}}` with `:` in the `{what}` template (e.g. `{{{prev}}}:{{{inner}}}`): values never contain a raw `:`, so the separator keeps two different calls from rendering the same key"
    ))
}

/// The hygienic name of the key builder in generated code.
fn builder() -> Ident {
    Ident::new("__lc_builder", Span::mixed_site())
}

impl Template {
    /// Parses `lit`, checking every placeholder root against `names`
    /// (`self` allowed when `has_self`). `what` names the option in errors.
    pub fn parse(
        lit: &LitStr,
        names: &[String],
        has_self: bool,
        fn_name: &Ident,
        what: &str,
    ) -> syn::Result<Template> {
        let text = lit.value();
        let span = lit.span();
        let e = |msg: String| syn::Error::new(span, msg);
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(e(format!(
                        "unmatched `}}` in `{what}` template; write `}}}}` for a literal brace"
                    )))
                }
                '{' => {
                    let Some(inner) = until_close(&mut chars) else {
                        return Err(e(format!("unclosed `{{` in `{what}` template")));
                    };
                    let inner = inner.trim();
                    let (root, fields) = placeholder(inner, what).map_err(e)?;
                    known(&root, names, has_self, fn_name, what).map_err(e)?;
                    separated(pieces.last(), &literal, inner, what).map_err(e)?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Value { root, fields });
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces, span })
    }

    /// An expression rendering the template into a `String`.
    pub fn render(&self) -> TokenStream {
        let span = self.span;
        let b = builder();
        let steps = self.pieces.iter().map(|p| match p {
            Piece::Literal(text) => quote_spanned!(span=> #b.literal(#text);),
            Piece::Value { root, fields } => {
                let root = if root == "self" {
                    quote_spanned!(span=> self)
                } else {
                    let id = format_ident!("{}", root, span = span);
                    quote!(#id)
                };
                let fields = fields.iter().map(|f| match f.parse::<u32>() {
                    Ok(i) => {
                        let idx = syn::Index { index: i, span };
                        quote!(.#idx)
                    }
                    Err(_) => {
                        let id = format_ident!("{}", f, span = span);
                        quote!(.#id)
                    }
                });
                quote_spanned!(span=> #b.value(&#root #(#fields)*);)
            }
        });
        quote_spanned! {span=>
            {
                let mut #b = ::layercache::__private::KeyBuilder::new();
                #(#steps)*
                #b.finish()
            }
        }
    }
}
