//! The typed model of one `#[cached]` use: [`Cached`] is what the user
//! wrote (options and function), [`Checked`] what `valid` derives from it
//! once every check passed, and all that `expand` needs besides.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ItemFn;

use crate::attr::{parse_cached_args, CachedArgs};
use crate::sig::{mentions_self_type, FnSig, Mode};
use crate::template::Template;

/// A `#[cached(...)]` function as written.
pub struct Cached {
    pub opts: CachedArgs,
    pub func: ItemFn,
    /// Whether the function sits in an `impl`: it says `in_impl`, takes
    /// `self` or mentions `Self`. Its companions are then called as
    /// `Self::...`, and its cache needs a name that does not come from the
    /// module alone.
    pub in_impl: bool,
}

/// What validation derives from a [`Cached`].
pub struct Checked {
    pub sig: FnSig,
    /// The `key` template.
    pub key: Option<Template>,
    /// The `tags` templates.
    pub tags: Vec<Template>,
    /// What is cached of the return value: the signature's mode, as
    /// `output` and `cache_none` adjust it.
    pub mode: Mode,
}

impl Cached {
    pub fn from_syn(args: TokenStream, item: TokenStream) -> syn::Result<Cached> {
        let opts = parse_cached_args(args)?;
        let func: ItemFn = syn::parse2(item).map_err(|e| {
            syn::Error::new(
                e.span(),
                "`#[cached]` goes on a function (`fn` or `async fn`)",
            )
        })?;
        // `Self` inside a nested item (a local `impl`) says nothing about where `f` is.
        let body_mentions_self = func
            .block
            .stmts
            .iter()
            .filter(|stmt| !matches!(stmt, syn::Stmt::Item(_)))
            .any(|stmt| mentions_self_type(stmt.to_token_stream()));
        let in_impl = opts.in_impl
            || func
                .sig
                .inputs
                .iter()
                .any(|input| matches!(input, syn::FnArg::Receiver(_)))
            || mentions_self_type(func.sig.to_token_stream())
            || body_mentions_self;
        Ok(Cached {
            opts,
            func,
            in_impl,
        })
    }
}
