//! Expansion of `#[cache_invalidate]` and `#[cache_put]`: compute the
//! targets' keys before the body runs (the body may consume the arguments),
//! run the body, then act if it succeeded (anything but `Err`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{FnArg, ItemFn, Pat, ReturnType};

use crate::sig::Mode;
use crate::target::{fn_cache_expr, parse_invalidate_args, parse_put_target, Invalidation};
use crate::template::Template;

fn parse_fn(item: TokenStream, attr: &str) -> syn::Result<ItemFn> {
    syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`#[{attr}]` goes on a function (`fn` or `async fn`)"),
        )
    })
}

/// Runs `block` and, when it succeeds, `after`; `setup` runs first.
fn wrap(func: &ItemFn, setup: TokenStream, after: TokenStream) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let mode = Mode::of(&sig.output).marker();
    let run = if sig.asyncness.is_some() {
        quote!(async move #block.await)
    } else {
        quote!((move || -> #output #block)())
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #setup
            let __lc_ret: #output = #run;
            if <#mode as ::layercache::__private::Succeeds<#output>>::succeeded(&__lc_ret) {
                #after
            }
            __lc_ret
        }
    }
}

pub fn cache_invalidate(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let parsed = parse_invalidate_args(args)?;
    let func = parse_fn(item, "cache_invalidate")?;
    let names: Vec<String> = func
        .sig
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
    let has_self = func.sig.receiver().is_some();

    let mut setup = TokenStream::new();
    let mut act = TokenStream::new();
    for (i, target) in parsed.targets.iter().enumerate() {
        let var = format_ident!("__lc_target_{}", i);
        match target {
            Invalidation::One(call) => {
                let entry = call.entry_expr();
                setup.extend(quote!(let #var = #entry;));
                act.extend(quote_spanned!(call.span()=> #var.invalidate();));
            }
            Invalidation::All(path) => {
                let cache = fn_cache_expr(path);
                setup.extend(quote!(let #var = #cache;));
                act.extend(quote!(#var.invalidate_all();));
            }
            Invalidation::Prefix(lit) => {
                crate::attr::check_prefix_text(lit)?;
                let template = Template::parse(lit, &names, has_self, &func.sig.ident, "prefix")?;
                let rendered = template.render();
                setup.extend(quote!(let #var: ::std::string::String = #rendered;));
                act.extend(quote!(::layercache::invalidate_prefix(&#var);));
            }
        }
    }

    if parsed.before {
        let ItemFn {
            attrs,
            vis,
            sig,
            block,
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
    Ok(wrap(&func, setup, act))
}

pub fn cache_put(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let target = parse_put_target(args)?;
    let func = parse_fn(item, "cache_put")?;
    let ReturnType::Type(_, output) = &func.sig.output else {
        return Err(syn::Error::new(
            func.sig.paren_token.span.close(),
            "a `#[cache_put]` function must return the value to store",
        ));
    };
    let mode = Mode::of(&func.sig.output).marker();
    let entry = target.entry_expr();
    let setup = quote!(let __lc_put = #entry;);
    let after = quote_spanned! {target.span()=>
        if let ::core::option::Option::Some(__lc_value) =
            <#mode as ::layercache::__private::OutputMode<#output>>::cacheable(&__lc_ret)
        {
            __lc_put.put(__lc_value.clone());
        }
    };
    Ok(wrap(&func, setup, after))
}
