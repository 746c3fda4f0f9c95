//! The argument signature of a cached function: its key's argument types
//! as written, in one canonical text (`(Self,u64,Vec<String>)`).
//!
//! It is hashed into keys so that arguments of different types never share
//! one (see `layercache_runtime::key`). It is taken from the source rather
//! than from `std::any::type_name`, which may change between compilers, so
//! the same code gives the same keys on every build and platform.
//!
//! A generic function's signature keeps its type parameters as written
//! (`(T,u32)`): each instantiation's keys are already under a namespace
//! of its own, `{key_prefix or path}<u64>`, built at run time from the
//! type arguments' `CacheKeyType` names, so `(T)` and the namespace
//! together name the concrete types. Writing the names into the hashed
//! signature too would add nothing that can tell two keys apart, and
//! would turn a constant into text built on every render.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;

/// `(T1,T2,...)` of `types`, each in canonical text.
pub fn of<'a>(types: impl IntoIterator<Item = &'a dyn ToTokens>) -> String {
    let mut out = String::from("(");
    for (i, ty) in types.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_tokens(ty.to_token_stream(), &mut out);
    }
    out.push(')');
    out
}

/// Tokens as text without layout: words are separated by one space only
/// where two meet (`dyn Trait`), punctuation and groups are written tight.
/// `TokenStream`'s own `Display` is not promised stable, this is.
fn write_tokens(tokens: TokenStream, out: &mut String) {
    let mut after_word = false;
    for tt in tokens {
        match tt {
            TokenTree::Ident(i) => {
                if after_word {
                    out.push(' ');
                }
                out.push_str(&i.to_string());
                after_word = true;
            }
            TokenTree::Literal(l) => {
                if after_word {
                    out.push(' ');
                }
                out.push_str(&l.to_string());
                after_word = true;
            }
            TokenTree::Punct(p) => {
                out.push(p.as_char());
                after_word = false;
            }
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                write_tokens(g.stream(), out);
                out.push_str(close);
                after_word = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(types: &[&str]) -> String {
        let parsed: Vec<syn::Type> = types.iter().map(|t| syn::parse_str(t).unwrap()).collect();
        of(parsed.iter().map(|t| t as &dyn ToTokens))
    }

    #[test]
    fn the_text_does_not_depend_on_layout() {
        assert_eq!(sig(&["u64"]), "(u64)");
        assert_eq!(
            sig(&["std :: vec :: Vec < u8 >", "[u8; 2]"]),
            "(std::vec::Vec<u8>,[u8;2])"
        );
        assert_eq!(sig(&["Box<dyn  Fn(u8) -> u8>"]), "(Box<dyn Fn(u8)->u8>)");
        assert_eq!(sig(&["&'static str"]), "(&'static str)");
    }

    #[test]
    fn different_types_and_arities_differ() {
        assert_ne!(sig(&["u64"]), sig(&["i64"]));
        assert_ne!(sig(&["u8", "u8"]), sig(&["[u8; 2]"]));
        assert_ne!(sig(&["(u8, u8)"]), sig(&["[u8; 2]"]));
        assert_ne!(sig(&[]), sig(&["()"]));
    }
}
