//! Expansion of `#[cache_invalidate]` and `#[cache_put]`: compute the
//! targets' keys before the body runs (the body may consume the arguments),
//! run the body, then act if it succeeded (anything but `Err`).

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::{ItemFn, ReturnType};

use crate::sig::{any_token, contains_impl_trait, Mode};
use crate::target::{fn_cache_expr, parse_invalidate_args, parse_put_args, CheckedInvalidation};

fn parse_fn(item: TokenStream, attr: &str) -> syn::Result<ItemFn> {
    syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`#[{attr}]` goes on a function (`fn` or `async fn`)"),
        )
    })
}

/// Whether `tokens` hold a `return` or a `?`, which leave the function
/// early: the body must then run in a closure so the actions still run.
fn exits_early(tokens: TokenStream) -> bool {
    any_token(tokens, &|tt| match tt {
        TokenTree::Ident(i) => i == "return",
        TokenTree::Punct(p) => p.as_char() == '?',
        _ => false,
    })
}

fn ret_var() -> Ident {
    Ident::new("__lc_ret", Span::mixed_site())
}

/// Runs `block` and, when it succeeds, `after`; `setup` runs first.
fn wrap(
    func: &ItemFn,
    output_mode: Option<Mode>,
    setup: TokenStream,
    after: TokenStream,
) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = func;
    let ret = ret_var();
    // The return type is named only when it can be: `impl Trait` cannot be
    // written in a closure or a `let`, and is inferred instead.
    let output = match &sig.output {
        ReturnType::Default => Some(quote!(())),
        ReturnType::Type(_, ty) if contains_impl_trait(ty).is_some() => None,
        ReturnType::Type(_, ty) => Some(quote!(#ty)),
    };
    let mode = output_mode
        .unwrap_or_else(|| Mode::of(&sig.output))
        .marker();
    let run = if sig.asyncness.is_some() {
        quote!(async move #block.await)
    } else if !exits_early(block.to_token_stream()) {
        // No early exit: the block runs in place (so it may return borrows of its arguments).
        quote!(#block)
    } else {
        match &output {
            Some(output) => quote!((move || -> #output #block)()),
            None => quote!((move || #block)()),
        }
    };
    let annotation = output.as_ref().map(|o| quote!(: #o));
    quote! {
        #(#attrs)*
        #vis #sig {
            #setup
            let #ret #annotation = #run;
            if ::layercache::__private::succeeded::<#mode, _>(&#ret) {
                #after
            }
            #ret
        }
    }
}

pub fn cache_invalidate(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let parsed = parse_invalidate_args(args)?;
    let func = parse_fn(item, "cache_invalidate")?;
    let targets = crate::valid::invalidations(&parsed.targets, &func.sig)?;
    // In an `async fn`, shared-tier deletes are awaited instead of blocking the executor.
    let is_async = func.sig.asyncness.is_some();
    let (setup, act) = invalidations(&targets, is_async);
    if parsed.before {
        let ItemFn {
            attrs,
            vis,
            sig,
            block,
            ..
        } = &func;
        let stmts = &block.stmts;
        return Ok(quote! {
            #(#attrs)*
            #vis #sig {
                #setup
                #act
                #(#stmts)*
            }
        });
    }
    Ok(wrap(&func, parsed.output, setup, act))
}

/// What runs before the body (each target's key or template, computed
/// while the body still owns its arguments) and what invalidates after it.
fn invalidations(targets: &[CheckedInvalidation], is_async: bool) -> (TokenStream, TokenStream) {
    let mut setup = TokenStream::new();
    let mut act = TokenStream::new();
    for (i, target) in targets.iter().enumerate() {
        let var = Ident::new(&format!("__lc_target_{i}"), Span::mixed_site());
        match target {
            CheckedInvalidation::One(call) => {
                let entry = call.entry_expr_cloned();
                setup.extend(quote! {
                    #[allow(noop_method_call, clippy::clone_on_copy, clippy::redundant_clone)]
                    let #var = #entry;
                });
                act.extend(if is_async {
                    quote_spanned!(call.span()=> #var.invalidate_async().await;)
                } else {
                    quote_spanned!(call.span()=> #var.invalidate();)
                });
            }
            CheckedInvalidation::All(path) => {
                let cache = fn_cache_expr(path);
                setup.extend(quote!(let #var = #cache;));
                act.extend(if is_async {
                    quote!(#var.invalidate_all_async().await;)
                } else {
                    quote!(#var.invalidate_all();)
                });
            }
            CheckedInvalidation::Tag(template) | CheckedInvalidation::Prefix(template) => {
                // Both render a template over the arguments and pass it on.
                let (sync_fn, async_fn) = match target {
                    CheckedInvalidation::Tag(_) => {
                        (quote!(invalidate_tag), quote!(invalidate_tag_async))
                    }
                    _ => (quote!(invalidate_prefix), quote!(invalidate_prefix_async)),
                };
                let rendered = template.render();
                setup.extend(quote!(let #var: ::std::string::String = #rendered;));
                act.extend(if is_async {
                    quote!(::layercache::__private::#async_fn(&#var).await;)
                } else {
                    quote!(::layercache::__private::#sync_fn(&#var);)
                });
            }
        }
    }
    (setup, act)
}

pub fn cache_put(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let (target, output_mode) = parse_put_args(args)?;
    let func = parse_fn(item, "cache_put")?;
    let output = crate::valid::put_value(&func.sig)?;
    let output_mode = output_mode.unwrap_or_else(|| Mode::of(&func.sig.output));
    let mode = output_mode.marker();
    let entry = target.entry_expr_cloned();
    // Hygienic, but located at the target so type errors point there.
    let at_target = Span::mixed_site().located_at(target.span());
    let put = Ident::new("__lc_put", at_target);
    let value = Ident::new("__lc_value", at_target);
    let ret = ret_var();
    let setup = quote! {
        #[allow(noop_method_call, clippy::clone_on_copy, clippy::redundant_clone)]
        let #put = #entry;
    };
    let store = if func.sig.asyncness.is_some() {
        quote_spanned!(target.span()=> #put.put_async(#value.clone()).await;)
    } else {
        quote_spanned!(target.span()=> #put.put(#value.clone());)
    };
    let after = quote_spanned! {target.span()=>
        if let ::core::option::Option::Some(#value) =
            <#mode as ::layercache::__private::OutputMode<#output>>::cacheable(&#ret)
        {
            #store
        }
    };
    Ok(wrap(&func, Some(output_mode), setup, after))
}
